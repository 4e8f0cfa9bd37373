"""Chapter 1's page (AppTest): every section follows the learner's choices, Generate and
Play, branches, chat mode, the uncertainty timeline, the vocabulary, the proof against
generate(); the model runs only when the ids change."""

import copy
import math
import time
from dataclasses import replace
from urllib.parse import quote

import pytest
import tiny_model
import torch
from helpers import (
    CHAPTER1,
    CHAPTER2,
    MAIN,
    chip_bodies,
    chips_blocks,
    code_starting,
    counting_forwards,
    expected_next_id,
    forward_of,
    generated_ids,
    page_text,
    run_app,
    shown_next_id,
)
from streamlit.testing.v1 import AppTest
from transformers.convert_slow_tokenizer import bytes_to_unicode

import chapter1.pipeline as pipeline
from chapter1 import ahead, proof
from chapter1.filters import probabilities, warpers
from chapter1.logits import logits
from chapter1.pipeline import VIEW
from chapter1.sampling import DRAWS, entropy, many_draws, random_stream, sample, total_variation
from chapter1.tokenizer import tokenize
from token_by_token.locks import FORWARD_LOCK
from token_by_token.memo import Memo
from token_by_token.state import DEFAULT_TEXT, LINK_LIMIT, SLIDERS
from token_by_token.tokens import show_ids

# --- the page and the model -----------------------------------------------------------------

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
    # one forward per id, on the new id alone: the first click's while the learner waited,
    # each later one taken ahead, while the page before it was read (chapter1/ahead.py); and
    # the step for the id the page now shows, unless the text ended
    ended = before[-1] in loaded.eos_ids
    stepped = before + ([] if ended else [shown_next_id(at)])
    assert forwards == [[token_id] for token_id in stepped]
    assert forwards.waited == [[before[0]]] and forwards.ahead == forwards[1:]
    text_ids = tokenize(loaded.tokenizer, at.session_state["text"])
    assert forward_of(at).ids == tuple(text_ids + before)


def test_the_next_step_is_taken_while_the_learner_reads(loaded, forwards):
    at = run_app(autoregressive=True, **WIDE)
    at.sidebar.button(key="generate").click().run()
    first = forward_of(at)
    assert not first.ahead and forwards.ahead == [[shown_next_id(at)]]
    assert first.cache.get_seq_length() == len(first.ids)  # stepped on a copy, not on it
    # the step the page took for the id it shows is the step a click would run, on a cache
    # of its own
    job = at.session_state["_memo"].latest(ahead.JOB)
    assert job.ids == (*first.ids, shown_next_id(at))
    with FORWARD_LOCK:
        own = pipeline.one_step(loaded.model, replace(first, cache=copy.deepcopy(first.cache)),
                                shown_next_id(at), loaded.eos_ids)
    assert torch.equal(own.last, job.forward.last)
    assert first.cache.get_seq_length() == len(first.ids)
    forwards.clear()
    at.sidebar.button(key="generate").click().run()
    assert forwards.waited == []  # the click ran no forward: it took the step made ahead
    assert forward_of(at) is job.forward  # the very step made ahead
    assert forward_of(at).ahead and any("while you read the page before" in c.value
                                        for c in at.caption)


def test_a_slider_that_changes_the_next_id_drops_the_step_taken_ahead(loaded, forwards):
    at = run_app(autoregressive=True, **WIDE)
    at.sidebar.button(key="generate").click().run()
    taken = shown_next_id(at)
    forwards.clear()
    for top_k in range(1, 50):  # a filter under which the page samples another id
        at.sidebar.slider(key="top_k").set_value(top_k).run()
        if shown_next_id(at) != taken:
            break
    assert shown_next_id(at) != taken and forwards == []  # sliders never run the model
    now = shown_next_id(at)
    at.sidebar.button(key="generate").click().run()
    assert generated_ids(at)[-1] == now
    assert forwards.waited == [[now]] and not forward_of(at).ahead  # its own step
    assert forwards.ahead == [[shown_next_id(at)]]  # and the next one, taken ahead


def test_a_click_before_the_step_ahead_begins_runs_its_own(loaded, monkeypatch):
    """The orders a served page can take (AppTest waits for every step taken ahead)."""
    memo, made = Memo(), []

    def make():
        made.append(1)
        return pipeline.Forward((1, 2), None, None, None, None, None, 1)

    def launched():
        ahead.want(memo, (1,))
        if ahead.wanted(memo, (1,)):
            ahead.launch(memo, (1, 2), make)

    with FORWARD_LOCK:  # another learner's forward is running
        launched()
        assert not ahead.wanted(memo, (1,))  # asked once per step, whatever reruns
        assert ahead.take(memo, (1, 2), time.perf_counter()) is None  # the click came first
    ahead.settled()
    assert made == []  # and the job never ran
    launched()
    ahead.settled()
    with FORWARD_LOCK:
        assert ahead.take(memo, (1, 3), time.perf_counter()) is None  # another id: dropped
    assert made == [1]
    launched()
    ahead.settled()
    with FORWARD_LOCK:
        taken = ahead.take(memo, (1, 2), time.perf_counter())
    assert taken.ahead and taken.ids == (1, 2) and made == [1, 1]
    with FORWARD_LOCK:
        assert ahead.take(memo, (1, 2), time.perf_counter()) is None  # taken once
    asked = time.perf_counter()  # a click that came while the step was still running
    launched()
    ahead.settled()
    with FORWARD_LOCK:
        waited = ahead.take(memo, (1, 2), asked)
    assert waited.ids == (1, 2) and not waited.ahead  # not said to be taken while reading
    launched()
    memo.for_model("another model")  # the memo reset before the job began: it never runs
    ahead.settled()
    assert made == [1, 1, 1]
    monkeypatch.setattr(ahead, "READING", 1.0)
    launched()  # a click while the reader's pause runs
    with FORWARD_LOCK:
        assert ahead.take(memo, (1, 2), time.perf_counter()) is None
    ahead.settled()
    assert made == [1, 1, 1]  # dropped: it never ran


def test_a_step_taken_ahead_is_let_go_when_its_id_or_the_chapter_changes(loaded):
    at = run_app(autoregressive=True, **WIDE)
    at.sidebar.button(key="generate").click().run()
    memo = at.session_state["_memo"]
    assert ahead.taken_ahead(memo) == (*forward_of(at).ids, shown_next_id(at))
    at.switch_page(CHAPTER2).run()
    assert ahead.taken_ahead(memo) is None  # its KV cache is not kept into Chapter 2's peak
    at.switch_page(CHAPTER1).run()
    assert ahead.taken_ahead(memo) is None  # and not made again: no step drew this page
    at.sidebar.button(key="generate").click().run()
    taken = shown_next_id(at)
    for top_k in range(1, 50):
        at.sidebar.slider(key="top_k").set_value(top_k).run()
        if shown_next_id(at) != taken:
            break
    assert ahead.taken_ahead(memo) is None  # the slider changed the id: let go at once


def test_the_opening_texts_forward_runs_once_and_each_learner_steps_on_a_copy(loaded, forwards):
    pipeline.OPENINGS.pop(loaded.model, None)  # as if the model had just been loaded
    first = run_app(autoregressive=True)
    text_ids = tokenize(loaded.tokenizer, DEFAULT_TEXT)
    assert forwards == [text_ids]
    second = run_app(autoregressive=True)
    assert forwards == [text_ids]  # the second learner's page ran no forward
    mine, theirs = forward_of(second), forward_of(first)
    assert mine.shared and not theirs.shared and mine.cache is not theirs.cache
    assert torch.equal(mine.last, theirs.last)
    assert any("ran once in this server" in c.value for c in second.caption)
    second.sidebar.button(key="generate").click().run()  # steps on its own copy only
    assert len(forwards.waited) == 2 and not forward_of(second).shared
    assert len(forwards.ahead) == 1  # and the next step, on a copy of its copy
    assert theirs.cache.get_seq_length() == len(text_ids)
    third = run_app()
    assert forward_of(third).cache.get_seq_length() == len(text_ids)
    assert torch.equal(forward_of(third).last, theirs.last) and len(forwards) == 3
    for _ in range(2):  # a learner's own text is never shared
        run_app(text="words of my own")
    assert len(forwards) == 5
    pipeline.OPENINGS.pop(loaded.model)
    back = run_app(text=DEFAULT_TEXT + " dog")
    back.text_area(key="text").set_value(DEFAULT_TEXT).run()  # its cache cut back, not shared
    assert forward_of(back).reused and loaded.model not in pipeline.OPENINGS


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
    chips = chips_blocks(at)
    sizes = [chip.count("display:inline-flex") for chip in chips]
    assert sizes == [n, TAIL, TAIL]  # Section 1: every token; 4 and 5: the last 64 (+ next)
    notes = [c.value for c in at.caption if "earlier tokens" in c.value]
    assert notes == [f"… {n + 1 - TAIL:,} earlier tokens, then the last {TAIL}:"] * 2
    ids = forward_of(at).ids  # Section 4's code: the list's ends, not every id
    appended = code_starting(at, "next_id = ")
    assert f"# ids: [{ids[0]}, {ids[1]}, {ids[2]}, …, {ids[-1]}, {shown_next_id(at)}] " \
           f"({n + 1:,} ids)" in appended
    assert "ids = [" not in appended
    short = run_app(text="one two three")
    ids = forward_of(short).ids
    assert f"ids = {[*ids, shown_next_id(short)]}" in code_starting(short, "next_id = ")


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


# --- Play, downloads, branches --------------------------------------------------------------

WIDE = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}  # draws far from greedy


def test_play_generates_that_many_ids_one_token_forward_each(loaded, forwards):
    at = run_app(autoregressive=True, play_tokens=7, **WIDE)
    forwards.clear()
    at.sidebar.button(key="play").click().run()
    played = generated_ids(at)
    ends = played and played[-1] in loaded.eos_ids
    assert len(played) == 7 or (ends and len(played) < 7)
    # one [1, 1] step per token, then the next one taken ahead once the page is drawn
    assert forwards.waited == [[token_id] for token_id in played]
    assert forwards.ahead == ([] if ends else [[shown_next_id(at)]])
    assert f"**{len(played)} generated so far**" in " ".join(m.value for m in at.markdown)
    # the same as stepping with Generate next token, under the same seed
    stepped = run_app(autoregressive=True, **WIDE)
    for _ in played:
        stepped.sidebar.button(key="generate").click().run()
    assert generated_ids(stepped) == played
    at.sidebar.button(key="play").click().run()  # Play again: goes on from there
    assert generated_ids(at)[: len(played)] == played and len(generated_ids(at)) > len(played)


def test_play_stops_at_the_context_cap(loaded):
    words = 1
    while len(tokenize(loaded.tokenizer, " ".join(["word"] * (words + 1)))) \
            <= loaded.max_tokens - 3:
        words += 1
    text = " ".join(["word"] * words)
    room = loaded.max_tokens - len(tokenize(loaded.tokenizer, text))
    assert 0 < room <= 5
    at = run_app(text=text, autoregressive=True, play_tokens=20)
    at.sidebar.button(key="play").click().run()
    assert len(generated_ids(at)) == room
    assert any("context cap" in w.value for w in at.warning)
    assert at.sidebar.button(key="play").disabled


def test_play_stops_at_end_of_text(loaded, monkeypatch):
    eos, real = min(loaded.eos_ids), pipeline.append_next

    def third_is_eos(loaded, state):  # the model "chooses" end-of-text on the third token
        if len(state["generated"]) == 2:
            state["generated"].append(eos)
        else:
            real(loaded, state)

    monkeypatch.setattr(pipeline, "append_next", third_is_eos)
    at = run_app(autoregressive=True, play_tokens=50)
    at.sidebar.button(key="play").click().run()
    assert generated_ids(at)[2:] == [eos]  # nothing after it
    assert any("end-of-text token" in s.value for s in at.success)
    assert at.sidebar.button(key="play").disabled


def test_the_generation_downloads_as_json_and_csv(loaded):
    import io
    import json

    import pandas as pd

    from chapter1.autoregression import record, record_csv
    from chapter1.pipeline import SETTINGS, VIEW
    at = run_app(autoregressive=True, play_tokens=4, **WIDE)
    at.sidebar.button(key="play").click().run()
    assert {b.proto.label for b in at.get("download_button")} == {
        "Download the generation (JSON)", "Download the generation (CSV)"}
    view = at.session_state["_memo"].latest(VIEW)
    data = json.loads(json.dumps(record(loaded, view, {k: at.session_state[k]
                                                       for k in SETTINGS})))
    assert data["ids"] == list(view.ids) and data["settings"]["temperature"] == 1.0
    played = generated_ids(at)
    assert [s["id"] for s in data["steps"]] == played
    candidates = view.forward.candidates
    for s in data["steps"]:  # the step's top 10, from the row that predicted it
        row = s["position"] - 1
        assert [c["id"] for c in s["candidates"]] == candidates.ids[row].tolist()
        assert s["probability"] == float(candidates.chosen[row])
    table = pd.read_csv(io.StringIO(record_csv(data)))
    assert len(table) == len(played) * len(data["steps"][0]["candidates"])
    assert table.groupby("step")["drawn id"].first().tolist() == played


def test_a_branch_crops_the_cache_and_runs_one_step(loaded, forwards):
    at = run_app(autoregressive=True, play_tokens=4, **WIDE)
    at.sidebar.button(key="play").click().run()
    before = generated_ids(at)
    at.number_input(key="branch_step").set_value(2).run()
    [radio] = [r for r in at.radio if "At step 2" in r.label]
    other = next(i for i in radio.options if int(i.split("(")[-1].split(")")[0]) != before[1])
    other_id = int(other.split("(")[-1].split(")")[0])
    radio.set_value(other)
    forwards.clear()
    at.button(key="branch").click().run()
    assert generated_ids(at) == [before[0], other_id]
    # one step for the new token (the prefix is not read), then the next taken ahead
    assert forwards.waited == [[other_id]] and forwards.ahead == [[shown_next_id(at)]]
    assert any("Branched: 3 tokens cut away" in i.value for i in at.info)
    from helpers import forward_of
    ids = list(forward_of(at).ids)
    with_cache = forward_of(at).last
    from chapter1.logits import logits
    assert torch.allclose(with_cache, logits(loaded.model, ids)[-1], atol=0.02)


def test_crop_and_continue_equals_recomputing_the_cut_sequence_in_float32(tiny_dir):
    from transformers import AutoModelForCausalLM, DynamicCache

    from chapter1.autoregression import branch
    from chapter1.logits import logits
    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32).eval()
    ids = [(37 * i + 11) % 2000 for i in range(30)]
    cache = DynamicCache(config=model.config)
    logits(model, ids, cache)  # the whole sequence read once
    new_ids, last = branch(model, cache, ids, 12, 7)
    assert new_ids == ids[:12] + [7] and cache.get_seq_length() == 13
    assert (last - logits(model, new_ids)[-1]).abs().max() <= 1e-4


# --- chat mode ------------------------------------------------------------------------------

def template_ids(tokenizer, text, thinking=False):
    return tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                         add_generation_prompt=True,
                                         enable_thinking=thinking)["input_ids"]


@pytest.mark.parametrize("thinking", [False, True])
def test_chat_mode_reads_the_chat_templates_ids(loaded, thinking):
    at = run_app(chat=True, thinking=thinking)
    expected = template_ids(loaded.tokenizer, DEFAULT_TEXT, thinking)
    assert expected != tokenize(loaded.tokenizer, DEFAULT_TEXT)
    assert code_starting(at, "tokens = [").startswith(f"tokens = {expected}")
    assert forward_of(at).ids == tuple(expected)  # what the model read
    im_start = loaded.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert expected.count(im_start) == 2  # the user's turn, then the assistant's
    assert f"`<|im_start|>` ({im_start})" in page_text(at)  # the template's tokens explained
    think = loaded.tokenizer.convert_tokens_to_ids("<think>")
    assert (think in expected) is (not thinking)  # Qwen3: thinking off = an empty block


def test_generation_in_chat_mode_stops_at_the_end_of_turn(loaded):
    end_of_turn = loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in loaded.eos_ids
    at = run_app(chat=True, autoregressive=True)
    at.sidebar.button(key="generate").click().run()
    answer = generated_ids(at)
    at = run_app(chat=True, autoregressive=True, generated=[*answer, end_of_turn])
    assert any("end-of-text token" in s.value for s in at.success)
    assert at.sidebar.button(key="generate").disabled and at.sidebar.button(key="play").disabled
    assert forward_of(at).ids == tuple(template_ids(loaded.tokenizer, DEFAULT_TEXT)
                                       + answer + [end_of_turn])
    assert at.sidebar.toggle(key="chat").disabled  # locked while generating


def test_turning_autoregression_off_hands_back_the_whole_conversation(loaded):
    at = run_app(chat=True, autoregressive=True, temperature=1.0, top_k=0, top_p=1.0)
    for _ in range(3):
        at.sidebar.button(key="generate").click().run()
    ids = list(forward_of(at).ids)
    at.sidebar.toggle(key="autoregressive").set_value(False).run()
    assert at.session_state["chat"] is False
    assert at.session_state["text"].startswith("<|im_start|>user\n" + DEFAULT_TEXT)
    # the template's special tokens, typed as text, are read as the same special tokens
    assert tokenize(loaded.tokenizer, at.session_state["text"])[: len(ids) - 3] == ids[:-3]


def test_chat_mode_on_the_pocket_model(monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "pocket")
    from token_by_token.model import load
    tokenizer = load().tokenizer
    at = run_app(chat=True)
    expected = template_ids(tokenizer, DEFAULT_TEXT)
    assert code_starting(at, "tokens = [").startswith(f"tokens = {expected}")


def test_a_share_link_keeps_chat_mode_and_the_generated_ids(loaded):
    from helpers import MAIN
    from streamlit.testing.v1 import AppTest
    at = run_app(chat=True, autoregressive=True, temperature=1.0, top_k=0, top_p=1.0)
    for _ in range(3):
        at.sidebar.button(key="generate").click().run()
    link = dict(at.query_params)
    assert link["chat"] == "True" and link["autoregressive"] == "True"
    assert link["generated"] == ",".join(map(str, generated_ids(at)))
    opened = AppTest.from_file(MAIN, default_timeout=60)  # a new learner opens the link
    for key, value in link.items():
        opened.query_params[key] = value
    opened.run()
    assert not opened.exception
    assert forward_of(opened).ids == forward_of(at).ids


@pytest.mark.parametrize("generated, kept", [
    ("5,abc", []), ("-1,2", []), (",".join(["7"] * 201), []), ("3,99999999", [3]),
])
def test_a_share_links_generated_ids_are_read_safely(loaded, generated, kept):
    from helpers import MAIN
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params["generated"] = generated
    at.run()
    assert not at.exception
    assert generated_ids(at) == kept
    if "99999999" in generated:
        assert any("are not ids of this model" in w.value for w in at.warning)


# --- the proof against generate() -----------------------------------------------------------

WIDE = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}


def proof_of(at):
    return at.session_state["_memo"].latest(proof.PROOF)


def test_generate_walks_the_sampled_ids_with_the_pages_logits(loaded):
    at = run_app(autoregressive=True, play_tokens=5, **WIDE)
    at.sidebar.button(key="play").click().run()
    steps = len(generated_ids(at))
    with counting_forwards(loaded.model) as calls:
        at.button(key="proof").click().run()
    assert calls  # generate() ran, on demand
    found = proof_of(at)
    assert found.followed and len(found.differences) == steps
    assert float(found.differences.max()) < 1e-3
    assert f"by at most **{float(found.differences.max()):.3g}**" in page_text(at)
    assert found.greedy is None
    with counting_forwards(loaded.model) as calls:  # shown again without running again
        at.sidebar.slider(key="temperature").set_value(0.9).run()
    assert calls == [] and "by at most" in page_text(at)


def test_greedy_settings_give_the_same_ids_as_generate(loaded):
    at = run_app(autoregressive=True, play_tokens=5, top_k=1)
    at.sidebar.button(key="play").click().run()
    at.button(key="proof").click().run()
    found = proof_of(at)
    assert found.greedy == list(forward_of(at).ids)
    assert "**the same ids** as yours" in page_text(at)


def test_the_proof_would_show_a_difference():
    top_ids = torch.tensor([[3, 1], [0, 2]])
    top_logits = torch.tensor([[5.0, 4.0], [2.0, 1.0]])
    rows = torch.zeros(2, 4)
    rows[0, 3], rows[0, 1], rows[1, 0], rows[1, 2] = 5.0, 4.0, 2.0, 1.0
    assert proof.largest_differences(top_ids, top_logits, rows).tolist() == [0.0, 0.0]
    rows[1, 2] += 0.25  # one perturbed logit
    assert proof.largest_differences(top_ids, top_logits, rows).tolist() == [0.0, 0.25]


# --- how sure the model is ------------------------------------------------------------------

def view_of(at):
    return at.session_state["_memo"].latest(VIEW)


def bits(p: torch.Tensor) -> float:
    """Entropy in bits, computed directly in float64 (not with the lesson)."""
    p = p.double()
    p = p[p > 0]
    return float(-(p * torch.log(p)).sum() / math.log(2))


def test_entropy_and_effective_choices_before_and_after_the_filters(loaded):
    at = run_app()
    view = view_of(at)
    before = torch.softmax(view.forward.last, -1)
    text = page_text(at)
    for p in (before, view.probs):
        assert float(entropy(p)) == pytest.approx(bits(p), abs=1e-3)
        assert f"**{bits(p):.2f} bits**, like a fair pick among **{2 ** bits(p):,.1f}**" in text
    assert bits(view.probs) < bits(before)  # the filters cut choices
    p = float(view.probs[view.next_id])
    rank = int((before > before[view.next_id]).sum()) + 1
    assert f"number **{rank:,}** (before the filters)" in text
    assert f"a **surprisal** of {-math.log2(p):.2f} bits" in text
    # one token certain: 0 bits; two equal: 1 bit
    assert float(entropy(torch.tensor([1.0, 0.0]))) == 0
    assert float(entropy(torch.tensor([0.5, 0.5]))) == pytest.approx(1.0)


def test_the_timeline_of_a_generation_equals_the_full_logits(loaded):
    at = run_app(autoregressive=True, temperature=1.5, top_k=0, top_p=1.0,  # wide draws
                 table_timeline=True)  # the table opened
    with counting_forwards(loaded.model) as calls:
        for _ in range(4):
            at.sidebar.button(key="generate").click().run()
    assert [len(c) for c in calls.waited] == [1]  # the others were taken ahead; the
    assert [len(c) for c in calls.ahead] == [1] * 4  # numbers cost no forward of their own
    view = view_of(at)
    ids, generated = view.ids, view.generated
    full = logits(loaded.model, ids)  # [positions, vocab], one forward
    probs = torch.softmax(full, -1)
    candidates = view.forward.candidates
    rows = range(len(ids) - 1)
    chosen = torch.stack([probs[r, ids[r + 1]] for r in rows])
    # cached steps and a full forward add in another order: close, not always bit-equal
    assert torch.allclose(candidates.chosen[:-1], chosen, rtol=1e-3, atol=1e-7)
    assert torch.isnan(candidates.chosen[-1]) and candidates.rank[-1] == 0  # not drawn yet
    assert torch.allclose(candidates.entropy, torch.tensor([bits(p) for p in probs]),
                          rtol=1e-4)
    end = probs[:, sorted(loaded.eos_ids)].sum(-1)
    assert torch.allclose(candidates.end, end, rtol=1e-3, atol=1e-7)
    text_rows = range(len(ids) - len(generated) - 1)  # the prefill: the same forward
    ranks = [int((full[r] > full[r, ids[r + 1]]).sum()) + 1 for r in text_rows]
    assert candidates.rank[: len(ranks)].tolist() == ranks
    [table] = [d.value for d in at.dataframe if "surprisal (bits)" in d.value.columns]
    assert table["step"].tolist() == [1, 2, 3, 4]
    assert table["probability"].tolist() == pytest.approx(chosen[-4:].tolist(), rel=1e-3)
    assert table["surprisal (bits)"].tolist() == pytest.approx(
        [-math.log2(p) for p in table["probability"]])
    assert table["effective choices"].tolist() == pytest.approx(
        [2 ** b for b in table["entropy (bits)"]])


def test_many_draws_come_out_as_often_as_their_probability():
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    shares = many_draws(probs, 100_000, torch.Generator().manual_seed(1))
    assert float(shares.sum()) == pytest.approx(1.0)
    assert shares[3] == 0  # a filtered-out token never comes out
    assert total_variation(shares, probs) < 0.01
    again = many_draws(probs, 100_000, torch.Generator().manual_seed(1))
    assert torch.equal(shares, again)  # seeded: the same draws
    assert total_variation(torch.tensor([1.0, 0, 0, 0]), probs) == pytest.approx(0.5)


def test_the_page_draws_from_the_probabilities_it_shows(loaded):
    at = run_app()
    view = view_of(at)
    shares = many_draws(view.probs, DRAWS, random_stream(view.seed, len(view.ids),
                                                         view.resamples))
    distance = total_variation(shares, view.probs)
    assert f"is **{distance:.3f}**" in page_text(at)
    assert distance < 0.2  # 1,000 draws land close to the probabilities
    assert float(shares[view.probs == 0].sum()) == 0


# --- the vocabulary, bytes and share links --------------------------------------------------

LLAMA = "🦙".encode()  # 4 bytes: f0 9f a6 99


def byte_ids(tokenizer, data: bytes) -> list[int]:
    """The single-byte tokens spelling `data` (byte-level BPE has one for every byte)."""
    return [tokenizer.convert_tokens_to_ids(bytes_to_unicode()[b]) for b in data]


def everything_shown(at) -> str:
    return page_text(at) + "\n".join(c.value for c in at.code)


def test_a_character_cut_by_generation_keeps_its_bytes_and_the_page_says_why(loaded):
    text = "Llamas are cute"
    first_two = byte_ids(loaded.tokenizer, LLAMA[:2])
    at = run_app(text=text, autoregressive=True, generated=first_two)
    assert "\ufffd" not in everything_shown(at)
    assert "text = '<0xF0><0x9F>'" in code_starting(at, "generated = ")
    assert any("has not finished" in c.value for c in at.caption)

    at.sidebar.toggle(key="autoregressive").set_value(False).run()
    assert not at.exception
    assert at.session_state["text"] == text  # a text box holds characters, not bytes
    assert "\ufffd" not in everything_shown(at)
    [warning] = [w.value for w in at.warning if "different ids" in w.value]
    assert "2 bytes" in warning and "not finished" in warning and "<0xF0><0x9F>" in warning
    assert "more than one way" not in warning  # not the reason here
    shown = [e.value for e in at.main if getattr(e, "type", "") in ("markdown", "html")]
    generated_chips = shown[shown.index("Generated ids:") + 1]  # kept for comparison
    assert all(f">{i}<" in generated_chips for i in first_two)


def test_a_whole_character_over_four_tokens_is_handed_back_whole(loaded):
    ids = byte_ids(loaded.tokenizer, LLAMA)
    at = run_app(text="Llamas are cute", autoregressive=True, generated=ids)
    assert "text = '🦙'" in code_starting(at, "generated = ")
    assert not any("has not finished" in c.value for c in at.caption)
    at.sidebar.toggle(key="autoregressive").set_value(False).run()
    assert at.session_state["text"] == "Llamas are cute🦙"
    assert not any("byte" in w.value for w in at.warning)


@pytest.fixture(scope="module")
def padded_dir(tmp_path_factory):
    """A tiny model whose tables have 64 rows more than its tokenizer has tokens (Qwen3:
    151,936 rows for 151,669 tokens)."""
    return tiny_model.build(tmp_path_factory.mktemp("padded"), unused_rows=64)


def test_an_id_without_a_token_is_named_not_lost(padded_dir, monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(padded_dir))
    from token_by_token.model import load
    tokenizer = load().tokenizer
    unknown = len(tokenizer) + 3
    words = tokenize(tokenizer, " and")
    at = run_app(text="cats", autoregressive=True, generated=[unknown, *words])
    assert f"text = '<unused id {unknown}> and'" in code_starting(at, "generated = ")
    assert "\ufffd" not in everything_shown(at)
    at.sidebar.toggle(key="autoregressive").set_value(False).run()
    assert not at.exception
    assert at.session_state["text"] == "cats and"
    [warning] = [w.value for w in at.warning if "different ids" in w.value]
    assert f"({unknown})" in warning and "no token" in warning
    assert "byte" not in warning and "more than one way" not in warning


def test_special_tokens_and_other_added_tokens_are_told_apart(loaded):
    special, added = len(tiny_model.SPECIAL_TOKENS), len(tiny_model.ADDED_TOKENS)
    at = run_app(text="<think>why</think> then<|im_end|>")
    text = page_text(at)
    assert f"**{special} special tokens**" in text
    assert f"**{added} added tokens that are not special**" in text
    [table] = [d.value for d in at.table if "special" in d.value.columns]
    assert table["special"].sum() == special and (~table["special"]).sum() == added
    assert set(table[~table["special"]]["token"]) == set(tiny_model.ADDED_TOKENS)
    infos = [i.value for i in at.info]
    [specials] = [i for i in infos if i.startswith("Your text contains special tokens")]
    [others] = [i for i in infos if i.startswith("Your text contains added tokens")]
    assert "<|im_end|>" in specials and "<think>" not in specials
    assert "<think>" in others and "</think>" in others and "<|im_end|>" not in others


def lookup(at, query: str):
    at.text_input(key="lookup").input(query).run()
    assert not at.exception
    return at


def test_lookup_reads_digits_as_an_id_and_as_text(loaded):
    digits = "7"  # Qwen's tokenizer (and this one) reads numbers digit by digit
    at = lookup(run_app(), digits)
    id_table = at.dataframe[0].value
    assert id_table["id"].tolist() == [int(digits)]
    found = at.dataframe[1].value
    assert len(found) > 0 and all(digits in token for token in found["token"])
    assert loaded.tokenizer.convert_tokens_to_ids(digits) in found["id"].tolist()


def test_lookup_takes_ids_written_with_thousands_separators(loaded):
    at = lookup(run_app(), "1,024")
    assert at.dataframe[0].value["id"].tolist() == [1024]
    at = lookup(at, f"{len(loaded.tokenizer) + 5:,}")
    assert any(f"no token with id {len(loaded.tokenizer) + 5:,}" in i.value for i in at.info)


def test_lookup_counts_in_the_singular_and_finds_added_tokens(loaded):
    at = lookup(run_app(), "</think>")
    assert any(c.value.startswith("1 token contains") for c in at.caption)
    assert at.dataframe[0].value["token"].tolist() == ["</think>"]
    at = lookup(at, "␣the")
    found = at.dataframe[0].value
    assert len(found) > 1 and all("␣the" in token for token in found["token"])
    assert any(c.value.startswith(f"{len(found):,} tokens contain") for c in at.caption)


def test_the_page_says_when_the_normalizer_changed_the_text(loaded):
    at = run_app(text="cafe\u0301")  # e + combining acute: NFC makes it é
    [note] = [i.value for i in at.info if "normalizes" in i.value]
    assert "U+0301" in note and "U+00E9" in note and "65 cc 81" in note and "c3 a9" in note
    at = run_app(text="café")
    assert not [i for i in at.info if "normalizes" in i.value]


def test_cap_messages_only_where_they_are_true(loaded):
    at = run_app(text=" ".join(["word"] * 1100))
    assert any("keeps the first 1,024" in w.value for w in at.warning)
    assert any("fills 1,024 tokens" in i.value for i in at.info)
    assert not any("generation stops here" in w.value for w in [*at.warning, *at.success])
    grown = code_starting(at, "next_id = ").splitlines()[1]
    assert "1025" not in grown and "1,025" not in grown and "never appended" in grown


CJK = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(10_000))


def encoded_query(at) -> str:
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in at.query_params.items()
                    for v in (v if isinstance(v, list) else [v]))


def shared_text(at) -> str:
    shared = at.query_params["text"]
    return shared[0] if isinstance(shared, list) else shared


def test_a_long_text_makes_a_share_link_that_loads_and_says_it_was_shortened(loaded):
    at = run_app()
    at.sidebar.text_area(key="text").input(CJK).run()
    assert 0 < len(encoded_query(at)) <= LINK_LIMIT
    shared = shared_text(at)
    assert CJK.startswith(shared) and 0 < len(shared) < len(CJK)
    # here each character is 3 tokens: the cap of 1,024 tokens comes before 8 KB
    assert len(tokenize(loaded.tokenizer, shared)) <= 1024
    assert any(f"first {len(shared):,} of your 10,000 characters" in c.value
               and "context cap" in c.value for c in at.sidebar.caption)
    again = AppTest.from_file(MAIN, default_timeout=60)  # a new learner opens the link
    again.query_params["text"] = shared
    again.run()
    assert again.session_state["text"] == shared
    assert not [c for c in again.sidebar.caption if "share link" in c.value]


def test_a_link_over_8_kb_is_cut_at_a_token_and_says_so(loaded):
    word = " function"
    assert len(tokenize(loaded.tokenizer, word)) == 1  # 1,024 tokens: about 11 KB escaped
    text = word * 1100
    at = run_app()
    at.sidebar.text_area(key="text").input(text).run()
    assert len(encoded_query(at)) <= LINK_LIMIT
    shared = shared_text(at)
    assert text.startswith(shared) and len(shared) % len(word) == 0  # whole tokens
    assert len(quote(text[: len(shared) + len(word)], safe="")) > LINK_LIMIT - 5  # as long as fits
    assert any(f"first {len(shared):,} of your {len(text):,} characters" in c.value
               and "8 KB" in c.value for c in at.sidebar.caption)


def test_a_short_text_is_shared_whole(loaded):
    at = run_app()
    at.sidebar.text_area(key="text").input("a short text").run()
    assert at.query_params["text"] in ("a short text", ["a short text"])
    assert not [c for c in at.sidebar.caption if "share link" in c.value]


# --- the tokenizer section ------------------------------------------------------------------

def tokens_code(at) -> str:
    return code_starting(at, "tokens = ")



def test_default_text_is_tokenized_with_the_lesson_function(loaded, chapter1):
    ids = tokenize(loaded.tokenizer, "The quick brown fox jumps over the lazy")
    assert tokens_code(chapter1) == f"tokens = {ids}\nlen(tokens) = {len(ids)}"
    assert any("def tokenize(tokenizer, text" in c.value for c in chapter1.code)



@pytest.mark.parametrize("text", [
    "def add(a, b):\n    return a + b",
    "日本語のテキスト",
    "family 👨‍👩‍👧‍👦 thumbs 👍🏽",
    "plain English sentence.",
])
def test_typing_text_updates_spans_and_ids(loaded, chapter1, text):
    chapter1.sidebar.text_area(key="text").input(text).run()
    assert not chapter1.exception
    ids = tokenize(loaded.tokenizer, text)
    assert tokens_code(chapter1).startswith(f"tokens = {ids}")
    bodies = chip_bodies(chips_blocks(chapter1)[0])
    assert len(bodies) == len(ids)  # one chip per token
    assert bodies == show_ids(loaded.tokenizer, ids)



@pytest.mark.parametrize("text", [
    "**bold** and _it_", "$x^2$", ":red[alarm]",
    "<b>bold</b> <img src=x onerror=alert(1)> <script>alert(1)</script>",
    "[a](javascript:alert(1))",
])
def test_hostile_text_renders_literally(loaded, chapter1, text):
    chapter1.sidebar.text_area(key="text").input(text).run()
    assert not chapter1.exception
    html = chips_blocks(chapter1)[0]
    # every chip shows its token as it is, whatever the token cuts ...
    ids = tokenize(loaded.tokenizer, text)
    assert chip_bodies(html) == show_ids(loaded.tokenizer, ids)
    # ... and no tag reaches the page as markup: html.escape in every chip
    assert "<script" not in html and "<img" not in html and "<b>" not in html



def test_special_tokens_section_reports_what_the_tokenizer_does(loaded, chapter1):
    eot = loaded.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert any(f"gives `[{eot}]`" in m.value for m in chapter1.markdown)
    chapter1.sidebar.text_area(key="text").input("end<|endoftext|>").run()
    assert any(f"(id {eot})" in i.value for i in chapter1.info)



def test_vocabulary_lookup_by_id_and_by_text(loaded, chapter1):
    chapter1.text_input(key="lookup").input("5").run()
    assert chapter1.dataframe[0].value["id"].tolist() == [5]
    chapter1.text_input(key="lookup").input("␣the").run()
    found = chapter1.dataframe[0].value
    assert len(found) > 0 and all("␣the" in token for token in found["token"])
    chapter1.text_input(key="lookup").input("999999").run()
    assert any("no token with id 999,999" in i.value for i in chapter1.info)

