"""Chapter 1 end to end: the chapter function, and the page's view of the learner's choices.

`generate()` is the whole chapter in one function: the five lessons in order. The page runs the
same lessons one step at a time, driven by the learner: `view()` derives everything the page
shows from the choices in st.session_state, running the model only when the ids change. Each
lesson call the page makes is traced (token_by_token.trace), so the page can show the values
beside the code; the model's calls are traced when the forward runs and kept with it.
"""

import copy
import time
import weakref
from dataclasses import dataclass, replace
from functools import cached_property

import streamlit as st
import torch
from transformers import DynamicCache

from chapter1 import ahead
from chapter1.autoregression import branch, hand_back, step
from chapter1.filters import Watched, probabilities, warpers
from chapter1.logits import Candidates, logits
from chapter1.proof import PROOF, prove
from chapter1.sampling import entropy, random_stream, sample, surprisal
from token_by_token import kvcache, progress
from token_by_token.locks import FORWARD_LOCK, on_the_torch_thread
from token_by_token.memo import Memo, Slot, memo_of
from token_by_token.sequence import sequence, tokenize
from token_by_token.state import DEFAULT_TEXT
from token_by_token.trace import Trace, traced


def generate(tokenizer, model, text, n_tokens,
             temperature, top_k, top_p, min_p, generator=None):
    """Chapter 1 in one function: the five sections, in order."""
    ids = tokenize(tokenizer, text)                      # 1. text -> ids
    cache = DynamicCache(config=model.config)
    last = logits(model, ids, cache)[-1]                 # 2. ids -> logits
    chain = warpers(temperature, top_k, top_p, min_p)
    for _ in range(n_tokens):
        probs = probabilities(last, chain)               # 3. -> probabilities
        next_id = sample(probs, generator)               # 4. -> next id
        ids, last = step(model, cache, ids, next_id)     # 5. append, again
    return ids


@dataclass(frozen=True)
class Forward:
    """What the model computed for one learner's ids (kept in that learner's session)."""
    ids: tuple[int, ...]
    cache: DynamicCache       # keys and values of every position, for the next step
    candidates: Candidates    # the top candidates at every position
    first: torch.Tensor       # logits[0]
    last: torch.Tensor        # logits[-1]: what the next token is chosen from
    prefill: Trace            # the last logits() call that read the text (chunk by chunk)
    chunks: int               # how many logits() calls read it
    step: Trace | None = None  # the step() (or branch()) that made this forward, if one did
    cut: tuple[int, ...] = ()  # a branch: the ids it cut away
    reused: int = 0           # positions whose KV cache was kept from the last forward
    seconds: float = 0.0      # how long the forward that produced this took
    shared: bool = False      # a copy of the opening text's forward (see OPENINGS)
    ahead: bool = False       # a step taken while the learner read the page (chapter1/ahead.py)

    @property
    def vocab(self) -> int:
        return self.last.shape[-1]

    @cached_property
    def original(self) -> torch.Tensor:
        """The model's own probabilities for the next token (softmax at temperature 1, no
        filter), and their entropy below: once per forward, not at every slider move."""
        return torch.softmax(self.last, dim=-1)

    @cached_property
    def original_bits(self) -> float:
        return float(entropy(self.original))

    @property
    def stepped(self) -> bool:
        """True: one cached step for one appended id; False: the whole sequence was read."""
        return self.step is not None


PREFILL_CHUNK = 64  # positions per forward when reading a whole text
FORWARD: Slot[Forward] = Slot("chapter1.forward")


# The forward of the text every learner's page opens with, per loaded model: made by the first
# learner who opens it, copied (logits and KV cache) to each learner after. A class opening the
# page at once runs one forward, not one each behind FORWARD_LOCK. Only that text: a learner's
# own text is never shared (how fast it came back would tell that someone else had typed it).
OPENINGS: "weakref.WeakKeyDictionary[object, Forward]" = weakref.WeakKeyDictionary()


def advance(model, ids: list[int], memo: Memo, end_ids=(), opening: bool = False) -> Forward:
    """This learner's forward for `ids`, from the one their session keeps (`before`):

    - the same ids: `before` itself;
    - `before`'s ids and one more (Generate, Play): one cached step, the Section 5 lesson,
      run in the process's long-lived torch thread (token_by_token/locks.py), or taken
      while the learner read the page before, if it was for that id (chapter1/ahead.py);
    - any other ids (an edited, shortened or new text): read anew. The KV cache of the
      positions they share with `before` is kept when it can be cut back: they share at
      least one position before the last one, and no layer of the cache is a sliding window
      (such a layer has forgotten its earliest positions: `DynamicCache.crop` can't restore
      them). The last shared position is read again too, so every row of logits the page
      keeps follows the ids it now has. Otherwise the whole sequence is read from scratch.
    - the opening text (`opening`: the default text, nothing generated, no chat template)
      read from scratch: a copy of the forward the first learner made of it (OPENINGS).

    A branch ("Continue from here") is never inferred from the ids: it is the learner's
    action, and its callback (`take_branch`) leaves the branched forward here already.

    A long text is read 64 positions at a time through the KV cache (chunked prefill): the
    same logits as one forward, without a [1,024 × vocabulary] table in memory at once
    (peak RSS at 1,024 tokens on the Qwen3-0.6B shape: 2.39 GB; 2.55 GB with 128)."""
    key, asked = tuple(ids), time.perf_counter()
    if (same := memo.get(FORWARD, key)) is not None:
        return same
    with FORWARD_LOCK:
        if (same := memo.get(FORWARD, key)) is not None:  # made while this one waited
            return same
        before = memo.latest(FORWARD)
        memo.put(FORWARD, None, None)  # a failed forward must not leave a stale cache behind
        kvcache.keep(memo, None, None)
        start = time.perf_counter()
        taken = ahead.take(memo, key, asked)  # the step run while the learner read, if this
        if before is not None and before.ids == key[:-1]:  # one id appended: one step
            forward = taken if taken is not None else one_step(model, before, ids[-1], end_ids)
        elif (keep := kept_positions(before, key)) > 0:  # a shared prefix: crop, read the rest
            before.cache.crop(keep - len(before.ids))
            forward = prefill(model, ids, end_ids, before.cache, keep)
            forward = replace(forward, first=before.first, reused=keep,
                              candidates=before.candidates.first(keep).then(forward.candidates))
        elif opening and (made := OPENINGS.get(model)) is not None and made.ids == key:
            forward = replace(copy.deepcopy(made), shared=True)  # its own cache to step on
        else:
            forward = prefill(model, ids, end_ids)
        if not (forward.shared or forward.ahead):
            forward = replace(forward, seconds=time.perf_counter() - start)
        if opening and not forward.shared and not forward.reused:  # read from scratch
            OPENINGS[model] = copy.deepcopy(forward)  # kept as made, never handed out
        kvcache.keep(memo, key, forward.cache)
        if forward.stepped:  # the learner is generating: the next step may be taken ahead
            ahead.want(memo, key)
        return memo.put(FORWARD, key, forward)


def one_step(model, before: Forward, next_id: int, end_ids=()) -> Forward:
    """`before` and one more id: one cached step (the Section 5 lesson), in the process's
    long-lived torch thread (token_by_token/locks.py). The caller holds FORWARD_LOCK."""
    (_, last), trace = on_the_torch_thread(traced, step, model, before.cache,
                                           list(before.ids), next_id)
    seen = before.candidates.followed_by(next_id, before.last)
    return replace(before, ids=(*before.ids, next_id), last=last, step=trace, cut=(),
                   reused=0, candidates=seen.then(Candidates.of(last[None], end_ids=end_ids)),
                   shared=False, ahead=False)


def step_ahead(loaded, view: "View") -> None:
    """Once the page a step drew is on screen: the step the next Generate click will take
    (the id Section 4 shows as sampled), run in the background (chapter1/ahead.py); none
    when the text ended, Generate is off, or the cache's layers can't be shared."""
    drop_stale_step(view)
    if not ahead.wanted(view.memo, view.ids) or view.stop is not None \
            or not view.autoregressive or not kvcache.shareable(view.forward.cache):
        return
    before, next_id = view.forward, view.next_id
    ahead.launch(view.memo, (*view.ids, next_id), lambda: one_step(
        loaded.model, replace(before, cache=kvcache.sharing(before.cache)), next_id,
        loaded.eos_ids))


def kept_positions(before: Forward | None, ids: tuple[int, ...]) -> int:
    """How many positions of `before`'s KV cache a forward of `ids` can keep (see advance)."""
    if before is None or not kvcache.croppable(before.cache):
        return 0
    shared = 0
    for mine, theirs in zip(before.ids, ids, strict=False):
        if mine != theirs:
            break
        shared += 1
    return max(min(shared, len(ids)) - 1, 0)


def drop_stale_step(view: "View") -> None:
    """A step taken ahead for an id the page no longer samples (a slider, the seed) is let
    go at once: its memory is a KV cache of one more position."""
    if (taken := ahead.taken_ahead(view.memo)) is not None and taken != (*view.ids,
                                                                          view.next_id):
        ahead.drop(view.memo)


def take_branch(loaded) -> None:
    """on_click of "Continue from here" (Section 5's Branch): cut the generated ids after the
    step `branch_step` and take the token `branch_token` there instead. The KV cache is
    cropped and one step runs (the `branch` lesson); a cache that can't be cropped is read
    anew. The forward is left in the learner's memo, so the page finds it for the new ids."""
    state = st.session_state.to_dict()  # one snapshot (see generate_next)
    at_step, new_id = state.get("branch_step"), state.get("branch_token")
    generated = st.session_state["generated"]
    if at_step is None or new_id is None or not 1 <= at_step <= len(generated):
        return
    with memo_of(state).lock:
        memo = memo_of(state).for_model(loaded.model_id)
        seq = sequence(loaded, state)
        at = len(seq.ids) - len(generated) + at_step - 1  # the position of the branched token
        ids = [*seq.ids[:at], int(new_id)]
        before = memo.latest(FORWARD)
        if before is not None and before.ids == tuple(seq.ids):
            with FORWARD_LOCK:
                memo.put(FORWARD, None, None)
                kvcache.keep(memo, None, None)
                ahead.drop(memo)  # a step taken ahead for the ids cut away
                start = time.perf_counter()
                if kvcache.croppable(before.cache):
                    (_, last), trace = on_the_torch_thread(
                        traced, branch, loaded.model, before.cache, list(before.ids), at,
                        int(new_id))
                    kept = before.candidates.cut(at, int(new_id))
                    forward = replace(before, ids=tuple(ids), last=last, step=trace, reused=0,
                                      candidates=kept.then(Candidates.of(
                                          last[None], end_ids=loaded.eos_ids)), shared=False,
                                      ahead=False)
                else:  # a sliding window can't be cut back: read the branched ids anew
                    forward = prefill(loaded.model, ids, loaded.eos_ids)
                forward = replace(forward, cut=before.ids[at:],
                                  seconds=time.perf_counter() - start)
                kvcache.keep(memo, ids, forward.cache)
                if forward.stepped:
                    ahead.want(memo, ids)
                memo.put(FORWARD, tuple(ids), forward)
        generated[at_step - 1:] = [int(new_id)]


def prefill(model, ids: list[int], end_ids=(), cache=None, start: int = 0) -> Forward:
    """Read ids[start:] into the KV cache (a new one, or `cache` holding ids[:start]),
    PREFILL_CHUNK positions per call."""
    cache = DynamicCache(config=model.config) if cache is None else cache
    parts = []
    for chunk in range(start, len(ids), PREFILL_CHUNK):
        if len(ids) - start > PREFILL_CHUNK:  # more than one call: the page shows how far
            progress.report(chunk - start, len(ids) - start, "Reading your text, tokens")
        rows, trace = traced(logits, model, ids[chunk: chunk + PREFILL_CHUNK], cache)
        if chunk == start:
            first = rows[0].clone()
        last = rows[-1].clone()
        parts.append(Candidates.of(rows, ids[chunk + 1: chunk + 1 + len(rows)], end_ids))
        del rows
    candidates = parts[0]
    for part in parts[1:]:
        candidates = candidates.then(part)
    return Forward(tuple(ids), cache, candidates, first, last, trace, len(parts))


CHOICES = ("text", "generated", "temperature", "top_k", "top_p", "min_p", "seed", "resamples",
           "autoregressive", "previous_ids", "chat", "thinking")
SETTINGS = ("temperature", "top_k", "top_p", "min_p", "seed", "resamples", "chat", "thinking")


class View:
    """Everything Chapter 1 shows, derived from the learner's choices: what every section's
    render(loaded, view) reads. What needs the model is computed when a section first reads
    it, once per view: Section 1 is drawn before the model runs."""

    def __init__(self, loaded, choices: dict, memo: Memo):
        self.loaded, self.choices, self.memo = loaded, choices, memo
        self.sequence = sequence(loaded, choices)
        self.text, self.seed = choices["text"], choices["seed"]
        self.generated = list(choices["generated"])
        self.resamples, self.autoregressive = choices["resamples"], choices["autoregressive"]
        self.previous_ids = list(choices["previous_ids"])
        self.settings = {key: choices[key] for key in SETTINGS}  # what a download records

    @property
    def ids(self) -> list[int]:
        return self.sequence.ids

    @property
    def stop(self) -> str | None:
        return self.sequence.stop

    @cached_property
    def forward(self) -> Forward:
        """The model's forward of the ids (it runs here, when the ids changed)."""
        opening = (self.text == DEFAULT_TEXT and not self.generated
                   and not self.choices["chat"])
        return advance(self.loaded.model, self.ids, self.memo, self.loaded.eos_ids, opening)

    @cached_property
    def sampled(self) -> tuple:
        """The filters, the probabilities and the sample, each lesson call traced."""
        c = self.choices
        chain, warpers_trace = traced(warpers, c["temperature"], c["top_k"], c["top_p"],
                                      c["min_p"])
        chain = [Watched(w) for w in chain]
        probs, probs_trace = traced(probabilities, self.forward.last, chain)
        generator, stream_trace = traced(random_stream, c["seed"], len(self.ids),
                                         c["resamples"])
        next_id, sample_trace = traced(sample, probs, generator)
        bits, entropy_trace = traced(entropy, probs)
        traces = {"warpers": warpers_trace, "probabilities": probs_trace,
                  "random_stream": stream_trace, "sample": sample_trace,
                  "entropy": entropy_trace,
                  "surprisal": traced(surprisal, float(probs[next_id]))[1]}
        return chain, probs, next_id, traces, float(bits)

    @property
    def chain(self) -> list:
        return self.sampled[0]  # the warpers, watched: what each one kept

    @property
    def probs(self) -> torch.Tensor:
        return self.sampled[1]

    @property
    def next_id(self) -> int:
        return self.sampled[2]

    @property
    def bits(self) -> float:
        """The entropy of the probabilities after the filters (its traced lesson's value)."""
        return self.sampled[4]

    @property
    def proof(self):
        """The proof against generate() for these ids, if the learner asked for it."""
        return self.memo.get(PROOF, (tuple(self.ids), self.choices["top_k"] == 1))

    def take_branch(self) -> None:
        """on_click of Section 5's "Continue from here" (reads the choices at the click)."""
        take_branch(self.loaded)

    def prove(self) -> None:
        """on_click of Section 5's proof button: generate() along these ids, kept."""
        first = len(self.ids) - len(self.generated)
        greedy = self.choices["top_k"] == 1
        with self.memo.lock:
            self.memo.put(PROOF, (tuple(self.ids), greedy), prove(
                self.loaded.model, list(self.ids), first, self.forward.candidates, greedy))

    def trace(self, function) -> Trace | object:
        """The traced call of a lesson function on this page, or the function itself if the
        page did not call it (token_by_token.sections.lesson shows either)."""
        name = function.__name__
        if name == "tokenize":
            return self.sequence.tokenize
        if name in ("logits", "step"):
            found = self.forward.prefill if name == "logits" else self.forward.step
            return function if found is None else found
        return self.sampled[3].get(name, function)


VIEW: Slot[View] = Slot("chapter1.view")


def view(loaded, state) -> View:
    """Everything the page shows, from the learner's choices in `state` (a mapping)."""
    memo = memo_of(state).for_model(loaded.model_id)
    choices = {key: list(v) if isinstance(v := state.get(key), list) else v for key in CHOICES}
    key = tuple(tuple(v) if isinstance(v, list) else v for v in choices.values())
    if (same := memo.get(VIEW, key)) is not None:
        return same
    return memo.put(VIEW, key, View(loaded, choices, memo))


def generate_next(loaded) -> None:
    """on_click of "Generate next token": append the token the page shows as sampled.

    Reading and writing st.session_state item by item lets Streamlit interrupt this callback
    when the learner clicks again, losing a click. So: one snapshot (to_dict doesn't yield),
    and an in-place append to the learner's list.

    The step runs here too, before the page draws anything: drawn first, Section 1's token
    chips kept the browser busy on the cores the step needed (the page's own step at 500
    tokens: 0.139 s against a bare step of 0.071 s, Qwen3-0.6B shape, 2 cores)."""
    state = st.session_state.to_dict()
    append_next(loaded, state)
    view(loaded, state).forward  # noqa: B018  (kept in the learner's memo for the page)


def append_next(loaded, state) -> None:
    """Append the sampled next id to state["generated"] (in place). Two clicks' callbacks can
    run at once (Streamlit starts a new run before the last one has stopped): the lock makes
    the second wait and sample from the sequence the first one made."""
    with memo_of(state).lock:
        current = view(loaded, state)
        if current.stop is None:
            state["generated"].append(current.next_id)


def play(loaded, state, tokens: int, show) -> int:
    """Generate up to `tokens` ids, one cached step each, exactly as that many Generate clicks
    would; `show(view)` after each one (the page streams them). Stops early at end-of-text
    or the context cap. Returns how many were appended. Each id goes into the learner's list
    as soon as it is drawn: a Stop (a rerun that interrupts this run) keeps them all."""
    appended = 0
    for _ in range(tokens):
        if sequence(loaded, state).stop is not None:
            break
        append_next(loaded, state)
        appended += 1
        show(view(loaded, state))  # the next token's forward runs here
    return appended


def autoregression_toggled(loaded) -> None:
    """on_change of the toggle. Turning it off hands the generated text back to the text box:
    the learner can edit it, and the page compares its new ids with the generated ones (and
    says what the text box could not hold: Section 5)."""
    state = st.session_state
    if state["autoregressive"] or not state["generated"]:
        return
    ids = sequence(loaded, state).ids
    state["previous_ids"] = ids
    state["text"] = hand_back(loaded.tokenizer, ids).text
    state["generated"] = []
    state["chat"] = False  # the text now holds the whole conversation, template included
