"""Section 2 — Batching: many sequences for the price of one.

A decode step reads every weight for one token's vector. Give it B vectors at once (one token
of each of B sequences) and the weights are still read once: until the arithmetic catches up
with the reading, B tokens cost about what one does. Measured here for B = 1 to 16.
"""

import copy
import time
from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch
from transformers import DynamicCache

from chapter3.measure import BUDGET, Measured, fastest, forget, measured, next_time
from chapter3.roofline import bytes_per_token, decode_point, kv_bytes_per_position
from chapter3.view import View, duration, size
from token_by_token import charts
from token_by_token.sections import lesson
from token_by_token.tokens import counted
from token_by_token.trace import traced

TITLE = "Batching — many sequences for the price of one"
READS = frozenset({"batch_length"})

BATCHES = (1, 2, 4, 8, 16)
CONTEXT = 64  # positions of the learner's text each sequence of the batch has read


def decode_batch(model, cache, next_ids):
    """One decode step for B sequences at once, one new token each.

    The cache holds the keys and values of every sequence (batch
    first); each weight is read once and multiplies B vectors.
    """
    with torch.inference_mode():
        tokens = torch.tensor(next_ids)[:, None]  # [B, 1]
        return model(tokens, cache=cache).logits[:, -1]  # [B, vocab]


def tokens_per_second(batch, seconds):
    """What a server cares about: tokens made per second, all
    sequences together; a step makes one token per sequence."""
    return batch / seconds


def sequences_that_fit(memory, model, length):
    """How many sequences of `length` tokens fit in `memory` bytes.

    The weights are stored once, for every sequence; each sequence
    keeps its own KV cache, which grows with its length.
    """
    free = memory - bytes_per_token(model)
    return max(free // (length * kv_bytes_per_position(model)), 0)


# --- what the page measures and computes (not lessons) -----------------------------------

def time_batches(model, ids) -> tuple[tuple[int, float], ...]:
    """Seconds of one decode step for each batch size: `ids` read once (prefill), the KV
    cache copied for B sequences, then one step in which sequence i appends token id i (the
    cache cropped back after each try). Stops before a size whose predicted time would pass
    the budget. (The time depends on B and the length, not on which tokens: the page says it
    was measured once per length in this process.)"""
    next_ids = list(range(max(BATCHES)))
    cache = DynamicCache(config=model.config)
    model(torch.tensor([ids]), cache=cache)
    times, spent = [], 0.0
    for b in BATCHES:
        if times and spent + 3 * next_time(times, b) > BUDGET:
            break  # (a warm-up and a try or two)
        start = time.perf_counter()
        batch = copy.deepcopy(cache)
        batch.batch_repeat_interleave(b)

        def step(batch=batch, b=b):
            decode_batch(model, batch, next_ids[:b])
            batch.crop(-1)
        times.append((b, fastest(step, tries=3, budget=0.25)))
        spent += time.perf_counter() - start
    return tuple(times)


@dataclass(frozen=True)
class Batching:
    steps: Measured           # ((B, seconds), ...)
    context: int              # positions each sequence had read
    length: int               # the learner's length for the memory question
    fits: int                 # sequences of that length that fit in this machine's memory


def prepare(loaded, base, state, memo) -> View:
    model, ids = loaded.model, list(base.ids)
    context = ids[-CONTEXT:]
    steps = measured(("batch", base.model_id, len(context)),
                     lambda: time_batches(model, context))
    length = min(max(int(state["batch_length"]), 1), loaded.max_tokens)
    fits, trace = traced(sequences_that_fit, base.machine.memory, model, length)
    b, seconds = steps.value[-1]
    traces = {"sequences_that_fit": trace,
              "tokens_per_second": traced(tokens_per_second, b, seconds)[1]}
    return View(base, Batching(steps, len(context), length, fits), traces)


def again(model_id: str) -> None:
    """on_click of "Measure again"."""
    forget("batch", model_id)


def render(loaded, view) -> str:
    part: Batching = view.part
    model = loaded.model
    steps = part.steps.value
    one = steps[0][1]
    st.markdown(
        "A server rarely serves one person. If B people are each waiting for their next "
        "token, their B steps can run as one forward: a **batch**. The model's input is then "
        "B tokens, one per sequence, each with its own KV cache; every weight is read once "
        "and multiplied with B vectors instead of one. Section 1 showed that a step mostly "
        "waits for the weights to arrive, so B vectors cost little more than one, until the "
        "arithmetic, which grows with B, catches up with the reading."
    )
    lesson(decode_batch, view.trace(tokens_per_second))
    st.markdown(
        f"Measured on this machine for sequences as long as yours (up to {CONTEXT}): a text of "
        f"{counted(part.context, 'token')} read once, its KV cache copied for B sequences, "
        f"then one step in which each sequence appends a token and attends to "
        f"{part.context + 1:,} positions. The time depends on B and the length, not on which "
        "tokens: it is measured once per length in this server process."
    )
    rows = []
    for b, seconds in steps:
        point = decode_point(model, part.context + 1, seconds, batch=b)
        rows.append({"batch size B": b, "ms per step": seconds * 1000,
                     "tokens/s": tokens_per_second(b, seconds),
                     "tokens/s if a step of B cost B steps of 1": tokens_per_second(1, one),
                     "× the tokens/s of B = 1": one * b / seconds,
                     "FLOPs per byte": point.intensity})
    data = pd.DataFrame(rows)
    st.vega_lite_chart(data, charts.fast_spec(charts.batching, data), width="stretch")
    st.dataframe(data, hide_index=True)
    b, last = steps[-1]
    if b == 1:
        st.markdown(
            f"Only one sequence could be measured here ({duration(one)} a step): a batch of 2 "
            f"would have passed the {BUDGET:g} s a measurement may take on this machine now. "
            "Press Measure again when it is less busy."
        )
    else:
        st.markdown(
            f"One step for one sequence took **{duration(one)}**; for {b} sequences "
            f"**{duration(last)}**: {b} tokens in {last / one:,.2f}× the time, "
            f"**{one * b / last:,.1f}× the tokens per second**. The intensity grows with B "
            "(FLOPs per byte in the table): batching walks a decode step along the roofline "
            "of section 1, towards its compute roof."
        )
        if len(steps) < len(BATCHES):
            st.caption(f"Batches over {b} were not measured: they would pass the "
                       f"{BUDGET:g} s a measurement may take on this machine now.")
        st.markdown(
            "This app does not batch: its forwards run one at a time (one lock in the "
            f"process). When {b} learners press Generate together, the last waits for {b} "
            f"steps, about {duration(b * one)} here; a server that batched them would answer "
            f"all {b} in about {duration(last)}. Serving systems such as vLLM go further: a "
            "sequence joins the batch as soon as it arrives and leaves it when it ends "
            "(**continuous batching**), so the batch stays full."
        )
    st.subheader("What caps the batch: the KV cache")
    st.slider("Tokens per sequence", 1, loaded.max_tokens, key="batch_length",
              help="The length of every sequence, for the memory sum below.")
    lesson(view.trace(sequences_that_fit))
    per = part.length * kv_bytes_per_position(model)
    memory = view.base.machine.memory
    st.markdown(
        f"Each sequence of {counted(part.length, 'token')} keeps a KV cache of "
        f"**{size(per)}** ({kv_bytes_per_position(model):,} bytes per position, "
        f"section 1). This machine has {size(memory)} of memory: beside the "
        f"{size(bytes_per_token(model))} of weights, at most **{part.fits:,} such "
        "sequences** fit, with nothing left for anything else. The weights are shared by "
        "every sequence; the caches are not, and they decide how large a batch can be "
        "(section 6 packs them tighter)."
    )
    st.caption(f"Steps {part.steps.stamp()}; {view.base.machine.describe()}.")
    st.button("Measure again", key="batching_again", on_click=again,
              args=(view.base.model_id,),
              help="Forget these step times and measure them again (a few seconds).")
    if b == 1:
        return ("A batch shares one reading of the weights among its sequences (not measured "
                "here this time); the KV caches, one per sequence, cap the batch.")
    return (f"A batch of {b} took {last / one:,.2f}× the time of one sequence's step: "
            f"{one * b / last:,.1f}× the tokens per second, because the weights are read "
            "once per step. The KV caches, one per sequence, cap the batch.")
