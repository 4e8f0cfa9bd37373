"""AppTest: Chapter 1 is exact and instant. Sliders, seed and Resample never run the model;
each Generate click appends one id and runs one forward on that id alone."""

import pytest
import torch
from helpers import (
    expected_next_id,
    forward_of,
    generated_ids,
    run_app,
    shown_next_id,
)

from chapter1.filters import probabilities, warpers
from chapter1.sampling import random_stream, sample
from chapter1.tokenizer import tokenize
from token_by_token.state import SLIDERS


def test_chapter_renders_every_section(loaded):
    at = run_app()
    headers = [h.value for h in at.header]
    for title in ["1. Tokenizer", "2. Logits", "3. Filters", "4. Sampling", "5. Autoregression",
                  "Conclusion"]:
        assert any(h.startswith(title) for h in headers), (title, headers)
    assert any(c.value.startswith("def generate(") for c in at.code)
    assert any("logits.shape = torch.Size([" in c.value for c in at.code)


@pytest.mark.parametrize("action", ["temperature", "top_k", "top_p", "min_p", "seed",
                                    "resample", "reset"])
def test_controls_run_no_forward(loaded, forwards, action):
    at = run_app()
    forwards.clear()
    sidebar = at.sidebar
    if action == "seed":
        sidebar.number_input(key="seed").set_value(7).run()
    elif action == "resample":
        sidebar.button(key="resample").click().run()
    elif action == "reset":
        sidebar.slider(key="temperature").set_value(1.5).run()
        next(b for b in sidebar.button if b.label.startswith("Reset")).click().run()
        assert at.session_state["temperature"] == 0.7
    else:
        for value in (SLIDERS[action].low, SLIDERS[action].high):
            sidebar.slider(key=action).set_value(value).run()
            assert not at.exception
    assert not at.exception
    assert forwards == []
    assert shown_next_id(at) == expected_next_id(loaded, at)  # the page's sample is current


def test_resample_changes_the_sample_on_the_same_click(loaded):
    at = run_app(temperature=2.0, top_k=0, top_p=1.0)
    seen = {shown_next_id(at)}
    for draw in range(1, 6):
        at.sidebar.button(key="resample").click().run()
        assert at.session_state["resamples"] == draw
        assert shown_next_id(at) == expected_next_id(loaded, at)
        seen.add(shown_next_id(at))
    assert len(seen) > 1


def test_the_sample_follows_the_filters(loaded):
    at = run_app()
    at.sidebar.slider(key="top_k").set_value(1).run()
    ids = tokenize(loaded.tokenizer, at.session_state["text"])
    from chapter1.logits import logits
    last = logits(loaded.model, ids)[-1]
    allowed = set(torch.nonzero(probabilities(last, warpers(0.7, 1, 0.8, 0.0))).flatten()
                  .tolist())
    for _ in range(3):
        assert shown_next_id(at) in allowed
        at.sidebar.button(key="resample").click().run()


def test_generate_appears_only_in_autoregressive_mode():
    at = run_app()
    assert not any(b.key == "generate" for b in at.sidebar.button)
    at.sidebar.toggle(key="autoregressive").set_value(True).run()
    assert any(b.key == "generate" for b in at.sidebar.button)
    assert at.sidebar.text_area(key="text").disabled


def test_twenty_generate_clicks_append_one_id_each_with_one_token_forwards(loaded, forwards):
    at = run_app(autoregressive=True, temperature=1.0, top_k=0, top_p=1.0)
    forwards.clear()
    before = []
    for _ in range(20):
        expected = shown_next_id(at)
        at.sidebar.button(key="generate").click().run()
        assert not at.exception
        now = generated_ids(at)
        assert now == before + [expected]  # exactly one id, the one shown; earlier unchanged
        before = now
        if at.session_state["generated"][-1] in loaded.eos_ids:
            break
    # one forward per click, each on the new id alone
    assert forwards == [[token_id] for token_id in before]
    text_ids = tokenize(loaded.tokenizer, at.session_state["text"])
    assert forward_of(at).ids == tuple(text_ids + before)


def test_end_of_text_stops_generation(loaded):
    eos = min(loaded.eos_ids)
    at = run_app(autoregressive=True, generated=[eos])
    assert any("end-of-text token" in s.value for s in at.success)
    assert at.sidebar.button(key="generate").disabled
    assert generated_ids(at) == [eos]


def test_the_context_cap_stops_generation_with_a_message(loaded):
    text = " ".join(["word"] * 1100)  # more tokens than the 1,024 cap
    at = run_app(text=text, autoregressive=True)
    assert any("keeps the first 1,024" in w.value for w in at.warning)
    assert any("context cap" in w.value for w in at.warning)
    assert at.sidebar.button(key="generate").disabled


def test_toggle_off_hands_back_the_text_and_compares_ids(loaded):
    at = run_app(autoregressive=True, temperature=1.0, top_k=0, top_p=1.0)
    for _ in range(5):
        at.sidebar.button(key="generate").click().run()
    ids = tokenize(loaded.tokenizer, at.session_state["text"]) + generated_ids(at)
    at.sidebar.toggle(key="autoregressive").set_value(False).run()
    assert not at.exception
    # the text box gets the text of the ids; bytes that are not whole characters can't be
    # held by a text box: decode() writes them as U+FFFD, the page leaves them out
    assert at.session_state["text"] == loaded.tokenizer.decode(ids).replace("\ufffd", "")
    assert generated_ids(at) == []
    assert list(at.session_state["previous_ids"]) == ids
    retokenized = tokenize(loaded.tokenizer, at.session_state["text"])
    if retokenized == ids:
        assert any("gives back exactly the generated ids" in m.value for m in at.markdown)
    else:
        assert any("different ids" in w.value for w in at.warning)


def test_retokenizing_can_change_the_ids_and_the_page_says_so(loaded):
    # " the" generated as two ids (space, then "the") re-tokenizes as one id
    text_ids = tokenize(loaded.tokenizer, "over")
    split = tokenize(loaded.tokenizer, " ") + tokenize(loaded.tokenizer, "the")
    assert tokenize(loaded.tokenizer, "over the") != text_ids + split
    at = run_app(text="over", autoregressive=True, generated=split)
    at.sidebar.toggle(key="autoregressive").set_value(False).run()
    assert at.session_state["text"] == "over the"
    [warning] = [w.value for w in at.warning if "different ids" in w.value]
    assert "more than one way" in warning and "byte" not in warning and "no token" not in warning


@pytest.mark.parametrize("text", ["say \"hi\" it's {x} \\n {{ }} \\\\ '", "}{\"'\\"])
def test_tokens_with_quotes_braces_and_backslashes_chart_fine(text):
    at = run_app(text=text)
    assert not at.exception


def test_sections_4_and_5_repeat_only_the_tail_of_a_long_sequence(loaded):
    from token_by_token.tokens import TAIL
    text = "one two three four five six seven eight nine ten " * 20
    n = len(loaded.tokenizer.encode(text, add_special_tokens=False))
    assert n + 1 > TAIL
    at = run_app(text=text)
    chips = [m.value for m in at.markdown if m.value.startswith("<span><span")]
    sizes = [chip.count("display:inline-flex") for chip in chips]
    assert sizes == [n, TAIL, TAIL]  # Section 1: every token; 4 and 5: the last 64 (+ next)
    notes = [c.value for c in at.caption if "earlier tokens" in c.value]
    assert notes == [f"… {n + 1 - TAIL:,} earlier tokens, then the last {TAIL}:"] * 2


def test_overlapping_generate_callbacks_append_the_chain_in_order(loaded):
    """Streamlit can run a second click's callback while the first is still running: each
    must sample from the sequence the one before made, not both from the same one."""
    import threading

    from chapter1.pipeline import append_next
    from token_by_token.memo import Memo
    from token_by_token.state import DEFAULTS
    state = {**DEFAULTS, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "generated": [],
             "_memo": Memo()}
    expected = []
    for _ in range(4):
        ids = tokenize(loaded.tokenizer, state["text"]) + expected
        from chapter1.logits import logits
        probs = probabilities(logits(loaded.model, ids)[-1], warpers(1.0, 0, 1.0, 0.0))
        expected.append(sample(probs, random_stream(state["seed"], len(ids), 0)))
    assert len(set(expected)) > 1  # a chain where appending the same id twice would show
    threads = [threading.Thread(target=append_next, args=(loaded, state)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["generated"] == expected
