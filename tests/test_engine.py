"""The engine every chapter shares (token_by_token/): the live-value tracer, how a token is
shown, the chart builders, the dtype's steps, the captures of a forward, the memo, the model
loader."""

import gc
import html
import json
import math
import pickle
import shutil
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import IDS, code_starting, generated_ids, load, logits_of, run_app, shown_next_id

from chapter1.filters import bars_table, probabilities, survivors, warpers
from chapter1.logits import Candidates, heatmap_table, logits
from chapter1.tokenizer import tokenize
from token_by_token import charts, model, precision
from token_by_token.capture import capture, forward_capturing
from token_by_token.locks import FORWARD_LOCK
from token_by_token.precision import PIECE, Difference, difference, in_steps, spacing
from token_by_token.tokens import (
    markdown_literal,
    show,
    show_bytes,
    show_ids,
    spans,
    token_bytes,
    visible,
)
from token_by_token.trace import counts, describe, traced, with_values

# --- trace: values beside the lesson code ---------------------------------------------------

def counting(items):
    """A toy lesson: a loop, an in-place change, a tuple of locals returned."""
    total = 0
    seen = []
    for item in items:
        total = total + item
        seen.append(item)
    return total, seen


def test_each_line_shows_what_it_did_each_time_it_ran():
    result, trace = traced(counting, [3, 4])
    assert result == (7, [3, 4])
    assert with_values(trace) == "\n".join([
        "def counting(items):",
        "    # → items = [3, 4]",
        '    """A toy lesson: a loop, an in-place change, a tuple of locals returned."""',
        "    total = 0",
        "    # → total = 0",
        "    seen = []",
        "    # → seen = []",
        "    for item in items:",
        "    # → [1] item = 3",
        "    # → [2] item = 4",
        "        total = total + item",
        "        # → [1] total = 3",
        "        # → [2] total = 7",
        "        seen.append(item)",
        "        # → [1] seen = [3]",  # changed in place: shown all the same
        "        # → [2] seen = [3, 4]",
        "    return total, seen",
        "    # → returns (total, seen)",
    ])


def test_values_are_noted_when_made_not_after_later_changes():
    def grow(t):
        t2 = t * 2
        t2.add_(100)  # in place, after the line above has been shown
        return t2
    _, trace = traced(grow, torch.ones(4))
    code = with_values(trace)
    assert "t2 = [4] float32 [2, 2, 2, …]" in code
    assert "t2 = [4] float32 [102, 102, 102, …]" in code  # and again after the in-place add


def test_tensors_ids_and_filtered_scores_are_described_as_a_debugger_would():
    assert describe(list(range(100, 120))) == "[100, 101, 102, …, 118, 119] (20 ids)"
    scores = torch.full((1, 5000), float("-inf"))
    scores[0, :20] = 1.5
    assert describe(scores) == "[1×5,000] float32 [1.5, 1.5, 1.5, …] 20 finite"
    assert describe(torch.tensor([298])) == "tensor([298]) int64"


def lesson_code(at, name: str) -> str:
    """The lesson function `name` with its values, as the page shows it."""
    block = next(c.value for c in at.code
                 if f"\ndef {name}(" in f"\n{c.value}" and "# →" in c.value)
    return block[block.index(f"def {name}("):]


def test_the_page_shows_the_values_its_own_lessons_produced(loaded):
    text = "The quick brown fox jumps over the lazy dog"
    at = run_app(text=text, temperature=1.0, top_k=5, top_p=0.9)
    ids = tokenize(loaded.tokenizer, text)
    assert f"# → ids = {describe(ids)}" in lesson_code(at, "tokenize")

    rows = logits(loaded.model, ids)
    assert (f"output = CausalLMOutputWithPast(logits=[1×{len(ids)}×{loaded.vocab_size:,}] "
            in lesson_code(at, "logits"))
    assert f"# → returns {describe(rows)}" in lesson_code(at, "logits")

    # one line per warper: how many tokens its scores left finite = the survivor table's
    chain = warpers(1.0, 5, 0.9, 0.0)
    from chapter1.filters import Watched
    watched = [Watched(w) for w in chain]
    probabilities(rows[-1], watched)
    left = survivors(torch.softmax(rows[-1], dim=-1), watched)["tokens left"].tolist()[1:]
    code = lesson_code(at, "probabilities")
    for number, count in enumerate(left, start=1):
        if count < loaded.vocab_size:
            assert f"# → [{number}] scores = [1×{loaded.vocab_size:,}] float32" in code
            assert f"{count:,} finite" in code.split(f"[{number}] scores = ")[1].split("\n")[0]

    assert f"# → returns {shown_next_id(at)}" in lesson_code(at, "sample")


def test_a_generate_click_shows_the_step_that_appended_the_token(loaded):
    at = run_app(autoregressive=True)
    assert not any(c.value.startswith("def step(") and "# →" in c.value for c in at.code)
    at.sidebar.button(key="generate").click().run()
    code = lesson_code(at, "step")
    assert f"next_id = {generated_ids(at)[0]}" in code
    n = len(tokenize(loaded.tokenizer, at.session_state["text"]))
    assert f"cache = DynamicCache({loaded.model.config.num_hidden_layers} layers, {n} positions)" \
        in code  # as it came in, then with the new position:
    assert f"cache = DynamicCache({loaded.model.config.num_hidden_layers} layers, {n + 1} " \
        "positions)" in code


def test_source_only_is_one_click_away(loaded):
    at = run_app()

    def starts():
        return [c.value for c in at.code if c.value.startswith("def tokenize(")]
    assert len(starts()) == 1  # the plain source is not sent until its tab is opened
    at.session_state["lesson:token_by_token.sequence.tokenize"] = "Source only"
    at.run()
    plain = starts()
    assert not at.exception
    assert len(plain) == 2 and "# →" not in plain[1]
    import inspect
    assert plain[1] == inspect.getsource(tokenize).rstrip("\n")
    assert code_starting(at, "tokens = ")  # the ids line of the contract is still there


@pytest.mark.parametrize("name", ["tokenize", "logits", "warpers", "probabilities", "sample",
                                  "random_stream"])
def test_every_lesson_the_page_ran_shows_its_values(name):
    at = run_app()
    assert lesson_code(at, name)


# --- tokens: how a token id is shown --------------------------------------------------------

@pytest.mark.parametrize("char, shown", [
    (" ", "␣"), ("\n", "\\n"), ("\t", "\\t"), ("\r", "\\r"),
    ("\u200b", "<U+200B>"),  # zero-width space
    ("\u200d", "<U+200D>"),  # zero-width joiner (emoji families)
    ("\ufe0f", "<U+FE0F>"),  # variation selector-16
    ("\U000e0100", "<U+E0100>"),  # variation selector-17
    ("\u202e", "<U+202E>"),  # right-to-left override (bidi control)
    ("\u2066", "<U+2066>"),  # left-to-right isolate (bidi control)
    ("\x00", "<U+0000>"), ("\x1b", "<U+001B>"),  # NUL, ESC
    ("\u00a0", "<U+00A0>"),  # no-break space
    ("a", "a"), ("é", "é"), ("日", "日"), ("👍", "👍"), ("\U0001f3fd", "\U0001f3fd"),
])
def test_visible_characters(char, shown):
    assert visible(char) == shown


def test_partial_utf8_is_shown_as_bytes_never_replacement_char():
    assert show_bytes("日".encode()[:1]) == "<0xE6>"
    assert show_bytes("日".encode()[1:]) == "<0x97><0xA5>"
    shown = show_bytes(b"x" + "👍".encode()[:3])
    assert shown == "x<0xF0><0x9F><0x91>" and "\ufffd" not in shown


def test_every_token_of_mixed_text_round_trips_to_its_bytes(loaded):
    tokenizer = loaded.tokenizer
    text = "The fox 日本語 👨‍👩‍👧 👍🏽 x\u200by\ufe0f\ttab\nline <|endoftext|>"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert b"".join(token_bytes(tokenizer, i) for i in ids) == text.encode()
    shown = show_ids(tokenizer, ids)
    assert all("\ufffd" not in s for s in shown)
    assert "<|endoftext|>" in shown  # a special token is shown as its text, whole
    joined = "".join(shown)
    # this small tokenizer has no multi-byte merges: the zero-width space is three bytes
    assert "x<0xE2><0x80><0x8B>y" in joined and "\\ttab\\nline" in joined


def test_whole_characters_in_a_token_are_shown_as_characters():
    assert show_bytes("x\u200by".encode()) == "x<U+200B>y"
    assert show_bytes("👨\u200d👩".encode()) == "👨<U+200D>👩"
    assert show_bytes(" 日本\n".encode()) == "␣日本\\n"


def test_an_id_without_a_token_is_named_not_crashed(loaded):
    assert show(loaded.tokenizer, 10**6) == f"<unused id {10**6}>"
    assert token_bytes(loaded.tokenizer, 10**6) is None


@pytest.mark.parametrize("text", [
    "**bold**", "_x_", "$x^2$", ":red[x]", "[a](javascript:alert(1))", "`code`",
    "# heading", "{{ x }}", "\\", "~~strike~~", "| a | b |", "1. list",
])
def test_markdown_literal_escapes_every_syntax_character(text):
    escaped = markdown_literal(text)
    # every ASCII punctuation character except those html.escape handles gets a backslash
    for char in set(text):
        if not char.isalnum() and char.isascii() and char not in " &<>\"'":
            assert f"\\{char}" in escaped, (char, escaped)


def test_spans_escape_markup_and_mark_the_highlighted_token(loaded):
    tokenizer = loaded.tokenizer
    ids = tokenizer.encode("**x** <b>", add_special_tokens=False)
    chips = spans(tokenizer, ids, highlight=1)
    assert [c[1] for c in chips] == [str(i) for i in ids]
    assert chips[0][0] == "**"  # as typed: no Markdown reads a chip
    assert chips[1][2] == "#000080" and chips[0][2] != "#000080"
    # st-annotated-text html-escapes the body: no tag survives
    assert "<b>" not in "".join(html.escape(c[0]) for c in chips)


def test_cached_chips_are_exactly_st_annotated_texts_markup(loaded, monkeypatch):
    from annotated_text.util import get_annotated_html

    from token_by_token import tokens
    tokenizer = loaded.tokenizer
    text = "**x** <b>&amp; <img src=x onerror=alert(1)> 日本"
    ids = tokenizer.encode(text, add_special_tokens=False)
    chips = spans(tokenizer, ids, highlight=2, generated_from=4)
    written = []
    monkeypatch.setattr(tokens.st, "html", lambda body, **kw: written.append((body, kw)))
    tokens.annotated(chips)
    tokens.annotated(chips)  # the second time from the cache: the same markup
    assert written[0] == written[1] == (get_annotated_html(*chips), {})
    assert "<b>" not in written[0][0] and "<img" not in written[0][0]


# --- charts: pure builders ------------------------------------------------------------------

NASTY = ["'", '"', "\\", "{", "}", "{{x}}", "<b>", "datum.x", "$x$", "␣"]


def test_heatmap_keeps_nasty_token_text_as_data():
    table = pd.DataFrame({
        "position": range(len(NASTY)), "input token": NASTY, "rank": [1] * len(NASTY),
        "predicted token": NASTY[::-1], "logit": [1.0] * len(NASTY),
        "probability": [0.5] * len(NASTY), "shade": [1.0] * len(NASTY),
    })
    spec = charts.logits_heatmap(table).to_dict()
    values = json.dumps(spec)
    for token in NASTY:
        assert json.dumps(token)[1:-1] in values
    assert spec["height"] == 28 * len(NASTY)


def test_heatmap_table_from_a_forward(loaded):
    ids = loaded.tokenizer.encode("a 'quoted' {brace} \\ text", add_special_tokens=False)
    from chapter1.logits import logits
    rows = logits(loaded.model, ids)
    table = heatmap_table(loaded.tokenizer, ids, Candidates.of(rows), rows=4, count=3)
    assert len(table) == 4 * 3
    assert table["position"].tolist() == [p for p in range(len(ids) - 4, len(ids))
                                          for _ in range(3)]
    assert (table.groupby("position")["shade"].max() == 1.0).all()  # normalised per row
    charts.logits_heatmap(table).to_json()
    full = charts.logits_heatmap(table, row_height=30).to_dict()
    fast = charts.fast_spec(charts.logits_heatmap, table, height=30 * 4)  # the page's path
    assert fast == {k: v for k, v in full.items() if k not in ("data", "datasets")}


def test_probability_bars_mark_the_sampled_token_even_outside_the_top(loaded):
    ids = loaded.tokenizer.encode("The fox", add_special_tokens=False)
    from chapter1.logits import logits
    last = logits(loaded.model, ids)[-1]
    probs = probabilities(last, warpers(2.0, 0, 1.0, 0.0))
    rare = int(last.argmin())
    table = bars_table(loaded.tokenizer, torch.softmax(last, dim=-1), probs, rare, count=5)
    assert table["token"].nunique() == 6
    label = f"{show(loaded.tokenizer, rare)}  ({rare})"
    assert table[table["sampled"]]["token"].tolist() == [label]
    assert table["token"].iloc[-1] == label  # appended after the top 5
    assert table["original"].iloc[:5].is_monotonic_decreasing
    charts.probability_bars(table).to_json()
    spec = charts.fast_spec(charts.probability_bars, table)  # the page's path: data apart
    full = charts.probability_bars(table).to_dict()
    assert spec == {k: v for k, v in full.items() if k not in ("data", "datasets")}


# --- precision: differences in the dtype's steps --------------------------------------------

def next_up(x: float, dtype: torch.dtype) -> float:
    """The next larger number of `dtype` after x (a positive number of that dtype), found by
    adding 1 to its bit pattern: independent of precision.spacing's arithmetic."""
    ints = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}
    t = torch.tensor([x], dtype=dtype)
    return float((t.view(ints[dtype]) + 1).view(dtype)[0])


@pytest.mark.parametrize("dtype, bits", [(torch.bfloat16, 8), (torch.float16, 11),
                                         (torch.float32, 24), (torch.float64, 53)])
def test_significant_bits(dtype, bits):
    assert precision.significant_bits(dtype) == bits


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_spacing_is_the_distance_to_the_next_number_of_the_dtype(dtype):
    generator = torch.Generator().manual_seed(0)
    values = torch.exp(torch.empty(300).uniform_(-9, 9, generator=generator)).to(dtype)
    values = [*values.tolist(), 1.0, 2.0, 16.0, 22.375, 0.5, 1024.0]
    if dtype == torch.float16:
        values = [v for v in values if v < 30000]
    for x in values:
        assert spacing(x, dtype) == next_up(x, dtype) - x, (x, dtype)
        assert spacing(-x, dtype) == spacing(x, dtype)


def test_spacing_in_bfloat16_is_two_to_the_exponent_minus_seven():
    assert spacing(22.4, torch.bfloat16) == 0.125  # 2^(4 − 7)
    assert spacing(16.0, torch.bfloat16) == 0.125
    assert spacing(15.99, torch.bfloat16) == 0.0625
    assert spacing(1.0, torch.float32) == 2.0 ** -23
    assert spacing(0.0, torch.bfloat16) == torch.finfo(torch.bfloat16).smallest_normal * 2 ** -7
    assert math.isnan(spacing(float("inf"), torch.bfloat16))


@pytest.mark.parametrize("value, scale, dtype, said", [
    (0.0625, 22.4, torch.bfloat16, "half a bfloat16 step at 22.4"),
    (0.0625, 10.6, torch.bfloat16, "1 bfloat16 step at 10.6"),
    (0.125, 10.1, torch.bfloat16, "2 bfloat16 steps at 10.1"),
    (0.09375, 12.44, torch.bfloat16, "1.5 bfloat16 steps at 12.4"),
    (0.03125, 22.4, torch.bfloat16, "a quarter of a bfloat16 step at 22.4"),
    (2.0 ** -23, 1.0, torch.float32, "1 float32 step at 1"),
    (1e-4, 20.0, torch.bfloat16, "0.0008 of a bfloat16 step at 20"),
    (0.0, 5.0, torch.bfloat16, "none: the same numbers"),
    (4096.0, 1.0, torch.bfloat16, "524,288 bfloat16 steps at 1"),
])
def test_a_difference_in_words(value, scale, dtype, said):
    assert in_steps(value, scale, dtype) == said


def test_the_same_difference_reads_differently_in_another_dtype():
    """The dtype is an argument: 0.0625 at 22.4 is half a step of bfloat16, many of float32."""
    assert in_steps(0.0625, 22.4, torch.bfloat16).startswith("half a bfloat16 step")
    assert in_steps(0.0625, 22.4, torch.float32) == "32,768 float32 steps at 22.4"


def test_difference_of_two_tensors():
    theirs = torch.tensor([22.375, -3.0, 10.0], dtype=torch.bfloat16)
    mine = torch.tensor([22.375, -3.0, 10.0625], dtype=torch.bfloat16)
    d = difference(mine, theirs, theirs.dtype)
    assert float(d) == 0.0625 and d.scale == 22.375 and d.dtype == torch.bfloat16
    assert d.step == 0.125 and d.steps == 0.5
    assert d.said() == "half a bfloat16 step at 22.4"
    assert d <= 0.0625 < 1  # it is the number
    # a float32 copy of bfloat16 results is judged in the dtype it was computed in
    assert difference(mine.float(), theirs.float(), torch.bfloat16).said() == d.said()
    same = difference(theirs, theirs, theirs.dtype)
    assert same == 0 and same.said() == "none: the same numbers"
    assert pickle.loads(pickle.dumps(d)).said() == d.said()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_difference_piece_by_piece_is_the_whole_tensors(dtype):
    """difference() reduces a large tensor in pieces (no whole-size temporary): the same
    numbers as over the whole tensors at once, NaN and infinities included, broadcast too."""
    def whole(mine, theirs):  # the formula, over the whole tensors at once
        theirs = theirs.float()
        return float((mine.float() - theirs).abs().max()), float(theirs.abs().max())

    torch.manual_seed(0)
    theirs = (torch.randn(5 * PIECE // 2) * 30).to(dtype)
    mine = (theirs.float() + torch.randn(len(theirs)) * 0.01).to(dtype)
    mine[-1] += 50  # the largest difference, in the last piece
    cases = [(mine, theirs), (mine.float(), theirs), (mine[::2], theirs[1::2])]
    inf = theirs.clone()
    inf[PIECE + 3] = -float("inf")  # an infinity in both: inf - inf is NaN
    cases.append((inf.clone(), inf))
    nan = mine.clone()
    nan[2 * PIECE] = float("nan")
    cases.append((nan, theirs))
    cases.append((theirs[:PIECE].reshape(2, -1)[:1], theirs[:PIECE].reshape(2, -1)))
    for m, t in cases:
        d = difference(m, t, dtype)
        expected = whole(m, t)
        assert (float(d), d.scale) == pytest.approx(expected, nan_ok=True), (m.shape, t.shape)
        assert math.isnan(float(d)) == math.isnan(expected[0])
    assert math.isnan(float(difference(nan, theirs, dtype)))
    assert difference(theirs[:0], theirs[:0], dtype) == 0


def test_why_says_the_bits_and_the_spacing():
    sentence = precision.why(torch.bfloat16, 22.4)
    assert sentence.startswith("bfloat16 keeps 8 significant bits (about 2.4 decimal digits), "
                               "so near 22.4 its numbers are 0.125 apart")
    assert "float32 keeps 24 significant bits (about 7.2 decimal digits)" in \
        precision.why(torch.float32, 1.0)
    assert isinstance(Difference(0.5, 1.0, torch.float32), float)


# --- model: loading, errors, the pocket fallback --------------------------------------------

def test_the_model_is_set_aside_from_the_collector_and_later_garbage_is_still_collected(loaded):
    """Streamlit collects garbage after every script run: the model and the modules, alive as
    long as the process, are frozen out of those collections once the model is loaded (a
    full walk of them took 0.25 s per slider move); cycles made later are still collected."""
    tracked = {id(o) for o in gc.get_objects()}
    assert id(loaded.model) not in tracked
    assert not any(id(m) in tracked for m in loaded.model.modules())

    class Node:
        pass
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    gc.collect(2)
    assert gone() is None


def test_the_modules_are_set_aside_when_the_engine_is_imported_before_any_model_loads():
    """The modules imported before token_by_token.model (streamlit, torch, transformers) are
    frozen out of the collector at its import, so that the automatic full collections while a
    model's code is imported and the first page is drawn don't walk them again."""
    code = ("import gc, torch, token_by_token.model\n"
            "tracked = {id(o) for o in gc.get_objects()}\n"
            "print(gc.get_freeze_count() > 0, id(vars(torch.nn.functional)) in tracked)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent.parent).stdout.split()
    assert out == ["True", "False"]


def test_tiny_model_loads_in_the_tests_dtype_in_eval_mode_with_its_facts(loaded, tiny_dir):
    from conftest import DTYPE
    assert loaded.model.dtype == getattr(torch, DTYPE)
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.eos_ids == {loaded.tokenizer.convert_tokens_to_ids(t)
                              for t in ("<|im_end|>", "<|endoftext|>")}
    assert loaded.max_tokens == 1024
    assert model._load(str(tiny_dir)) is loaded  # loaded once per process


def test_model_id_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("TOKEN_BY_TOKEN_MODEL")
    assert model.model_id() == "Qwen/Qwen3-0.6B"
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "some/model")
    assert model.model_id() == "some/model"


def error_of(at) -> str:
    assert not at.exception, [e.value for e in at.exception]
    assert at.error, "expected an error message in the page"
    return at.error[0].value


def test_a_chosen_hub_model_offline_says_what_to_do_quickly(monkeypatch, tmp_path):
    """A model the learner chose explicitly is not replaced by the pocket model."""
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "Qwen/Qwen3-1.7B")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    start = time.perf_counter()
    at = run_app()
    took = time.perf_counter() - start
    message = error_of(at)
    assert "not in the local Hugging Face cache" in message
    assert "Connect to the internet once" in message and "TOKEN_BY_TOKEN_MODEL" in message
    assert took < 10, took  # no long retries when the hub is unreachable


def test_not_a_directory_nor_an_id(monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "/no/such/directory")
    assert "neither a local directory nor a Hugging Face model id" in error_of(run_app())


@pytest.mark.parametrize("damage", ["missing weights", "corrupt weights", "missing tokenizer"])
def test_a_damaged_model_directory_is_explained(damage, tiny_dir, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    if damage == "missing weights":
        (broken / "model.safetensors").unlink()
    elif damage == "corrupt weights":
        (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    else:
        (broken / "tokenizer.json").unlink()
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(broken))
    message = error_of(run_app())
    assert f"The model in `{broken}` could not be loaded" in message
    assert "model.safetensors" in message


# --- capture: what a forward's modules receive and return -----------------------------------

def hook_counts(model):
    return {name: len(module._forward_hooks) for name, module in model.named_modules()}


def test_capture_records_and_removes_its_hooks(peaked_dir):
    model = load(peaked_dir, torch.bfloat16)
    implementation = model.config._attn_implementation
    logits_of(model, IDS)
    model(torch.tensor([IDS[:2]]), output_hidden_states=True)  # the library's own hooks
    before = hook_counts(model)
    with capture({"norm": model.model.norm, "layer": model.model.layers[0]}) as seen:
        assert hook_counts(model) != before
        expected = logits_of(model, IDS)
        logits_of(model, IDS[:5])
    assert hook_counts(model) == before
    assert [call.x.shape[1] for call in seen["norm"]] == [len(IDS), 5]
    assert seen.input("layer", 0).shape == (1, len(IDS), model.config.hidden_size)
    assert model.config._attn_implementation == implementation
    logits_of(model, IDS)  # runs after the block: not recorded
    assert len(seen["norm"]) == 2
    output, seen = forward_capturing(model, IDS, [model.lm_head])
    assert torch.equal(output.logits[0].float(), expected)
    assert torch.equal(seen.output("0")[0].float(), expected)
    assert hook_counts(model) == before


def test_capture_removes_its_hooks_when_the_forward_raises(peaked_dir):
    model = load(peaked_dir, torch.bfloat16)
    before = hook_counts(model)
    vocab = model.config.vocab_size
    with pytest.raises(IndexError), capture([model.model.norm], lock=True):
        assert FORWARD_LOCK.locked()
        logits_of(model, [vocab + 5])  # an id outside the table
    assert hook_counts(model) == before
    assert not FORWARD_LOCK.locked()
    assert model.config._attn_implementation == "sdpa"


def test_capture_ignores_forwards_of_other_threads(peaked_dir):
    model = load(peaked_dir, torch.bfloat16)
    with capture([model.model.norm]) as seen:
        other = threading.Thread(target=logits_of, args=(model, IDS))
        other.start()
        other.join()
        assert seen["0"] == []
        logits_of(model, IDS[:3])
    assert len(seen["0"]) == 1


def test_nested_captures_both_record(peaked_dir):
    model = load(peaked_dir, torch.bfloat16)
    with capture([model.model.norm]) as outer, capture([model.lm_head]) as inner:
        logits_of(model, IDS)
    assert len(outer["0"]) == len(inner["0"]) == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_counts_of_finite_and_non_zero_values_match_torch(dtype):
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-40, -3.5,
                            torch.finfo(dtype).max, torch.finfo(dtype).tiny,
                            torch.finfo(dtype).tiny / 4])
    values = torch.cat([special, torch.randn(997) * 10 ** torch.randint(-40, 38, (997,))])
    flat = values.to(dtype)[torch.randperm(len(values))]
    assert counts(flat) == (int(torch.isfinite(flat).sum()), int(torch.count_nonzero(flat)))
    assert counts(flat[::3]) == (int(torch.isfinite(flat[::3]).sum()),
                                 int(torch.count_nonzero(flat[::3])))  # a strided view
    large = torch.cat([flat[i % len(flat)][None].expand(PIECE) for i in range(3)] + [flat])
    assert counts(large) == (int(torch.isfinite(large).sum()), int(torch.count_nonzero(large)))
