"""Chapter 1 end to end: the chapter function, and the page's view of the learner's choices.

`generate()` is the whole chapter in one function: the five lessons in order. The page runs the
same lessons one step at a time, driven by the learner: `view()` derives everything the page
shows from the choices in st.session_state, running the model only when the ids change.
"""

import time
from dataclasses import dataclass

import streamlit as st
import torch
from transformers import DynamicCache

from chapter1.autoregression import step
from chapter1.filters import Watched, probabilities, warpers
from chapter1.logits import logits
from chapter1.sampling import random_stream, sample
from chapter1.tokenizer import tokenize
from token_by_token.model import FORWARD_LOCK
from token_by_token.state import Memo

TOP = 10  # candidates kept per position for the heatmap


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
    top_ids: torch.Tensor     # [positions, TOP] best candidates at each position
    top_logits: torch.Tensor  # [positions, TOP]
    top_probs: torch.Tensor   # [positions, TOP] softmax at temperature 1
    first: torch.Tensor       # logits[0]
    last: torch.Tensor        # logits[-1]: what the next token is chosen from
    seconds: float            # how long the forward that produced this took
    stepped: bool             # True: one cached step; False: the whole sequence

    @property
    def vocab(self) -> int:
        return self.last.shape[-1]

    @property
    def tensors(self) -> list[torch.Tensor]:
        """Every tensor this learner's session holds: summaries, two rows, the KV cache."""
        return [self.top_ids, self.top_logits, self.top_probs, self.first, self.last,
                *(t for layer in self.cache.layers for t in (layer.keys, layer.values))]


def summarize(rows: torch.Tensor):
    """The top candidates of each row with their probabilities (softmax at temperature 1),
    without a second [positions, vocab] tensor: log-sum-exp taken 64 rows at a time."""
    top = rows.topk(min(TOP, rows.shape[-1]), dim=-1)
    log_total = torch.cat([torch.logsumexp(chunk, dim=-1) for chunk in rows.split(64)])
    return top.indices, top.values, torch.exp(top.values - log_total[:, None])


PREFILL_CHUNK = 64  # positions per forward when reading a whole text


def advance(model, ids: list[int], memo: Memo) -> Forward:
    """This learner's forward for `ids`: reused when the ids are unchanged, one cached step
    (the Section 5 lesson) when one id was appended, else the whole sequence from scratch.

    A long text is read 64 positions at a time through the KV cache (chunked prefill): the
    same logits as one forward, without a [1,024 × vocabulary] table in memory at once
    (peak RSS at 1,024 tokens on the Qwen3-0.6B shape: 2.39 GB; 2.55 GB with 128)."""
    before = memo.forward
    if before is not None and before.ids == tuple(ids):
        return before
    memo.forward = None  # a failed forward must not leave a stale cache behind
    stepped = before is not None and before.ids == tuple(ids[:-1])
    summaries = []
    with FORWARD_LOCK:
        start = time.perf_counter()
        if stepped:
            cache, first = before.cache, before.first
            _, last = step(model, cache, list(before.ids), ids[-1])
            summaries.append(summarize(last[None]))
        else:
            cache = DynamicCache(config=model.config)
            for chunk in range(0, len(ids), PREFILL_CHUNK):
                rows = logits(model, ids[chunk: chunk + PREFILL_CHUNK], cache)
                first = rows[0] if chunk == 0 else first
                last = rows[-1]
                summaries.append(summarize(rows))
                del rows
        seconds = time.perf_counter() - start
    old = [(before.top_ids, before.top_logits, before.top_probs)] if stepped else []
    top_ids, top_logits, top_probs = (
        torch.cat(parts) for parts in zip(*old, *summaries, strict=True))
    memo.forward = Forward(tuple(ids), cache, top_ids, top_logits, top_probs, first.clone(),
                           last.clone(), seconds, stepped)
    return memo.forward


@dataclass(frozen=True)
class Sequence:
    """The ids the model reads, from the text and the generated ids: no forward needed."""
    text_ids: list[int]   # the text's ids (capped)
    cut: int              # how many of the text's tokens the cap left out
    ids: list[int]        # text ids + generated ids: the sequence the model reads
    stop: str | None      # why generation can't go on: "empty", "eos", "cap" or None


def sequence(loaded, state) -> Sequence:
    """The learner's token sequence, and whether generation may go on (cheap: no forward)."""
    memo = state["_memo"]
    key = (loaded.model_id, state["text"], tuple(state["generated"]))
    if memo.sequence is not None and memo.sequence[0] == key:
        return memo.sequence[1]
    text_ids = tokenize(loaded.tokenizer, state["text"])
    cut = max(len(text_ids) - loaded.max_tokens, 0)
    text_ids = text_ids[: loaded.max_tokens]
    ids = (text_ids + list(state["generated"]))[: loaded.max_tokens]
    stop = None
    if not ids:
        stop = "empty"
    elif state["generated"] and state["generated"][-1] in loaded.eos_ids:
        stop = "eos"
    elif len(ids) >= loaded.max_tokens:
        stop = "cap"
    memo.sequence = (key, Sequence(text_ids, cut, ids, stop))
    return memo.sequence[1]


@dataclass(frozen=True)
class View:
    """Everything Chapter 1 shows, derived from the learner's choices."""
    text_ids: list[int]   # the text's ids (capped)
    cut: int              # how many of the text's tokens the cap left out
    ids: list[int]        # text ids + generated ids: the sequence the model reads
    forward: Forward | None
    chain: list           # the warpers, watched: each knows which tokens it kept
    probs: torch.Tensor | None
    next_id: int | None
    stop: str | None      # why generation can't go on: "empty", "eos", "cap" or None


CHOICES = ("text", "generated", "temperature", "top_k", "top_p", "min_p", "seed", "resamples")


def view(loaded, state) -> View:
    """Everything the page shows, from the learner's choices in `state` (a mapping)."""
    memo = state["_memo"]
    if memo.model_id != loaded.model_id:  # another model was loaded: nothing carries over
        memo.model_id, memo.forward, memo.view = loaded.model_id, None, None
    key = tuple(tuple(v) if isinstance(v, list) else v for v in map(state.get, CHOICES))
    if memo.view is not None and memo.view[0] == key:
        return memo.view[1]
    seq = sequence(loaded, state)
    chain = [Watched(w) for w in warpers(state["temperature"], state["top_k"], state["top_p"],
                                         state["min_p"])]
    if not seq.ids:
        return View(seq.text_ids, seq.cut, seq.ids, None, chain, None, None, seq.stop)
    forward = advance(loaded.model, seq.ids, memo)
    probs = probabilities(forward.last, chain)
    next_id = sample(probs, random_stream(state["seed"], len(seq.ids), state["resamples"]))
    memo.view = (key, View(seq.text_ids, seq.cut, seq.ids, forward, chain, probs, next_id,
                           seq.stop))
    return memo.view[1]


def generate_next(loaded) -> None:
    """on_click of "Generate next token": append the token the page shows as sampled.

    Reading and writing st.session_state item by item lets Streamlit interrupt this callback
    when the learner clicks again, losing a click. So: one snapshot (to_dict doesn't yield),
    and an in-place append to the learner's list."""
    append_next(loaded, st.session_state.to_dict())


def append_next(loaded, state) -> None:
    """Append the sampled next id to state["generated"] (in place). Two clicks' callbacks can
    run at once (Streamlit starts a new run before the last one has stopped): the lock makes
    the second wait and sample from the sequence the first one made."""
    with state["_memo"].lock:
        current = view(loaded, state)
        if current.stop is None:
            state["generated"].append(current.next_id)


def resample() -> None:
    """on_click of "Resample": the next draw from the same probabilities."""
    st.session_state["resamples"] += 1


def autoregression_toggled(loaded) -> None:
    """on_change of the toggle. Turning it off hands the generated text back to the text box:
    the learner can edit it, and the page compares its new ids with the generated ones."""
    state = st.session_state
    if state["autoregressive"] or not state["generated"]:
        return
    ids = view(loaded, st.session_state).ids
    state["previous_ids"] = ids
    state["text"] = loaded.tokenizer.decode(ids)
    state["generated"] = []
