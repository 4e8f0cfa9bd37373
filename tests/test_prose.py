"""Sentences the pages say, checked against the library or a computation (issue 26): the
Reset's values and their source, the chat template's ids, the pre-tokenizer's pieces, the
padding rows, the filters at their greedy ends, silu, QK-norm's bound, the pocket model's
corpus and the README's figures of it, and every difference told in steps of its dtype."""

import json
import re
import shutil

import pytest
import torch
import torch.nn.functional as F
from helpers import CHAPTER2, ROOT, page_text, run_app
from transformers import (
    GenerationConfig,
    MinPLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from chapter1.tokenizer import PRE_EXAMPLE, table_rows, tokenize
from token_by_token import precision, state
from token_by_token.model import POCKET_DIR, pocket_corpus

REPORT = json.loads((POCKET_DIR / "training_report.json").read_text())
SLIDERS = ("temperature", "top_k", "top_p", "min_p")


# --- Reset ---------------------------------------------------------------------------------

@pytest.fixture
def sampling_model(tiny_dir, tmp_path, monkeypatch):
    """The tiny model with Qwen3-0.6B's generation_config.json (do_sample, 0.6, 20, 0.95)."""
    path = tmp_path / "qwen-like"
    shutil.copytree(tiny_dir, path)
    config = json.loads((path / "generation_config.json").read_text())
    config.update(do_sample=True, temperature=0.6, top_k=20, top_p=0.95)
    (path / "generation_config.json").write_text(json.dumps(config))
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(path))
    from token_by_token.model import load
    return load()


def pressed_reset(at):
    for key in SLIDERS:
        at.sidebar.slider(key=key).set_value(state.SLIDERS[key].high).run()
    at.sidebar.button(key="reset").click().run()
    assert not at.exception
    return {key: at.session_state[key] for key in SLIDERS}


def test_reset_follows_the_models_generation_config(sampling_model):
    at = run_app()
    assert {key: at.session_state[key] for key in SLIDERS} == state.SAMPLING_DEFAULTS
    button = at.sidebar.button(key="reset")
    assert button.label == "Reset to the model's generation_config"
    assert pressed_reset(at) == {"temperature": 0.6, "top_k": 20, "top_p": 0.95, "min_p": 0.0}
    assert "generation_config.json" in button.help and "thinking mode" in button.help
    # the values generate() itself takes from the file when called without settings
    prepared, _ = sampling_model.model._prepare_generation_config(None)
    assert prepared.do_sample and (prepared.temperature, prepared.top_k, prepared.top_p,
                                   prepared.min_p) == (0.6, 20, 0.95, None)  # None: no Min-P


def test_reset_without_sampling_settings_restores_the_starting_values(loaded):
    assert not loaded.model.generation_config.do_sample  # generate() would be greedy
    at = run_app()
    button = at.sidebar.button(key="reset")
    assert button.label == "Reset to the page's starting values"
    assert pressed_reset(at) == state.SAMPLING_DEFAULTS
    assert "non-thinking mode" in button.help and "decodes greedily" in button.help


@pytest.mark.parametrize("settings", [
    {"do_sample": True, "temperature": 0.6, "top_k": 20, "top_p": 0.95},
    {"do_sample": True},
    {"do_sample": True, "top_k": 0, "min_p": 0.05, "temperature": 1.3},
    {"temperature": 0.6},
])
def test_model_sampling_is_what_generate_uses(loaded, settings):
    """model_sampling() against transformers' own _prepare_generation_config (what
    generate() samples with when it is given no settings)."""
    model = loaded.model
    saved = model.generation_config
    try:
        model.generation_config = GenerationConfig(**settings)
        prepared, _ = model._prepare_generation_config(None)
        ours = state.model_sampling(model.generation_config)
    finally:
        model.generation_config = saved
    if not prepared.do_sample:
        assert ours is None
        return
    assert ours == {"temperature": prepared.temperature, "top_k": prepared.top_k,
                    "top_p": prepared.top_p, "min_p": prepared.min_p or 0.0}


def test_reset_values_fit_the_sliders():
    reset = state.sampling_reset(GenerationConfig(do_sample=True, temperature=0.63, top_k=200))
    assert reset.values["temperature"] == 0.65 and reset.values["top_k"] == 100
    assert "to the sliders' steps (it says temperature 0.63, top_k 200" in reset.help


# --- Section 1 ----------------------------------------------------------------------------

def template_ids(tokenizer, text, thinking):
    return tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                         add_generation_prompt=True,
                                         enable_thinking=thinking)["input_ids"]


def around(template, text_ids):
    """The ids before and after the text's own ids in the template's (found as a run)."""
    n = len(text_ids)
    start = next(i for i in range(len(template)) if template[i: i + n] == text_ids)
    return template[:start], template[start + n:]


@pytest.mark.parametrize("thinking", [False, True])
def test_the_chat_template_explained_from_its_ids(loaded, thinking):
    tokenizer, text = loaded.tokenizer, state.DEFAULT_TEXT
    at = run_app(chat=True, thinking=thinking)
    said = page_text(at)
    template = template_ids(tokenizer, text, thinking)
    before, after = around(template, tokenize(tokenizer, text))
    assert f"**{len(before)} ids before your text and {len(after)} after it**" in said
    decoder = tokenizer.added_tokens_decoder
    for i in before + after:
        if i in decoder:
            listed = f"`{decoder[i].content}` ({i})"
            assert listed in said
            kind = "special tokens" if decoder[i].special else "added tokens that are not"
            sentence = next(s for s in said.split(". ") if listed in s)
            assert kind in sentence, (listed, sentence)
    assert "spelled by BPE like yours, the roles (`user`, `assistant`) included" in said
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert f"`<|im_end|>` ({end}), which closes your message, is also one of the ids where " \
        "generation stops" in said and end in loaded.eos_ids
    block = template_ids(tokenizer, text, False)[len(template_ids(tokenizer, text, True)):]
    assert [tokenizer.decode([i]) for i in block] == ["<think>", "\n\n", "</think>", "\n\n"]
    assert f"(4 ids: {', '.join(map(str, block))})" in said
    assert ("With Thinking on, the template leaves the reasoning block to the model" in said) \
        is thinking
    assert ("With Thinking off, the template itself then writes an empty reasoning block"
            in said) is not thinking
    # the template's own special tokens are not "in your text"
    assert not any("Your text contains" in i.value for i in at.info)


def test_the_chat_template_explained_on_the_pocket_model(monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "pocket")
    at = run_app(chat=True)
    said = page_text(at)
    assert "**3 ids before your text and 7 after it**" in said  # ChatML, no thinking switch
    assert "Thinking" not in said and "reasoning block" not in said


def test_the_pre_tokenizer_sentence_is_the_tokenizers(loaded):
    at = run_app()
    pieces = [piece.replace("Ġ", "␣") for piece, _ in
              loaded.tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(PRE_EXAMPLE)]
    assert pieces[:5] == list("12345")  # Qwen2's pattern: one digit per piece
    sentence = next(m.value for m in at.markdown if "pre-tokenizer" in m.value)
    assert " · ".join(f"“{p}”" for p in pieces) in sentence
    assert "every digit on its own" in sentence
    spelled = [loaded.tokenizer.convert_ids_to_tokens(i).replace("Ġ", "␣")
               for i in tokenize(loaded.tokenizer, PRE_EXAMPLE)]
    assert " · ".join(f"“{p}”" for p in spelled) in sentence


def test_the_padding_rows_are_told_by_arithmetic():
    qwen = table_rows(151_669, 151_936)  # Qwen3-0.6B's tokenizer and table
    assert "267 more than the tokenizer uses" in qwen
    assert "a multiple of 128 (151,936 = 128 × 1,187)" in qwen
    assert 151_936 % 128 == 0 and (151_936 // 128) % 2 == 1
    assert table_rows(2052, 2052).endswith("the same number.")
    assert "multiple" not in table_rows(100, 105)  # 105 is odd: no padding to speak of


def test_the_filters_greedy_ends_and_ties():
    """Section 3's rules: Top-P 0 keeps exactly one token, by sort order, not necessarily
    argmax's among tied favourites; Top-K 1 and Min-P 1 keep every tied one."""
    scores = torch.zeros(1, 10)
    scores[0, 3] = scores[0, 7] = 5.0
    kept = {name: torch.isfinite(warper(None, scores)).nonzero()[:, 1].tolist()
            for name, warper in [("top_p", TopPLogitsWarper(0.0)), ("top_k", TopKLogitsWarper(1)),
                                 ("min_p", MinPLogitsWarper(1.0))]}
    assert len(kept["top_p"]) == 1 and kept["top_k"] == kept["min_p"] == [3, 7]
    assert kept["top_p"] != [int(scores.argmax())]  # here the other favourite: 7, not 3
    from chapter1.filters import RULES
    assert "P = 0 keeps exactly one token" in RULES["Top-P (nucleus)"]


# --- Chapter 2 ----------------------------------------------------------------------------

def test_silu_dips_as_the_mlp_says(loaded):
    from chapter2 import mlp
    assert "silu ≥ -0.28" in mlp.mlp.__doc__
    xs = torch.linspace(-10, 10, 200_001)
    assert -0.28 < float(F.silu(xs).min()) < -0.27
    at = run_app(CHAPTER2)
    assert "dips to -0.278 (at x = -1.279)" in page_text(at)


def test_no_score_passes_the_qk_norm_bound(monkeypatch):
    """|q·k| / √d ≤ max|q gain| · max|k gain| · √d in every layer (a little slack for
    bfloat16's rounding of the normalised vectors), as Section 3 says; on the pocket model,
    whose gains were learned (the tiny model's are all 1)."""
    from chapter2.attention import angles, qk_norm, rotate, scores, share_kv, split_heads
    from chapter2.rmsnorm import norm
    from token_by_token.model import load
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "pocket")
    loaded = load()
    model, ids = loaded.model, tokenize(loaded.tokenizer, " ".join(["word"] * 40) + " end")
    with torch.inference_mode():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        cos, sin = angles(model, len(ids))
        for layer, block in enumerate(model.model.layers):
            attn = block.self_attn
            x = norm(block.input_layernorm, hidden[layer][0])
            q = split_heads(attn.q_proj(x), attn.head_dim)
            k = split_heads(attn.k_proj(x), attn.head_dim)
            q, k = qk_norm(block, q, k)
            s = scores(rotate(q, cos, sin).float(), share_kv(rotate(k, cos, sin), len(q)).float())
            bound = (attn.q_norm.weight.float().abs().max() * attn.k_norm.weight.float().abs()
                     .max() * attn.head_dim ** 0.5)
            assert float(s.abs().max()) <= 1.02 * float(bound), layer
    at = run_app(CHAPTER2)
    gains = [float(getattr(model.model.layers[0].self_attn, name).weight.float().abs().max())
             for name in ("q_norm", "k_norm")]
    assert gains != [1.0, 1.0]
    assert f"the largest gains are **{gains[0]:.3g}** (q) and **{gains[1]:.3g}** (k)" \
        in page_text(at)
    assert f"= **{gains[0] * gains[1] * model.config.head_dim ** 0.5:,.3g}**" in page_text(at)


def test_every_check_table_tells_its_differences_in_steps_of_the_dtype(loaded, monkeypatch):
    at = run_app(CHAPTER2)
    tables = [d.value for d in at.table if "in steps of its dtype" in d.value.columns]
    assert len(tables) == 4  # RMSNorm, attention, MLP, the layer output
    seen = at.session_state["_memo"].latest(__import__("chapter2.pipeline").pipeline.INSIDE)
    checks = seen.layers[0].checks
    for table in tables:
        for _, row in table.iterrows():
            _, difference, size = checks[row["value"]]
            assert difference.dtype == (torch.float32 if row["value"] == "attention weights"
                                        else loaded.model.dtype)
            assert row["in steps of its dtype"] == precision.in_steps(float(difference), size,
                                                                      difference.dtype)
    assert any("equals the library's, bit for bit" in c.value for c in at.caption)  # RMSNorm
    said = page_text(at)
    assert f"{precision.significant_bits(loaded.model.dtype)} significant bits" in said
    worst = seen.logit_gap()
    assert f"**{worst:.4g}**: {worst.said()}" in said
    logits = next(d.value for d in at.table if "top-1 by hand" in d.value.columns)
    assert logits["in steps of the dtype"].tolist() == [seen.logit_gap(p).said()
                                                        for p in range(len(seen.ids))]


def test_a_broken_lesson_shows_as_many_steps(loaded, monkeypatch):
    """A wrong RoPE is far more than rounding: tens of steps of the dtype, where the right
    one is none."""
    import chapter2.attention as attention
    from chapter2 import pipeline
    from token_by_token.memo import Memo

    def interleaved(x):
        pairs = x.unflatten(-1, (-1, 2))
        return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    ids = tokenize(loaded.tokenizer, "The quick brown fox jumps over the lazy dog")
    right = pipeline.look_inside(loaded.model, ids, Memo()).layers[0].checks["RoPE (q)"][1]
    monkeypatch.setattr(attention, "rotate_half", interleaved)
    wrong = pipeline.look_inside(loaded.model, ids, Memo()).layers[0].checks["RoPE (q)"][1]
    assert right.steps == 0 and right.said() == "none: the same numbers"
    assert wrong.steps > 10, wrong.said()


def test_the_proof_tells_its_difference_in_steps(loaded):
    from chapter1 import proof
    at = run_app(autoregressive=True, play_tokens=3, temperature=1.0, top_k=0, top_p=1.0)
    at.sidebar.button(key="play").click().run()
    at.button(key="proof").click().run()
    found = at.session_state["_memo"].latest(proof.PROOF)
    assert found.largest.dtype == loaded.model.dtype
    assert float(found.largest) == float(found.differences.max())
    sentence = next(m.value for m in at.markdown if "by at most" in m.value)
    assert sentence.endswith(": the same numbers.") if found.largest == 0 else \
        found.largest.said() in sentence and "significant bits" in sentence


def test_the_kv_cache_size_is_told_in_the_caches_dtype(loaded):
    at = run_app()
    dtype = precision.name(loaded.model.dtype)
    assert re.search(rf"\(\d[\d,]* KiB in {dtype}\)", page_text(at))


# --- the pocket model ---------------------------------------------------------------------

def test_the_pocket_banner_says_its_corpus_from_the_report():
    corpus = REPORT["corpus"]
    sources = corpus["sources"]
    assert sum(s["characters"] for s in sources.values()) == corpus["characters"]
    python = sources["python"]["characters"]
    said = pocket_corpus()
    assert said.startswith(f"{corpus['characters'] / 1e6:.1f} million characters")
    assert f"{python / 1e6:.1f} million ({python / corpus['characters']:.0%}) from Python's" \
        in said
    biggest = sorted((s for s in sources if s != "python"),
                     key=lambda s: -sources[s]["characters"])
    assert f"docstrings of {', '.join(biggest[:3])} and {len(biggest) - 3} more" in said
    assert "Python's own documentation" not in said


def test_the_readmes_pocket_figures_are_the_reports():
    readme = (ROOT / "README.md").read_text()
    corpus, sources = REPORT["corpus"], REPORT["corpus"]["sources"]
    licences = {"PSF-2.0": "PSF License", "Apache-2.0": "Apache-2.0",
                "BSD-3-Clause": "BSD-3-Clause"}
    for licence, shown in licences.items():
        total = sum(s["characters"] for s in sources.values() if s["licence"] == licence)
        row = next(line for line in readme.splitlines()  # (the corpus table's rows)
                   if line.startswith("| ") and shown in line and "docstrings" in line
                   or line.startswith("| Python's standard library") and shown in line)
        assert row.rstrip(" |").endswith(f"{total / 1e6:.1f} M"), row
        for name, source in sources.items():
            if source["licence"] == licence and name != "python":
                assert name in row, (name, row)
    assert f"({corpus['characters'] / 1e6:.1f} million characters, " \
        f"{corpus['train_tokens'] / 1e6:.0f} million training tokens" in readme
    held, python = REPORT["held_out_bfloat16"], REPORT["held_out_python_bfloat16"]
    assert f"loss {held['loss']:.2f}, perplexity {held['perplexity']:.1f}" in readme
    assert f"accuracy {held['top1_accuracy']:.1%}" in readme
    assert f"{python['top1_accuracy']:.0%}, perplexity {python['perplexity']:.0f}" in readme
    assert f"{REPORT['parameters'] / 1e6:.1f}M-parameter" in readme
    assert f"{REPORT['steps']:,} steps of {REPORT['training']['batch']} × " \
        f"{REPORT['training']['context']} tokens" in readme
