"""Random walks of a learner through the whole app (AppTest): any action, in any order, on any
page, and after every step the page holds together.

One rule per learner action of every chapter (the model picker, text edits, each slider, the
seed, Resample, Reset, the toggles, Generate, Play, a branch, the proof, a vocabulary lookup,
the logits rows, switching pages, Chapter 2's Token, Layer, Query head, Attention rows and
halfway controls,
Chapter 3's sliders, block sizes, scheme, draft and Measure again buttons).
After every step, the invariants: no exception in the page; Section 1's `tokens = [` line is
the tokenizer's ids for the text (or the chat template's); `generated` is what was appended
since the last edit (Generate appends the id the page showed as sampled; a branch cuts at its
step and takes the chosen token); an action that changes no ids runs no forward (but where a
rule says which forwards it may run: Chapter 3's measurements and speculative runs); no number
on the page is NaN; Chapter 3 draws its six sections, or says why it can't.

In CI: WALKS walks (default 200) of STEPS steps (default 25), the same ones every run
(derandomized); elsewhere each run draws new walks. A longer search:
    WALKS=2000 STEPS=40 uv run pytest tests/test_walks.py
A failure prints the shrunk sequence of actions (hypothesis' stateful reproduction steps).
"""

import os
import re
import sys
import time
from collections import Counter

from helpers import (
    CHAPTER1,
    CHAPTER2,
    CHAPTER3,
    MAIN,
    README,
    code_starting,
    counting_forwards,
    forward_of,
    shown_next_id,
)
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from chapter1 import ahead
from chapter1.tokenizer import chat, tokenize
from chapter3 import measure, quantize

BUILT: dict[str, str] = {}  # architecture -> its tiny model's directory, built once
STEPS_TAKEN: list = []  # every action run, all walks together (the report at the end)
SECONDS: Counter = Counter()  # the seconds each rule's actions took, all walks together
WALKS = int(os.environ.get("WALKS", 200))
STEPS = int(os.environ.get("STEPS", 25))

TEXTS = ["a", " ", "1", "None", "The", "The quick brown fox", "The quick",
         "The quick brown fox jumps over the lazy", "", "   \n", "日本語", "👍🏽 ok",
         "Hi<|endoftext|><|im_start|>user", "**bold** $x$ :red[x]", "def f(x):\n    return x",
         "e\u0301" * 3, "All work and no play. " * 30]
NUMBERS = re.compile(r"(?<![\w-])(nan|NaN)(?![\w])")


def edited(current: str, how: str, amount: int, word: str) -> str:
    """A new text from the current one, the ways a learner edits: cut the end, add a word,
    replace it."""
    if how == "shorten":
        return current[: max(len(current) - amount, 0)]
    if how == "extend":
        return current + word
    return word


class Learner(RuleBasedStateMachine):
    """One learner's session, and what the page must show after each of their actions."""

    MODEL: str | None = None  # the model directory (None: the test run's tiny Qwen3)

    @initialize()
    def open_app(self):
        from streamlit.testing.v1 import AppTest

        from token_by_token import model
        self.environment = os.environ.get("TOKEN_BY_TOKEN_MODEL")
        self.listed = os.environ.get("TOKEN_BY_TOKEN_MODELS")
        if self.MODEL:
            os.environ["TOKEN_BY_TOKEN_MODEL"] = self.model_dir()
        # the picker offers the walk's model and the pocket model (both on this machine)
        os.environ["TOKEN_BY_TOKEN_MODELS"] = f"{model.model_id()},pocket"
        self.loaded = model.load()
        self.at = AppTest.from_file(MAIN, default_timeout=60)
        self.at.run()
        self.page = CHAPTER1
        self.generated: list[int] = []
        self.forwards: list = []
        self.may_run_model = True
        self.allowed = None  # which forwards an action that changes no ids may run

    def teardown(self):
        if self.MODEL and getattr(self, "environment", None):
            os.environ["TOKEN_BY_TOKEN_MODEL"] = self.environment
        if getattr(self, "listed", None) is None:
            os.environ.pop("TOKEN_BY_TOKEN_MODELS", None)
        else:
            os.environ["TOKEN_BY_TOKEN_MODELS"] = self.listed

    def model_dir(self) -> str:
        if self.MODEL not in BUILT:
            import tempfile

            import tiny_model
            out = tempfile.mkdtemp(prefix=f"walks-{self.MODEL}-")
            BUILT[self.MODEL] = str(tiny_model.build(out, arch=self.MODEL))
        return BUILT[self.MODEL]

    # --- running an action ------------------------------------------------------------

    def act(self, action, changes_ids: bool, allowed=None) -> None:
        """Run one action with the model's forwards counted; the invariants check them.
        `allowed(forwards)`: for an action that changes no ids but may run the model (a
        measurement, a speculative run), whether the forwards it ran are those it may."""
        rule = sys._getframe(1).f_code.co_name
        STEPS_TAKEN.append(rule)
        start = time.perf_counter()
        with counting_forwards(self.loaded.model) as calls:
            action()
        SECONDS[rule] += time.perf_counter() - start
        self.forwards, self.may_run_model, self.allowed = calls, changes_ids, allowed

    def widget(self, kind: str, key: str):
        """The widget with this key on the page (sidebar or main), or None."""
        for found in getattr(self.at, kind):
            if getattr(found, "key", None) == key:
                return found
        return None

    def usable(self, kind: str, key: str) -> bool:
        found = self.widget(kind, key)
        return found is not None and not getattr(found, "disabled", False)

    def on(self, page: str) -> bool:
        return self.page == page

    # --- Chapter 1 ----------------------------------------------------------------------

    @precondition(lambda self: self.usable("text_area", "text"))
    @rule(how=st.sampled_from(["shorten", "extend", "replace"]),
          amount=st.integers(1, 12), word=st.sampled_from(TEXTS) | st.text(max_size=12))
    def edit_text(self, how, amount, word):
        before = self.at.session_state["text"]
        text = edited(before, how, amount, word)
        self.act(lambda: self.widget("text_area", "text").input(text).run(), True)
        if text != before:  # a new text is a new sequence: nothing generated yet
            self.generated = []

    @precondition(lambda self: self.usable("slider", "temperature"))
    @rule(key=st.sampled_from(["temperature", "top_k", "top_p", "min_p"]), data=st.data())
    def move_a_sampling_slider(self, key, data):
        slider = self.widget("slider", key)
        value = data.draw(st.sampled_from(slider_values(slider)))
        self.act(lambda: slider.set_value(value).run(), False)

    @precondition(lambda self: self.usable("number_input", "seed"))
    @rule(seed=st.integers(0, 2**31 - 1))
    def set_the_seed(self, seed):
        self.act(lambda: self.widget("number_input", "seed").set_value(seed).run(), False)

    @precondition(lambda self: self.usable("button", "resample"))
    @rule()
    def resample(self):
        self.act(lambda: self.widget("button", "resample").click().run(), False)

    @precondition(lambda self: any(b.label.startswith("Reset") for b in self.at.button))
    @rule()
    def reset_sampling(self):
        button = next(b for b in self.at.button if b.label.startswith("Reset"))
        self.act(lambda: button.click().run(), False)

    @precondition(lambda self: self.usable("toggle", "chat"))
    @rule()
    def toggle_chat(self):
        toggle = self.widget("toggle", "chat")
        self.act(lambda: toggle.set_value(not toggle.value).run(), True)

    @precondition(lambda self: self.usable("toggle", "thinking"))
    @rule()
    def toggle_thinking(self):
        toggle = self.widget("toggle", "thinking")
        self.act(lambda: toggle.set_value(not toggle.value).run(), True)

    @precondition(lambda self: self.usable("toggle", "autoregressive"))
    @rule()
    def toggle_autoregression(self):
        toggle = self.widget("toggle", "autoregressive")
        turning_off = toggle.value
        self.act(lambda: toggle.set_value(not toggle.value).run(), turning_off)
        if turning_off:
            self.generated = []  # handed back to the text box

    @precondition(lambda self: self.usable("button", "generate"))
    @rule()
    def generate(self):
        shown = shown_next_id(self.at)
        job = self.at.session_state["_memo"].latest(ahead.JOB)
        ready = (job is not None and job.forward is not None
                 and job.ids == (*forward_of(self.at).ids, shown))
        self.act(lambda: self.widget("button", "generate").click().run(), True)
        self.generated.append(shown)
        if ready:  # the step for this id was taken while the page was read
            assert self.forwards.waited == [], self.forwards

    @precondition(lambda self: self.usable("button", "play"))
    @rule(tokens=st.integers(1, 6))
    def play(self, tokens):
        self.widget("number_input", "play_tokens").set_value(tokens).run()
        before = list(self.generated)
        self.act(lambda: self.widget("button", "play").click().run(), True)
        now = list(self.at.session_state["generated"])
        assert now[: len(before)] == before
        assert 1 <= len(now) - len(before) <= tokens
        self.generated = now

    @precondition(lambda self: self.usable("number_input", "branch_step"))
    @rule(data=st.data())
    def branch(self, data):
        step_input = self.widget("number_input", "branch_step")
        at_step = data.draw(st.integers(step_input.min, step_input.max))
        self.act(lambda: step_input.set_value(at_step).run(), False)
        radio = self.widget("radio", "branch_token")
        chosen = data.draw(st.sampled_from(list(radio.options)))
        index = list(radio.options).index(chosen)
        self.act(lambda: radio.set_value(radio.options[index]).run(), False)
        token_id = self.widget("radio", "branch_token").value
        self.act(lambda: self.widget("button", "branch").click().run(), True)
        self.generated = [*self.generated[: at_step - 1], int(token_id)]

    @precondition(lambda self: self.usable("button", "proof"))
    @rule()
    def prove(self):
        self.act(lambda: self.widget("button", "proof").click().run(), True)

    @precondition(lambda self: self.usable("text_input", "lookup"))
    @rule(query=st.sampled_from(["the", "1234", "151,668", "␣fox", "<|", "", "x" * 40])
          | st.text(max_size=8))
    def look_up(self, query):
        self.act(lambda: self.widget("text_input", "lookup").input(query).run(), False)

    @precondition(lambda self: self.usable("slider", "heatmap_rows"))
    @rule(data=st.data())
    def logits_rows(self, data):
        slider = self.widget("slider", "heatmap_rows")
        value = data.draw(st.integers(slider.min, slider.max))
        self.act(lambda: slider.set_value(value).run(), False)

    @precondition(lambda self: self.usable("selectbox", "model"))
    @rule(data=st.data())
    def pick_a_model(self, data):
        from token_by_token import model
        box = self.widget("selectbox", "model")
        label = data.draw(st.sampled_from(list(box.options)))
        name = label.split(" — ")[0]
        changed = name != self.at.session_state["model"]
        self.act(lambda: box.set_value(name).run(), True)
        if changed:  # a new vocabulary: the ids generated with the old one are gone
            self.generated = []
        self.loaded = model.load(self.at.session_state["model"])

    def openers(self) -> list:
        """The page's table alternatives (expanders keyed table_*) and lessons' tabs (keyed
        lesson:*): built only when opened, so opening one runs code a closed one never does."""
        state = self.at.session_state._state.filtered_state
        return sorted(k for k in state if k.startswith(("table_", "lesson:")))

    @precondition(lambda self: self.openers())
    @rule(data=st.data())
    def open_or_close_a_table_or_source(self, data):
        key = data.draw(st.sampled_from(self.openers()))
        if key.startswith("table_"):
            value = not self.at.session_state[key]
        else:
            value = data.draw(st.sampled_from(["With your values", "Source only"]))

        def toggle():
            self.at.session_state[key] = value
            self.at.run()
        self.act(toggle, False)

    # --- pages --------------------------------------------------------------------------

    @rule(page=st.sampled_from([CHAPTER1, CHAPTER2, CHAPTER3, README]))
    def switch_page(self, page):
        self.act(lambda: self.at.switch_page(page).run(), True)
        self.page = page

    # --- Chapter 2 ----------------------------------------------------------------------

    @precondition(lambda self: self.usable("select_slider", "position"))
    @rule(data=st.data())
    def pick_a_token(self, data):
        slider = self.widget("select_slider", "position")
        value = data.draw(st.sampled_from(list(slider.options)))
        self.act(lambda: slider.set_value(list(slider.options).index(value)).run(), False)

    @precondition(lambda self: self.usable("slider", "layer"))
    @rule(key=st.sampled_from(["layer", "head", "window"]), data=st.data())
    def move_a_chapter2_slider(self, key, data):
        slider = self.widget("slider", key)
        value = data.draw(st.integers(slider.min, slider.max))
        self.act(lambda: slider.set_value(value).run(), False)

    @precondition(lambda self: self.usable("toggle", "halfway"))
    @rule()
    def toggle_halfway(self):
        toggle = self.widget("toggle", "halfway")
        self.act(lambda: toggle.set_value(not toggle.value).run(), False)

    # --- Chapter 3 ----------------------------------------------------------------------
    # A control of Chapter 3 changes no ids. Only these run the shared model: a speculative
    # run (Section 5's controls, Run again) checks the draft's guesses, at most k + 1 ids a
    # forward, and decodes one id at a time; a Measure again times the model; picking a
    # quantization scheme whose steps were not timed yet in this process times them.

    def speculative_forwards(self):
        """Forwards of at most k + 1 ids, k as the action left it (read when checked)."""
        return lambda calls: all(len(ids) <= self.at.session_state["spec_k"] + 1
                                 for ids in calls)

    @precondition(lambda self: self.usable("slider", "batch_length"))
    @rule(key=st.sampled_from(["batch_length", "paged_learners", "paged_length",
                               "paged_prefix", "spec_k", "spec_temperature"]), data=st.data())
    def move_a_chapter3_slider(self, key, data):
        slider = self.widget("slider", key)
        value = data.draw(st.sampled_from(slider_values(slider)))
        self.act(lambda: slider.set_value(value).run(), False,
                 self.speculative_forwards() if key.startswith("spec") else None)

    @precondition(lambda self: self.usable("select_slider", "flash_block"))
    @rule(key=st.sampled_from(["flash_block", "paged_block", "spec_layers"]), data=st.data())
    def pick_a_block_or_depth(self, key, data):
        slider = self.widget("select_slider", key)
        if slider is None or slider.disabled:  # the draft layers, for prompt lookup
            return
        value = data.draw(st.sampled_from(list(slider.options)))
        self.act(lambda: slider.set_value(type(slider.value)(value)).run(), False,
                 self.speculative_forwards() if key == "spec_layers" else None)

    @precondition(lambda self: self.usable("radio", "quant_scheme"))
    @rule(scheme=st.sampled_from(quantize.SCHEMES))
    def pick_a_quantization(self, scheme):
        timed = measure.known(("kernel", self.loaded.model_id, scheme, quantize.STEP_CONTEXT))
        self.act(lambda: self.widget("radio", "quant_scheme").set_value(scheme).run(), False,
                 None if timed else lambda calls: True)

    @precondition(lambda self: self.usable("radio", "spec_draft"))
    @rule(draft=st.sampled_from(["layers", "lookup"]))
    def pick_a_draft(self, draft):
        self.act(lambda: self.widget("radio", "spec_draft").set_value(draft).run(), False,
                 self.speculative_forwards())

    @precondition(lambda self: self.usable("button", "roofline_again"))
    @rule(key=st.sampled_from(["roofline_again", "batching_again", "quantize_again",
                               "speculative_again"]))
    def measure_again(self, key):
        self.act(lambda: self.widget("button", key).click().run(), False,
                 self.speculative_forwards() if key == "speculative_again"
                 else lambda calls: True)

    # --- after every step ---------------------------------------------------------------

    @invariant()
    def no_exception(self):
        assert not self.at.exception, [e.value for e in self.at.exception]

    @invariant()
    def the_ids_are_the_tokenizers(self):
        if not self.on(CHAPTER1):
            return
        s, tokenizer = self.at.session_state, self.loaded.tokenizer
        if s["chat"] and tokenizer.chat_template:
            ids = chat(tokenizer, s["text"], s["thinking"])
        else:
            ids = tokenize(tokenizer, s["text"])
        assert code_starting(self.at, "tokens = ").startswith(
            f"tokens = {ids[: self.loaded.max_tokens]}")

    @invariant()
    def generated_is_what_was_appended(self):
        assert list(self.at.session_state["generated"]) == self.generated

    @invariant()
    def a_step_taken_ahead_is_for_the_id_shown(self):
        if self.forwards and self.forwards.ahead:  # once per step, for the id Section 4 drew
            assert self.on(CHAPTER1) and self.forwards.ahead == [[shown_next_id(self.at)]]
        memo = self.at.session_state["_memo"] if "_memo" in self.at.session_state else None
        if memo is not None and (taken := ahead.taken_ahead(memo)) is not None:
            # kept only on Chapter 1, for the id its page shows: else its memory is let go
            assert self.on(CHAPTER1) and taken[-1] == shown_next_id(self.at), taken

    @invariant()
    def no_forward_unless_the_ids_change(self):
        if not self.may_run_model:
            if self.allowed is None:
                assert self.forwards == [], self.forwards
            else:
                assert self.allowed(self.forwards), self.forwards

    @invariant()
    def chapter3_draws_every_section_or_asks_for_text(self):
        if not self.on(CHAPTER3):
            return
        # it runs on every architecture, Mistral's sliding windows included
        assert not any("Chapter 3 can't run" in i.value for i in self.at.info)
        has_ids = any(h.value.startswith("1. ") for h in self.at.header)
        assert len(self.at.success) == (6 if has_ids else 0)
        assert has_ids or any("Type some text" in i.value for i in self.at.info)

    @invariant()
    def every_number_is_finite(self):
        if self.on(README):
            return  # prose about the app, not numbers of a page
        shown = [e.value for e in [*self.at.markdown, *self.at.caption, *self.at.success,
                                   *self.at.info, *self.at.warning, *self.at.metric]]
        # a token's own text may be "NaN" (the tiny tokenizer has one): quoted tokens are
        # text, not numbers (token chips are st.html, not read here)
        shown = [re.sub(r"“[^”]*”", "", str(text)) for text in shown]
        assert not [text for text in shown if NUMBERS.search(text)]


def slider_values(slider) -> list:
    """A few positions of a slider: its ends, its middle, and one step from each end."""
    low, high, step = slider.min, slider.max, slider.step
    values = {low, high, low + step, high - step, low + (high - low) / 2}
    kind = type(slider.value)
    return sorted(kind(round(v / step) * step) if kind is int else round(v, 6)
                  for v in values if low <= v <= high)


class SlidingLearner(Learner):
    """The same learner on a model whose every layer keeps a sliding window of 16 positions
    (Mistral's): Chapter 1's KV cache can't be cropped, so edits and branches read the text
    afresh; Chapter 3 keeps its own cache of every position."""
    MODEL = "mistral"


def walk_settings(walks: int):
    return settings(
        max_examples=walks, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=list(HealthCheck), print_blob=True,
        # CI walks the same walks every run (a gate that fails on luck teaches nothing); a
        # search elsewhere draws new ones (WALKS=2000 STEPS=40 finds what CI's can't)
        derandomize=os.environ.get("CI") == "true",
        phases=[p for p in Phase if os.environ.get("SHRINK", "1") == "1" or p != Phase.shrink])


Learner.TestCase.settings = walk_settings(WALKS)
SlidingLearner.TestCase.settings = walk_settings(max(WALKS // 5, 1))
TestWalks = Learner.TestCase
TestWalksOnASlidingWindowModel = SlidingLearner.TestCase


def test_report_the_walks():
    """(Runs after the walks:) how many actions they took, for the log."""
    print(f"\n{len(STEPS_TAKEN):,} learner actions in {WALKS} walks of up to {STEPS} steps:",
          ", ".join(f"{rule} {n}" for rule, n in Counter(STEPS_TAKEN).most_common()))
    print("seconds per rule:", ", ".join(f"{rule} {seconds:.1f}"
                                         for rule, seconds in SECONDS.most_common()))
