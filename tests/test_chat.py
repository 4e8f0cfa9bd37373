"""Chat mode (Chapter 1): the text as a user message in the model's chat template; the ids
the page shows are the template's; generation stops at the end-of-turn token."""

import pytest
from helpers import code_starting, forward_of, generated_ids, page_text, run_app

from chapter1.tokenizer import tokenize
from token_by_token.state import DEFAULT_TEXT


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
