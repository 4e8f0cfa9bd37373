"""Every architecture gets a page, never a traceback: tiny offline models of Llama, Qwen2,
Mistral, Gemma 3, Phi-3, GPT-2 and a Qwen3 with a sliding-window layer (their transformers
config classes, the tiny tokenizer). Chapter 1 renders, edits and generates on each; Chapter 2
opens the Llama family (test_families.py) or says plainly what the model is and how its
layers differ; Chapter 3 measures every one."""

import re

import pytest
import tiny_model
import torch
from helpers import CHAPTER2, CHAPTER3, code_starting, forward_of, generated_ids, run_app

from chapter1.logits import logits
from chapter1.tokenizer import tokenize

OTHERS = [arch for arch in tiny_model.ARCHS if arch != "qwen3"]
LONG = "The quick brown fox jumps over the lazy dog, and the dog sleeps on in the sun."
WHAT_DIFFERS = {  # what Chapter 2 must say about those it can't open, from their modules
    "gemma3": "four norms per layer", "phi3": "fused projection",
    "gpt2": "no `model.layers`",
}


@pytest.fixture(scope="module")
def arch_dirs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("archs")
    return {arch: tiny_model.build(root / arch, arch=arch) for arch in OTHERS}


@pytest.fixture
def arch_model(request, arch_dirs, monkeypatch):
    """The app on the tiny model of one architecture; yields (arch, loaded)."""
    from token_by_token import model
    arch = request.param
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(arch_dirs[arch]))
    return arch, model.load()


@pytest.mark.parametrize("arch_model", OTHERS, indirect=True)
def test_chapter1_renders_edits_and_generates(arch_model):
    arch, loaded = arch_model
    at = run_app(text=LONG)  # fails on any exception
    ids = tokenize(loaded.tokenizer, LONG)
    assert len(ids) > tiny_model.WINDOW  # past the sliding window, where it has one
    for text in (LONG[:30], LONG[:31], "a", LONG):  # shorten, extend, one token, longer
        at.sidebar.text_area(key="text").input(text).run()
        assert not at.exception, (arch, text, [e.value for e in at.exception])
        ids = tokenize(loaded.tokenizer, text)
        assert code_starting(at, "tokens = ").startswith(f"tokens = {ids}")
        fresh = logits(loaded.model, ids)[-1]  # what a forward of the whole text gives
        assert torch.allclose(forward_of(at).last, fresh, atol=0.05), (arch, text)
    at.sidebar.toggle(key="autoregressive").set_value(True).run()
    for n in range(1, 4):
        shown = int(code_starting(at, "next_id = ").split()[2])
        at.sidebar.button(key="generate").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert generated_ids(at)[-1] == shown and len(generated_ids(at)) == n


@pytest.mark.parametrize("arch_model", list(WHAT_DIFFERS), indirect=True)
def test_chapter2_explains_what_it_cannot_open(arch_model):
    arch, loaded = arch_model
    at = run_app(CHAPTER2)
    [message] = [i.value for i in at.info]
    assert f"this one is `{type(loaded.model).__name__}`" in message
    assert f"`model_type` {loaded.model.config.model_type}" in message
    assert WHAT_DIFFERS[arch] in message
    assert "Chapter 1 works on it in full" in message
    assert not any(h.value.startswith("1.") for h in at.header)  # no section half-drawn


SLIDING = {"mistral": "2 of its 2 layers", "gemma3": "of its 2 layers",
           "qwen3-sliding": "1 of its 2 layers"}


@pytest.mark.parametrize("arch_model", OTHERS, indirect=True)
def test_chapter3_measures_every_architecture(arch_model):
    arch, loaded = arch_model
    at = run_app(CHAPTER3, text=LONG)  # fails on any exception
    assert not [i.value for i in at.info if "Chapter 3 can't run" in i.value], arch
    # every section drawn and every check passed, the q, k, v of its first layer its cache's
    assert len(at.success) == 6, (arch, [e.value for e in at.error])
    text = " ".join(m.value for m in at.markdown)
    said = re.search(r"keys are your KV cache's first layer's, (bit for bit|to ([\d.e+-]+))",
                     text)
    assert said, arch
    if said[2]:  # float32 (TEST_DTYPE): another row count, another kernel, another rounding
        assert loaded.model.dtype == torch.float32 and float(said[2]) < 1e-5, (arch, said[0])
    if arch in SLIDING:  # the page says its cache keeps what a server's would not
        assert f"{SLIDING[arch]} attend through a sliding window of {tiny_model.WINDOW}" in text
        assert "keeps every position of every layer" in text
        # the lessons on the first layer's attention say when that layer has a window
        first = f"The first layer of this model reads only the last {tiny_model.WINDOW} positions"
        assert (first in text) == (arch != "qwen3-sliding"), arch  # its layer 1 slides


def test_chapter3_says_what_a_model_it_cannot_read_lacks(arch_dirs):
    """A model whose decoder layers are in neither known place: refused in words."""
    from transformers import AutoModelForCausalLM

    from chapter3.facts import refusal
    model = AutoModelForCausalLM.from_pretrained(arch_dirs["gpt2"])
    assert refusal(model) is None
    del model.transformer.h  # another layout
    message = refusal(model)
    assert "`GPT2LMHeadModel` (`model_type` gpt2)" in message
    assert "neither `model.layers`" in message and "Chapter 1 works on it in full" in message


@pytest.mark.parametrize("arch", list(SLIDING))
def test_a_cache_keeping_every_position_gives_the_models_logits(arch, arch_dirs):
    """Chapter 3's caches keep every position of a sliding-window layer: the model's mask
    still hides what the window hides. The same logits as the model's own cache, read past
    the window in one forward and then step by step, and the cache crops back exactly."""
    from transformers import AutoModelForCausalLM, DynamicCache

    from token_by_token.kvcache import keeping_every_position
    model = AutoModelForCausalLM.from_pretrained(arch_dirs[arch], dtype=torch.float32).eval()
    ids = torch.tensor([[(37 * i + 11) % 1500 for i in range(3 * tiny_model.WINDOW)]])
    split = 2 * tiny_model.WINDOW
    outputs = []
    with torch.inference_mode():
        for cache in (DynamicCache(config=model.config), keeping_every_position()):
            first = model(ids[:, :split], cache=cache).logits[0]
            steps = [model(ids[:, i:i + 1], cache=cache).logits[0, -1]
                     for i in range(split, ids.shape[1])]
            outputs.append(torch.cat([first, torch.stack(steps)]))
        assert any(DynamicCache(config=model.config).is_sliding)  # the model has a window
        assert not any(cache.is_sliding) and cache.get_seq_length() == ids.shape[1]
        torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-5)
        whole = model(ids).logits[0]
        torch.testing.assert_close(outputs[1], whole, atol=1e-5, rtol=1e-5)
        cache.crop(split - cache.get_seq_length())  # back: the step after `split` again
        again = model(ids[:, split:split + 1], cache=cache).logits[0, -1]
        torch.testing.assert_close(again, outputs[0][split], atol=1e-5, rtol=1e-5)
