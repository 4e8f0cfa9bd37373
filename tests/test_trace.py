"""Live values beside the lesson code: each value shown is the value the function produced,
checked against the function's result and against numbers computed apart."""

import pytest
import torch
from helpers import code_starting, generated_ids, run_app, shown_next_id

from chapter1.filters import probabilities, survivors, warpers
from chapter1.logits import logits
from chapter1.tokenizer import tokenize
from token_by_token.trace import describe, traced, with_values


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
    left = survivors(rows[-1], watched)["tokens left"].tolist()[1:]
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
    plain = [c.value for c in at.code if c.value.startswith("def tokenize(")]
    assert len(plain) == 2 and "# →" not in plain[1]
    import inspect
    assert plain[1] == inspect.getsource(tokenize).rstrip("\n")
    assert code_starting(at, "tokens = ")  # the ids line of the contract is still there


@pytest.mark.parametrize("name", ["tokenize", "logits", "warpers", "probabilities", "sample",
                                  "random_stream"])
def test_every_lesson_the_page_ran_shows_its_values(name):
    at = run_app()
    assert lesson_code(at, name)
