"""Every architecture: Chapter 1 on every causal language model with a tokenizer, Chapter 2 on
the Llama family (Llama with Llama 3's RoPE scaling, Mistral with its sliding window, Qwen2 with
biases on q, k and v, Qwen3 with QK-norm, and a Qwen3 with one sliding-window layer), the same
lesson functions for each, equal to the library.

The models: tiny offline models of each architecture (their transformers config classes, the
tiny tokenizer), built with large random weights (--init-std 0.5: peaked distributions, so that
a top-1 or a sample is not decided by a near-tie of the random weights).
"""

import pytest
import tiny_model
import torch
from helpers import CHAPTER2, code_starting, load, logits_of, page_text, run_app
from transformers.masking_utils import and_masks, causal_mask_function, sliding_window_overlay
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from chapter1.pipeline import generate
from chapter1.tokenizer import chat, tokenize
from chapter2 import architecture
from chapter2 import attention as attn
from chapter2.attention import attention_weights
from chapter2.lens import logit_lens
from chapter2.rebuild import forward_by_hand
from token_by_token import model as models
from token_by_token.capture import capture

FAMILY = ["llama", "mistral", "qwen2", "qwen3", "qwen3-sliding"]  # Chapter 2 opens these
EVERY = [*FAMILY, "gemma3", "phi3", "gpt2"]  # Chapter 1 runs on all of them
IDS = [(37 * i + 11) % 1500 for i in range(40)]  # longer than the sliding window (16)
TEXT = "The quick brown fox jumps over the lazy dog, and the dog sleeps on in the sun."


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("families")
    return {arch: tiny_model.build(root / arch, arch=arch, init_std=0.5) for arch in EVERY}


def relative(ours, theirs) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


# --- Chapter 2: the lesson functions, for each family ---------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("arch", FAMILY)
def test_forward_by_hand_equals_the_library_for_each_family(built, arch, dtype):
    """float32: within 1e-5 of the model's own (fused) forward; in both dtypes, bit for bit
    the library's eager forward, so the top-1 token at every position is the library's."""
    model, eager = load(built[arch], dtype), load(built[arch], dtype, eager=True)
    assert architecture.refusal(model) is None
    ours = forward_by_hand(model, IDS)
    assert torch.equal(ours, logits_of(eager, IDS))
    assert torch.equal(ours.argmax(-1), logits_of(eager, IDS).argmax(-1))
    if dtype == torch.float32:
        assert relative(ours, logits_of(model, IDS)) <= 1e-5


@pytest.mark.parametrize("arch", FAMILY)
def test_forward_by_hand_calls_no_layer_attention_mlp_or_norm_module(built, arch):
    model = load(built[arch], torch.float32)
    kinds = ("DecoderLayer", "Attention", "MLP", "RMSNorm", "RotaryEmbedding", "Model")
    watched = {name: module for name, module in model.named_modules()
               if type(module).__name__.endswith(kinds)}
    assert len(watched) >= 4 * model.config.num_hidden_layers
    with capture(watched) as seen:
        forward_by_hand(model, IDS)
    assert {name: len(calls) for name, calls in seen.calls.items() if calls} == {}


@pytest.mark.parametrize("arch", FAMILY)
def test_attention_weights_are_the_librarys_in_every_layer(built, arch):
    """In float32, against the eager attention's own weights: the sliding window included
    (keys further back than the window weigh exactly 0)."""
    model, eager = load(built[arch], torch.float32), load(built[arch], torch.float32, True)
    with torch.inference_mode():
        theirs = eager(torch.tensor([IDS]), output_attentions=True).attentions
    for layer in range(model.config.num_hidden_layers):
        ours = attention_weights(model, IDS, layer)
        assert ours.dtype == torch.float32 and ours.shape == theirs[layer][0].shape
        assert torch.allclose(ours, theirs[layer][0], atol=1e-5), (arch, layer)
        window = attn.sliding_window(model.model.layers[layer])
        if window is not None:
            assert ours[:, -1, : len(IDS) - window].abs().max() == 0


@pytest.mark.parametrize("arch", FAMILY)
def test_the_logit_lens_ends_at_the_models_prediction(built, arch):
    model = load(built[arch], torch.float32)
    lens = logit_lens(model, IDS)
    assert lens.dtype == torch.int64 and lens.shape == (model.config.num_hidden_layers + 1,
                                                        len(IDS))
    assert torch.equal(lens[-1], logits_of(model, IDS).argmax(-1))


@pytest.mark.parametrize("window", [None, 1, 3, 16])
@pytest.mark.parametrize("rows", [1, 5, 20])
def test_the_causal_mask_is_the_librarys_with_or_without_a_window(window, rows):
    n = 20
    allowed = causal_mask_function if window is None else and_masks(
        causal_mask_function, sliding_window_overlay(window))
    i, j = torch.arange(n - rows, n)[:, None], torch.arange(n)[None, :]
    ours = attn.causal_mask(torch.zeros(rows, n), window)
    assert torch.equal(ours == 0, allowed(0, 0, i, j))


def test_llama3_rope_speeds_are_the_librarys(built):
    model = load(built["llama"], torch.float32)
    head_dim = model.model.layers[0].self_attn.head_dim
    assert torch.equal(attn.rope_speeds(model.config, head_dim), model.model.rotary_emb.inv_freq)
    plain = 1.0 / attn.rope_theta(model.config) ** (torch.arange(0, head_dim, 2) / head_dim)
    assert (attn.rope_speeds(model.config, head_dim) < plain).any()  # some pairs slowed
    # Llama 3.2's own numbers (factor 32, 8,192 positions, head_dim 64, θ 500,000)
    from transformers import LlamaConfig
    real = LlamaConfig(hidden_size=2048, num_attention_heads=32, head_dim=64, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500_000.0, "factor": 32.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](real)
    assert torch.equal(attn.rope_speeds(real, 64), theirs)


STATED = {  # what the page must say about each family, computed from its modules
    "llama": ["this model has no QK-norm: the step is skipped",
              "RoPE frequencies rescaled for long contexts: factor 8"],
    "mistral": ["every layer attends through a sliding window of 16 positions",
                "this model has no QK-norm: the step is skipped"],
    "qwen2": ["q, k and v carry biases", "this model has no QK-norm: the step is skipped"],
    "qwen3": ["QK-norm: each head's query and key are RMS-normalised"],
    "qwen3-sliding": ["1 of its 2 layers (layer 1) attends through a sliding window of 16"],
}


@pytest.mark.parametrize("arch", FAMILY)
def test_chapter2_opens_each_family_and_says_what_it_has(built, arch, monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(built[arch]))
    at = run_app(CHAPTER2, text=TEXT)
    text = page_text(at)
    for said in STATED[arch]:
        assert said in text, (arch, said)
    headers = [h.value for h in at.header]
    assert headers[-1] == "Conclusion" and sum(h[0].isdigit() for h in headers) >= 9
    from chapter2.pipeline import INSIDE
    seen = at.session_state["_memo"].latest(INSIDE)
    # the top-1 by hand is the library's wherever the library's two best are further apart
    # than the rounding between the two (bfloat16 with fused attention: a near-tie can swap)
    for p in (seen.top_hand != seen.top_library).nonzero().flatten().tolist():
        assert seen.margins[p] <= 2 * seen.logit_gaps[p], (arch, p)
    if at.session_state["_memo"].latest(INSIDE).stream.dtype == torch.float32:
        assert seen.agree == len(seen.ids)
    for opened in seen.layers:
        for what, (_, difference, _) in opened.checks.items():
            assert difference.steps <= 64, (arch, opened.layer, what, difference.said())
    for layer in range(at.session_state["layer"], len(seen.layers)):
        at.sidebar.slider(key="layer").set_value(layer).run()
        assert not at.exception


@pytest.mark.parametrize("arch", ["gemma3", "phi3", "gpt2"])
def test_chapter2_says_plainly_why_it_cannot_open_the_others(built, arch, monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(built[arch]))
    at = run_app(CHAPTER2)
    [message] = [i.value for i in at.info]
    assert "Chapter 2 opens the Llama family" in message
    assert "Chapter 1 works on it in full" in message
    assert not any(h.value[:1].isdigit() for h in at.header)


# --- Chapter 1 on every causal language model ---------------------------------------------

@pytest.mark.parametrize("arch", EVERY)
def test_chapter1_generate_is_the_librarys_generate_on_every_architecture(built, arch):
    """chapter1.pipeline.generate, the chapter in one function, against model.generate
    under the same seed: the same ids (the sliding-window caches of Mistral and Gemma 3
    included: 30 tokens run past their window)."""
    loaded = models.load(str(built[arch]))
    ids = tokenize(loaded.tokenizer, TEXT)
    for seed, settings in [(0, (0.7, 20, 0.8, 0.0)), (3, (1.0, 0, 1.0, 0.05))]:
        torch.manual_seed(seed)
        ours = generate(loaded.tokenizer, loaded.model, TEXT, 30, *settings)
        torch.manual_seed(seed)
        temperature, top_k, top_p, min_p = settings
        theirs = loaded.model.generate(
            torch.tensor([ids]), max_new_tokens=30, eos_token_id=None, pad_token_id=0,
            do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        assert ours == theirs[0].tolist(), (arch, seed)


@pytest.mark.parametrize("arch", EVERY)
def test_chapter1_reads_each_models_chat_template_and_end_ids(built, arch, monkeypatch):
    """The chat toggle where the tokenizer has a chat template (the template's ids shown),
    none where it has none (GPT-2); the end-of-text ids from the generation config."""
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(built[arch]))
    loaded = models.load()
    generation = loaded.model.generation_config
    assert loaded.eos_ids == {*generation.eos_token_id, loaded.tokenizer.eos_token_id}
    assert len(loaded.eos_ids) == 2  # the config's eos alone is one of them
    at = run_app(text=TEXT)
    toggles = [t.key for t in at.sidebar.toggle]
    if arch == "gpt2":
        assert "chat" not in toggles and not loaded.tokenizer.chat_template
        return
    at.sidebar.toggle(key="chat").set_value(True).run()
    expected = chat(loaded.tokenizer, TEXT)
    assert code_starting(at, "tokens = ").startswith(f"tokens = {expected}")


# --- what changed since GPT-2 -----------------------------------------------------------

def test_the_table_puts_gpt2_beside_the_model_from_their_weights(loaded, gpt2_dir):
    from transformers import AutoModelForCausalLM

    from chapter2 import since_gpt2
    from token_by_token.sections import number
    at = run_app(CHAPTER2)
    [table] = [m.value for m in at.markdown if m.value.startswith("| |")]
    table = table.replace("\\", "")  # (Markdown's escapes)
    rows = {line.split("|")[1].strip(" *"): line for line in table.splitlines()[2:]}
    assert "LayerNorm" in rows["normalisation"] and "RMSNorm" in rows["normalisation"]
    assert "a learned vector per position, added to x (2,048 × 64)" in rows["positions"]
    assert "RoPE turns q and k" in rows["positions"]
    assert "4 heads, each with its own keys and values" in rows["attention heads"]
    assert "4 query heads share 2 key/value heads" in rows["attention heads"]
    assert "SwiGLU, 3 matrices" in rows["MLP"] and "2 matrices, 64 → 256 → 64" in rows["MLP"]
    gpt2 = AutoModelForCausalLM.from_pretrained(gpt2_dir)  # its count, by the library
    counted = f"{sum(p.numel() for p in gpt2.parameters()):,}"
    ours = f"{sum(p.numel() for p in loaded.model.parameters()):,}"
    assert f"| {counted} | {ours} |" in rows["parameters"].replace(" (the same)", "")
    assert f"[section {number(since_gpt2.WHERE['normalisation'])}](#rmsnorm)" \
        in rows["normalisation"]
    assert "(the same)" in rows["output matrix"]  # both tied
    assert "byte-level BPE" in rows["vocabulary and tokenizer"]
