"""Chapter 3's page: every section renders on the learner's text with numbers read from the
loaded model, its controls change what is shown (and run no forward where none is needed),
measurements are kept per process and taken again on request, learners never share runs."""

from contextlib import contextmanager

import pytest
import torch
from helpers import (
    CHAPTER1,
    CHAPTER2,
    CHAPTER3,
    counting_forwards,
    held_tensors,
    page_text,
    run_app,
)

from chapter3 import batching, flash, measure, paged, quantize, roofline, speculative
from chapter3.measure import size
from token_by_token.sequence import tokenize


def part(at, slot):
    return at.session_state["_memo"].latest(slot)


@contextmanager
def running_modules(model):
    """The names of the model's modules that run while inside (any part of a forward: a
    layer, a projection, the output layer), in order."""
    ran, hooks = [], []
    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(
            lambda module, args, name=name: ran.append(name)))
    try:
        yield ran
    finally:
        for hook in hooks:
            hook.remove()


def test_chapter_3_renders_every_section_in_order():
    at = run_app(CHAPTER3)
    assert [t.value for t in at.title] == ["Chapter 3: The Speed of Inference"]
    headers = [h.value for h in at.header]
    assert [h.split(".")[0] for h in headers[:-1]] == [str(n) for n in range(1, 7)]
    assert headers[-1] == "Conclusion"
    assert len(at.success) == 6  # one summary per section
    assert not at.error


def test_the_numbers_on_the_page_are_the_loaded_models(loaded):
    at = run_app(CHAPTER3)
    model, text = loaded.model, page_text(at)
    ids = tokenize(loaded.tokenizer, at.session_state["text"])
    kv = roofline.kv_bytes_per_position(model)
    config = model.config
    width = model.dtype.itemsize  # 2 in bfloat16, 4 in float32 (TEST_DTYPE)
    assert kv == (config.num_hidden_layers * 2 * config.num_key_value_heads * config.head_dim
                  * width)
    assert f"adds {kv:,} bytes per position" in text
    dtype = str(model.dtype).removeprefix("torch.")
    assert f"weights are **{size(roofline.bytes_per_token(model))}** in {dtype}" in text
    mac = roofline.matrix_multiply_adds(model) + roofline.attention_multiply_adds(
        model, len(ids))
    assert f"**{mac:,} multiply-adds**" in text
    assert f"{config.num_attention_heads} query heads × {len(ids):,} positions × " \
           f"{config.head_dim}" in text
    measured = measure.MEASURED
    bandwidth = measured[("bandwidth",)].value[0]
    assert f"reads **{bandwidth / 1e9:.1f} GB/s**" in text
    assert any(key[:2] == ("decode", loaded.model_id) for key in measured)


def test_controls_that_need_no_model_run_none(loaded):
    at = run_app(CHAPTER3)
    with running_modules(loaded.model) as calls:
        at.select_slider(key="flash_block").set_value(8).run()
        at.select_slider(key="paged_block").set_value(4).run()
        at.slider(key="paged_learners").set_value(100).run()
        at.slider(key="paged_length").set_value(1000).run()
        at.slider(key="paged_prefix").set_value(64).run()
        at.slider(key="batch_length").set_value(16).run()
        assert calls == []
    assert not at.exception
    text = page_text(at)
    tiled = part(at, flash.TILED)
    assert tiled.block == 8 and "in blocks of **8**" in text
    per = roofline.kv_bytes_per_position(loaded.model)
    assert f"reserving the cap takes **{size(paged.contiguous_bytes(100, 1024, per))}**" in text
    assert f"blocks of 4 take **{size(paged.paged_bytes([1000] * 100, 4, per))}**" in text
    shared = paged.paged_bytes([1000] * 100, 4, per, 64)
    assert f"first 64 positions, **{size(shared)}**" in text
    fits = batching.sequences_that_fit(measure.machine().memory, loaded.model, 16)
    assert f"at most **{fits:,} such sequences**" in text


def test_a_tiny_block_is_raised_on_a_long_text(loaded):
    text = " ".join(["word"] * 600)
    at = run_app(CHAPTER3, text=text)
    at.select_slider(key="flash_block").set_value(1).run()
    n = len(tokenize(loaded.tokenizer, text)[: loaded.max_tokens])
    tiled = part(at, flash.TILED)
    assert tiled.block == flash.effective_block(1, n) > 1
    assert any(f"Blocks of 1 would make {n:,} blocks" in c.value for c in at.caption)
    assert tiled.gap_plain < 1e-4


def test_the_quantization_scheme_control(loaded):
    at = run_app(CHAPTER3)
    at.radio(key="quant_scheme").set_value("4-bit").run()
    assert not at.exception
    compared = part(at, quantize.COMPARED)
    assert set(compared) == {"int8", "4-bit"}
    n = len(part(at, quantize.HIDDEN))
    for scheme in compared.values():
        assert 0 <= scheme.agree <= n and float(scheme.kl.min()) >= -1e-4
    assert any(s.value.startswith("**Summary.** 4-bit:") for s in at.success)
    kept = dict(compared)
    with running_modules(loaded.model) as calls:  # both kept for these ids: no forward
        at.radio(key="quant_scheme").set_value("int8").run()
        at.radio(key="quant_scheme").set_value("4-bit").run()
        at.radio(key="quant_scheme").set_value("int8").run()
        assert calls == []
    assert all(part(at, quantize.COMPARED)[k] is v for k, v in kept.items())
    assert any(s.value.startswith("**Summary.** int8:") for s in at.success)


def test_the_speculative_controls(loaded):
    at = run_app(CHAPTER3)
    run = part(at, speculative.RUN)
    assert run.draft == "layers" and run.layers == 1 and run.k == 4  # the tiny model: 2 layers
    assert run.ids[: len(run.plain)] == run.plain[: len(run.ids)]  # greedy: the same tokens
    at.slider(key="spec_k").set_value(2).run()
    at.radio(key="spec_draft").set_value("lookup").run()
    at.slider(key="spec_temperature").set_value(0.8).run()
    assert not at.exception
    run = part(at, speculative.RUN)
    assert (run.draft, run.k, run.temperature) == ("lookup", 2, 0.8)
    assert all(len(r.guesses) <= 2 and 1 <= len(r.kept) <= len(r.guesses) + 1
               for r in run.rounds)
    assert any(c.value.startswith("speculative = [") for c in at.code)


def test_the_distribution_check_above_temperature_zero(loaded):
    at = run_app(CHAPTER3, text="one two three one two three one two three one two")
    at.slider(key="spec_temperature").set_value(1.0).run()
    run = part(at, speculative.RUN)
    assert run.draft == "layers" and run.check is not None  # the layers draft always guesses
    seen, direct = run.check
    assert abs(seen - direct) < 0.1  # verify()'s first ids as far from p as direct draws
    assert "draws straight from p (`torch.multinomial`) are" in page_text(at)


def test_measure_again_takes_a_new_measurement(loaded):
    at = run_app(CHAPTER3)
    before = measure.MEASURED[("bandwidth",)]
    n = len(tokenize(loaded.tokenizer, at.session_state["text"]))
    decode = measure.MEASURED[("decode", loaded.model_id, n)]
    at.button(key="roofline_again").click().run()
    assert not at.exception
    assert measure.MEASURED[("bandwidth",)] is not before
    assert measure.MEASURED[("decode", loaded.model_id, n)] is not decode
    # this model's batch steps (other tests' models keep theirs: the button is this page's)
    batch = [k for k in measure.MEASURED if k[:2] == ("batch", loaded.model_id)]
    old = {k: measure.MEASURED[k] for k in batch}
    at.button(key="batching_again").click().run()
    assert batch and all(measure.MEASURED[k] is not old[k] for k in batch)
    with counting_forwards(loaded.model) as calls:
        at.button(key="speculative_again").click().run()
        assert calls  # the run is made again


def test_a_second_learner_reuses_the_measurements_and_shares_no_run(loaded):
    first = run_app(CHAPTER3, text="The first learner writes about cats and cats")
    kept = dict(measure.MEASURED)
    second = run_app(CHAPTER3, text="The first learner writes about dogs and dogs")  # same n
    assert all(measure.MEASURED[k] is v for k, v in kept.items())  # nothing measured twice
    assert part(first, speculative.RUN) is not part(second, speculative.RUN)
    assert part(first, speculative.RUN).ids != part(second, speculative.RUN).ids or \
        part(first, flash.TILED) is not part(second, flash.TILED)
    assert held_tensors(measure.MEASURED) == []  # times and notes, no learner's tensors
    for text in ("cats", "dogs"):
        assert text not in repr(measure.MEASURED)


@pytest.mark.parametrize("text", [
    "a",
    "**bold** $x^2$ :red[alarm] <script>alert(1)</script> [a](javascript:x)",
    "👍🏽 family 👨‍👩‍👧 and 🦙 " * 3,
])
def test_hostile_texts_render_without_a_traceback(text):
    at = run_app(CHAPTER3, text=text)
    assert not at.exception and len(at.success) == 6
    assert "<script>" not in page_text(at)


def test_an_empty_text_asks_for_one():
    at = run_app(CHAPTER3, text="")
    assert not at.exception
    assert any("Type some text" in i.value for i in at.info)


def test_chapter_3_renders_on_the_pocket_model(monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "pocket")
    at = run_app(CHAPTER3)
    assert not at.exception and len(at.success) == 6
    run = part(at, speculative.RUN)
    from token_by_token.model import load
    assert run.layers == load().model.config.num_hidden_layers // 2
    assert at.select_slider(key="spec_layers").value == run.layers
    at.select_slider(key="spec_layers").set_value(1).run()
    assert part(at, speculative.RUN).layers == 1 and not at.exception


def test_the_shared_model_is_never_changed(loaded):
    before = {name: p.clone() for name, p in loaded.model.named_parameters()}
    modules = [type(m) for m in loaded.model.modules()]
    at = run_app(CHAPTER3)
    at.radio(key="quant_scheme").set_value("4-bit").run()
    at.radio(key="spec_draft").set_value("lookup").run()
    assert [type(m) for m in loaded.model.modules()] == modules
    assert all(torch.equal(p, before[name]) for name, p in loaded.model.named_parameters())
    assert loaded.model.config.num_hidden_layers == len(loaded.model.model.layers)


def test_chapter_3_choices_survive_switching_pages():

    at = run_app(CHAPTER3)
    at.select_slider(key="flash_block").set_value(8).run()
    at.radio(key="quant_scheme").set_value("4-bit").run()
    at.slider(key="spec_k").set_value(2).run()
    at.slider(key="paged_learners").set_value(50).run()
    chosen = {k: at.session_state[k] for k in
              ["flash_block", "quant_scheme", "spec_k", "paged_learners", "batch_length"]}
    for page in [CHAPTER1, CHAPTER2, CHAPTER3]:
        at.switch_page(page).run()
        assert not at.exception
    assert {k: at.session_state[k] for k in chosen} == chosen
    assert at.select_slider(key="flash_block").value == 8


def reachable(root, kind) -> list:
    """Every object of `kind` reachable from `root` (gc referents; the shared model and
    tokenizer left out, as held_tensors does)."""
    import gc

    from helpers import SHARED_OBJECTS
    seen, found, todo = set(), [], [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, SHARED_OBJECTS) or type(obj).__name__.endswith(
                "Tokenizer") or type(obj).__name__.endswith("TokenizerFast"):
            continue
        seen.add(id(obj))
        if isinstance(obj, kind):
            found.append(obj)
        todo.extend(gc.get_referents(obj))
    return found


def test_the_learner_keeps_one_kv_cache_whichever_chapter_read_it(loaded):
    """A text typed on Chapter 3 is read into the learner's one KV cache (token_by_token/
    kvcache.py); Chapter 2 then reads that cache, and once Chapter 1 has a cache of the same
    ids, Chapter 3's is gone: no chapter keeps a second cache of the learner's ids."""
    from transformers import DynamicCache

    from token_by_token import kvcache
    at = run_app(CHAPTER3)  # Chapter 1 first (main.py's default page), then Chapter 3
    at.sidebar.text_area(key="text").input("A text typed on Chapter 3").run()
    memo = at.session_state["_memo"]
    ids = tokenize(loaded.tokenizer, "A text typed on Chapter 3")
    mine = kvcache.cache_of(memo, ids)
    assert mine is not None and mine.get_seq_length() == len(ids)
    at.switch_page(CHAPTER2).run()
    assert kvcache.cache_of(memo, ids) is mine  # Chapter 2 read it: no cache of its own
    assert len(reachable(at.session_state, DynamicCache)) == 2  # and Chapter 1's old one
    at.switch_page(CHAPTER1).run()
    assert not at.exception
    caches = reachable(at.session_state, DynamicCache)
    assert len(caches) == 1 and caches[0] is kvcache.cache_of(memo, ids)


def test_no_quantized_copy_of_the_layers_outlives_its_use(loaded, monkeypatch):
    """The text is read by a twin that quantizes each matrix when it is used; the twin that
    keeps its integers for the timed steps is dropped once timed: after the page has drawn
    either scheme, no quantized module with integers is alive in the process."""
    import gc
    built, twin = [], quantize.quantized_twin

    def counting(model, scheme, kernel, lazy=False):
        double = twin(model, scheme, kernel, lazy)
        built.append((lazy, len(quantize.modules_of(double))))
        return double
    monkeypatch.setattr(quantize, "quantized_twin", counting)
    measure.forget("kernel", loaded.model_id)  # (timed again here, whatever ran before)
    at = run_app(CHAPTER3)
    at.radio(key="quant_scheme").set_value("4-bit").run()
    assert not at.exception
    assert all(quantize.MEASURED.get(("kernel", loaded.model_id, s, quantize.STEP_CONTEXT))
               for s in quantize.SCHEMES)  # both were timed on a twin with integers
    gc.collect()
    kept = [m for m in gc.get_objects() if isinstance(m, quantize.Quantized)
            and hasattr(m, "q")]
    assert kept == []
    assert any(s.value.startswith("**Summary.** 4-bit:") for s in at.success)
    # the twin that keeps its integers holds the timed layers' only (a quarter of them),
    # and the page says through how many layers the steps went
    layers, timed = len(loaded.model.model.layers), quantize.timed_layers(loaded.model)
    assert 1 <= timed < layers
    resident = [n for lazy, n in built if not lazy]
    assert resident == [len(quantize.matrices(loaded.model, timed))] * 2
    assert resident[0] < len(quantize.matrices(loaded.model))
    through = "its first layer (of" if timed == 1 else f"the first {timed} of its {layers} layers"
    assert any(f"a decode step through {through}" in m.value for m in at.markdown)
