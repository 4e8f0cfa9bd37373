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

from chapter3 import paged, roofline
from chapter3.measure import (
    BUDGET,
    Measured,
    cost,
    duration,
    fastest,
    forget,
    measured,
    next_time,
    size,
)
from chapter3.roofline import bytes_per_token, decode_point, kv_bytes_per_position
from token_by_token import charts, controls, kvcache
from token_by_token.sections import lesson, number, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted
from token_by_token.trace import traced

TITLE = "Batching — many sequences for the price of one"
READS = IDS | {"batch_length", "batching_again"}
WIDGETS = {"batch_length", "batching_again"}

BATCHES = (1, 2, 4, 8, 16)
CONTEXT = 64  # positions each sequence of the batch has read (a text, repeated if shorter)


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


LESSONS = [decode_batch, tokens_per_second, sequences_that_fit]


# --- what the page measures and computes (not lessons) -----------------------------------

STEP_TRIES, STEP_BUDGET = 2, 0.05  # fastest()'s tries and budget for each batch size


def time_batches(model, ids) -> tuple[tuple[tuple[int, float], ...], object]:
    """Seconds of one decode step for each batch size, and decode_batch() traced on the
    largest: `ids` read once (prefill), the KV cache copied for B sequences, then one step in
    which sequence i appends token id i (the cache cropped back after each try). Stops before
    a size whose predicted time would pass the budget. (The time depends on B and the length,
    not on which tokens: the page says it was measured once per length in this process.)"""
    next_ids = list(range(max(BATCHES)))
    cache = kvcache.keeping_every_position()
    model(torch.tensor([ids]), cache=cache, logits_to_keep=1)
    times, spent, shown = [], 0.0, None
    for b in BATCHES:
        if times and spent + cost(next_time(times, b), STEP_TRIES, STEP_BUDGET) > BUDGET:
            break
        start = time.perf_counter()
        batch = copy.deepcopy(cache)
        batch.batch_repeat_interleave(b)
        traces = []

        def step(batch=batch, b=b, traces=traces):
            if traces:
                decode_batch(model, batch, next_ids[:b])
            else:  # the warm-up: traced, for the page (ids 0.., no learner's token)
                traces.append(traced(decode_batch, model, batch, next_ids[:b])[1])
            batch.crop(-1)
        times.append((b, fastest(step, tries=STEP_TRIES, budget=STEP_BUDGET)))
        shown = traces[0]
        spent += time.perf_counter() - start
    return tuple(times), shown


@dataclass(frozen=True)
class Batching:
    steps: Measured           # ((B, seconds), ...) and decode_batch() traced on the last B
    context: int              # positions each sequence had read
    length: int               # the learner's length for the memory question
    fits: int                 # sequences of that length that fit in this machine's memory
    weights: int              # bytes_per_token(model)
    kv: int                   # kv_bytes_per_position(model)
    table: pd.DataFrame       # per B: the step's time, tokens/s, intensity
    traces: dict

    @property
    def times(self) -> tuple[tuple[int, float], ...]:
        return self.steps.value[0]


def batching_of(model, model_id: str, ids: tuple[int, ...], length: int,
                memory: int) -> Batching:
    """The step times (measured once per process and context length) and the memory sum for
    sequences of `length` tokens in `memory` bytes."""
    context = (list(ids) * CONTEXT)[:CONTEXT]  # the time depends on the length only
    steps = measured(("batch", model_id, len(context)), lambda: time_batches(model, context))
    fits, trace = traced(sequences_that_fit, memory, model, length)
    b, seconds = steps.value[0][-1]
    traces = {"sequences_that_fit": trace, "decode_batch": steps.value[1],
              "tokens_per_second": traced(tokens_per_second, b, seconds)[1]}
    one, rows = steps.value[0][0][1], []
    for b, seconds in steps.value[0]:
        point = decode_point(model, len(context) + 1, seconds, batch=b)
        rows.append({"batch size B": b, "ms per step": seconds * 1000,
                     "tokens/s": tokens_per_second(b, seconds),
                     "tokens/s if a step of B cost B steps of 1": tokens_per_second(1, one),
                     "× the tokens/s of B = 1": one * b / seconds,
                     "FLOPs per byte": point.intensity})
    return Batching(steps, len(context), length, fits, bytes_per_token(model),
                    kv_bytes_per_position(model), pd.DataFrame(rows), traces)


def again(model_id: str) -> None:
    """on_click of "Measure again"."""
    forget("batch", model_id)


def render(loaded, view) -> str:
    part: Batching = view.batching
    steps = part.times
    one = steps[0][1]
    st.markdown(
        "A server rarely serves one person. If B people are each waiting for their next "
        "token, their B steps can run as one forward: a **batch**. The model's input is then "
        "B tokens, one per sequence, each with its own KV cache; every weight is read once "
        f"and multiplied with B vectors instead of one. Section {number(roofline)} showed that "
        "a step mostly waits for the weights to arrive, so B vectors cost little more than "
        "one, until the arithmetic, which grows with B, catches up with the reading."
    )
    lesson(view.trace(decode_batch), view.trace(tokens_per_second),
           note=f"decode_batch() traced on the batch of {steps[-1][0]} (its warm-up).")
    st.markdown(
        f"Measured on this machine for sequences of {CONTEXT} tokens: a text of that length "
        "read once, its KV cache copied for B sequences, then one step in which each sequence "
        f"appends a token and attends to {part.context + 1:,} positions. The time depends "
        "on B and the length, not on which tokens: it is measured once in this server "
        "process (on the first learner's text, repeated to that length)."
    )
    data = part.table
    st.vega_lite_chart(data, charts.fast_spec(charts.batching, data), width="stretch")
    small_table(data)
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
            f"of section {number(roofline)}, towards its compute roof."
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
    controls.batch_length_slider(loaded.max_tokens)
    lesson(view.trace(sequences_that_fit))
    per = part.length * part.kv
    ram = view.machine.memory
    st.markdown(
        f"Each sequence of {counted(part.length, 'token')} keeps a KV cache of "
        f"**{size(per)}** ({part.kv:,} bytes per position, section {number(roofline)}). "
        f"This machine has {size(ram)} of memory: beside the {size(part.weights)} of "
        f"weights, at most **{part.fits:,} such sequences** fit, with nothing left for "
        "anything else. The weights are shared by every sequence; the caches are not, and "
        f"they decide how large a batch can be (section {number(paged)} packs them tighter)."
    )
    st.caption(f"Steps {part.steps.stamp()}; {view.machine.describe()}.")
    controls.measure_again("batching_again", again, (loaded.model_id,),
                           help="Forget these step times and measure them again.")
    if b == 1:
        return ("A batch shares one reading of the weights among its sequences (not measured "
                "here this time); the KV caches, one per sequence, cap the batch.")
    return (f"A batch of {b} took {last / one:,.2f}× the time of one sequence's step: "
            f"{one * b / last:,.1f}× the tokens per second, because the weights are read "
            "once per step. The KV caches, one per sequence, cap the batch.")
