"""The catalogue of hostile inputs and actions: whatever a learner types or clicks, the page
keeps working, shows their text literally, and keeps their ids and choices."""


import pytest
import torch
from helpers import (
    CHAPTER1,
    CHAPTER2,
    MAIN,
    README,
    chip_bodies,
    chips_blocks,
    code_starting,
    expected_next_id,
    forward_of,
    generated_ids,
    page_text,
    run_app,
    shown_next_id,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chapter1.filters import probabilities, warpers
from chapter1.logits import logits
from chapter1.tokenizer import tokenize
from token_by_token import charts
from token_by_token.tokens import chip_html, show_ids, spans

EMOJI = "👨‍👩‍👧‍👦👍🏽🏳️‍🌈👩🏿‍💻🤷‍♀️" * 40  # 200 emoji with ZWJ families and skin tones
TEXTS = {
    "empty": "",
    "only whitespace": "   \n\n\t  \n",
    "one character": "a",
    "10,000 characters": "All work and no play makes Jack a dull boy. " * 228,
    "3,000 newlines": "\n" * 3000,
    "200 emoji": EMOJI,
    "combining marks": "e\u0301" * 30 + " Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǫ̗",
    "right-to-left and bidi controls": "שלום עולם \u202eevil\u202c مرحبا \u2067x\u2069",
    "CJK": "日本語のテキストと中文文本和한국어",
    "control characters": "a\x00b\x1bc\rd\x07e\x7f",
    "pieces of UTF-8 characters": "ℝ𝔸ℕ𝔻𝕆𝕄 ∑ ≠ ∞",
    "special tokens spelled": "Hi<|endoftext|><|im_start|>user\nhello<|im_end|>",
}


@pytest.mark.parametrize("name", list(TEXTS))
def test_any_text_renders_and_keeps_the_learners_text(loaded, name):
    text = TEXTS[name]
    at = run_app(text=text)
    assert at.sidebar.text_area(key="text").value == text  # nothing the learner typed is lost
    ids = tokenize(loaded.tokenizer, text)
    shown = code_starting(at, "tokens = ")
    assert shown.startswith(f"tokens = {ids[: loaded.max_tokens]}")
    assert "\ufffd" not in page_text(at)
    if not ids:
        assert any("Type some text" in i.value for i in at.info)
        assert not any(h.value.startswith("2.") for h in at.header)
    else:
        assert shown_next_id(at) == expected_next_id(loaded, at)


def test_ten_thousand_characters_are_capped_with_a_message(loaded):
    text = TEXTS["10,000 characters"]
    total = len(tokenize(loaded.tokenizer, text))
    at = run_app(text=text)
    cut = total - loaded.max_tokens
    assert cut > 0
    assert any(f"{total:,} tokens long" in w.value and f"last {cut:,}" in w.value
               for w in at.warning)
    assert forward_of(at).ids == tuple(tokenize(loaded.tokenizer, text)[:1024])


MARKUP = ["**bold**", "_x_", "$x^2$", ":red[x]", "[a](javascript:alert(1))", "<b>",
          "<img src=x onerror=alert(1)>", "<script>alert(1)</script>", "`tick`", "{{ x }}",
          "%s", "\\\\", "\"q\" 'q'"]


@pytest.mark.parametrize("markup", MARKUP)
def test_markup_never_reaches_the_page_unescaped(loaded, markup):
    text = f"see {markup} here"
    at = run_app(text=text, temperature=2.0, top_k=0, top_p=1.0)
    section1 = "".join(chip_bodies(chips_blocks(at)[0]))  # every token of the text, in order
    ids = tokenize(loaded.tokenizer, text)
    assert section1 == "".join(show_ids(loaded.tokenizer, ids))  # whatever the token cuts
    assert markup.replace(" ", "␣") in section1  # every mark there, as typed
    rendered = page_text(at)
    for construct in ["**bold**", "$x^2$", ":red[x]", "](javascript", "<b>", "<img", "<script",
                      "`tick`"]:
        assert construct not in rendered, construct  # nowhere else whole either


def test_special_token_policy_is_consistent_and_explained(loaded):
    text = TEXTS["special tokens spelled"]
    at = run_app(text=text)
    ids = tokenize(loaded.tokenizer, text)
    specials = {loaded.tokenizer.convert_tokens_to_ids(t)
                for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")}
    assert specials <= set(ids)  # typed special tokens become special ids, everywhere
    assert forward_of(at).ids == tuple(ids)
    assert any("Your text contains special tokens" in i.value for i in at.info)
    assert any("one special token" in m.value for m in at.markdown)


def test_all_filters_at_their_strictest_leave_the_favourite(loaded):
    at = run_app(temperature=0.05, top_k=1, top_p=0.0, min_p=1.0)
    ids = tokenize(loaded.tokenizer, at.session_state["text"])
    last = logits(loaded.model, ids)[-1]
    favourites = set(torch.nonzero(last == last.max()).flatten().tolist())
    assert shown_next_id(at) in favourites
    table = next(d.value for d in at.table if "tokens left" in d.value.columns)
    assert table["tokens left"].iloc[-1] == len(favourites)
    probs = probabilities(last, warpers(0.05, 1, 0.0, 1.0))
    assert not probs.isnan().any()


def test_changing_sliders_mid_generation_samples_from_the_new_distribution(loaded):
    at = run_app(autoregressive=True, temperature=1.0, top_k=0, top_p=1.0)
    for _ in range(3):
        at.sidebar.button(key="generate").click().run()
    before = generated_ids(at)
    at.sidebar.slider(key="top_k").set_value(1).run()
    assert generated_ids(at) == before  # sliders never touch the ids
    assert shown_next_id(at) == expected_next_id(loaded, at)
    expected = shown_next_id(at)
    at.sidebar.button(key="generate").click().run()
    assert generated_ids(at) == before + [expected]
    ids = tokenize(loaded.tokenizer, at.session_state["text"]) + before
    last = logits(loaded.model, ids)[-1]
    assert last[generated_ids(at)[-1]] == last.max()  # top_k=1 picked a favourite


def test_toggling_off_editing_and_on_again_starts_from_the_new_text(loaded):
    at = run_app(autoregressive=True)
    for _ in range(3):
        at.sidebar.button(key="generate").click().run()
    at.sidebar.toggle(key="autoregressive").set_value(False).run()
    at.sidebar.text_area(key="text").input("A new beginning").run()
    assert generated_ids(at) == [] and list(at.session_state["previous_ids"]) == []
    at.sidebar.toggle(key="autoregressive").set_value(True).run()
    expected = shown_next_id(at)
    at.sidebar.button(key="generate").click().run()
    assert generated_ids(at) == [expected]
    assert forward_of(at).ids == tuple(tokenize(loaded.tokenizer, "A new beginning") + [expected])


def test_every_choice_survives_switching_pages():
    at = run_app(autoregressive=True)
    at.sidebar.slider(key="temperature").set_value(1.3).run()
    at.sidebar.slider(key="top_k").set_value(7).run()
    at.sidebar.number_input(key="seed").set_value(99).run()
    at.sidebar.button(key="resample").click().run()
    at.sidebar.button(key="generate").click().run()
    before = {k: at.session_state[k] for k in
              ["text", "temperature", "top_k", "top_p", "min_p", "seed", "resamples",
               "autoregressive"]}
    generated = generated_ids(at)
    for page in [CHAPTER2, README, CHAPTER1]:
        at.switch_page(page).run()
        assert not at.exception
    assert {k: at.session_state[k] for k in before} == before
    assert generated_ids(at) == generated
    assert at.sidebar.slider(key="top_k").value == 7


def test_two_learners_never_share_state_and_the_model_is_never_mutated(loaded):
    weights = {name: p.clone() for name, p in loaded.model.state_dict().items()}
    vocab = len(loaded.tokenizer)
    a = run_app(text="Learner A writes this", autoregressive=True)
    b = run_app(text="Learner B writes something else", seed=5)
    for _ in range(4):
        a.sidebar.button(key="generate").click().run()
    b.sidebar.slider(key="temperature").set_value(1.9).run()
    b.sidebar.button(key="resample").click().run()
    a.run()
    b.run()
    assert b.session_state["text"] == "Learner B writes something else"
    assert generated_ids(b) == [] and len(generated_ids(a)) == 4
    assert a.session_state["temperature"] == 0.7 and a.session_state["resamples"] == 0
    assert forward_of(a) is not forward_of(b)
    assert forward_of(a).ids[: 4] != forward_of(b).ids[: 4]
    assert shown_next_id(b) == expected_next_id(loaded, b)
    assert all(torch.equal(weights[n], p) for n, p in loaded.model.state_dict().items())
    assert len(loaded.tokenizer) == vocab


@pytest.mark.parametrize("query, expected", [
    ("temperature=nan&top_k=-5&top_p=7&seed=abc", {"temperature": 0.7, "top_k": 0,
                                                     "top_p": 1.0, "seed": 42}),
    ("temperature=1e999&min_p=0.5&text=%2A%2Ahi%2A%2A", {"temperature": 0.7, "min_p": 0.5,
                                                         "text": "**hi**"}),
])
def test_a_share_link_is_read_safely(query, expected):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(MAIN, default_timeout=60)
    for pair in query.split("&"):
        key, value = pair.split("=")
        from urllib.parse import unquote
        at.query_params[key] = unquote(value)
    at.run()
    assert not at.exception
    for key, value in expected.items():
        assert at.session_state[key] == value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60))
def test_any_unicode_tokenizes_displays_and_charts(loaded, text):
    tokenizer = loaded.tokenizer
    ids = tokenize(tokenizer, text)
    shown = show_ids(tokenizer, ids)
    assert all("\ufffd" not in s for s in shown)
    for chip, plain in zip(spans(tokenizer, ids), shown, strict=True):
        assert chip[1].isdigit() and chip[0] == plain
        # the chip's HTML shows the token as text: no character of it became markup
        assert chip_bodies("<span>" + chip_html(*chip) + "</span>") == [plain]
    if ids:
        import pandas as pd
        table = pd.DataFrame({"position": range(len(ids)), "input token": shown,
                              "rank": 1, "predicted token": shown[::-1], "logit": 0.0,
                              "probability": 0.5, "shade": 1.0})
        charts.logits_heatmap(table).to_json()
