"""Section 1 — Prefill and decode: the roofline of this CPU.

What a forward must do (multiply-adds) and must read (bytes) is computed from the model; how
fast this machine reads memory and multiplies matrices is measured; the learner's own prefill
and decode step are timed and placed between the two limits.
"""

import math
import time
from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch
from transformers.pytorch_utils import Conv1D

from chapter3.facts import head_dim
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
from token_by_token import charts, controls
from token_by_token.kvcache import PREFILL_CHUNK
from token_by_token.locks import FORWARD_LOCK
from token_by_token.memo import Slot
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted
from token_by_token.trace import traced

TITLE = "Prefill and decode — the roofline of your CPU"
READS = IDS | {"roofline_again"}
WIDGETS = {"roofline_again"}


def bytes_per_token(model):
    """Bytes one decode step reads at the start of a generation.

    Every weight once, in its dtype: each matrix multiplies the new
    token's vector, so all of it comes from memory. A weight used twice
    (a tied output matrix is the embedding table) has one address:
    counted once.
    """
    unique = {p.data_ptr(): p for p in model.parameters()}  # by address
    return sum(w.numel() * w.element_size() for w in unique.values())


def kv_bytes_per_position(model):
    """Bytes the KV cache keeps per position: the key and the value
    (a number per key/value head × head_dim) of every layer, in the
    model's dtype."""
    c = model.config  # GPT-2 has no num_key_value_heads: one per head
    kv_heads = getattr(c, "num_key_value_heads", c.num_attention_heads)
    numbers = kv_heads * head_dim(model)  # one key
    return c.num_hidden_layers * 2 * numbers * model.dtype.itemsize


def decode_bytes(model, context):
    """What one decode step reads: every weight once, plus the keys and
    values of the `context` positions its token attends to."""
    return bytes_per_token(model) + context * kv_bytes_per_position(model)


def matrix_multiply_adds(model):
    """Multiply-adds of the matrices for one token: one per weight of
    every nn.Linear (the projections, the MLP, the output layer; GPT-2's
    Conv1D is an nn.Linear with its matrix stored transposed)."""
    return sum(m.weight.numel() for m in model.modules()
               if isinstance(m, (torch.nn.Linear, Conv1D)))


def attention_multiply_adds(model, context):
    """Multiply-adds of attention for one token reading `context`
    positions: per layer and query head, head_dim for each score q·k
    and head_dim for each value mixed in."""
    c = model.config
    per_query = c.num_attention_heads * head_dim(model)
    return c.num_hidden_layers * 2 * per_query * context


def prefill_multiply_adds(model, n):
    """Multiply-adds to read n tokens in one forward (a prefill).

    Position i pays one token's matrices and attends to i + 1
    positions; the output layer runs for the last position only: its
    scores are all generate() needs to pick the next token.
    """
    output = model.lm_head.weight.numel()
    matrices = n * (matrix_multiply_adds(model) - output) + output
    attention = sum(attention_multiply_adds(model, i + 1) for i in range(n))
    return matrices + attention


def read_bandwidth(nbytes=256 * 2**20):
    """Bytes per second this machine reads from memory.

    Sum a float32 tensor far larger than the CPU's caches: adding is
    trivial work, so the time is the time to read it.
    """
    x = torch.ones(nbytes // 4)
    return nbytes / fastest(x.sum)


def matmul_throughput(dtype, n=1024):
    """FLOP/s of a matrix product in `dtype`, the model's own.

    n × n times n × n is n³ multiply-adds, 2n³ FLOPs (a multiply and an
    add each), for 3n² numbers read: the work dwarfs the reading.
    """
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / fastest(lambda: a @ b)


def prefill(model, ids):
    """Read a whole text in one forward: every position at once, the
    scores of the last one only (what generate() asks for)."""
    with torch.inference_mode():
        return model(torch.tensor([ids]), logits_to_keep=1).logits[0, -1]


def decode_step(model, cache, ids):
    """One decode step: the last token of `ids` through the KV cache
    of all the others (its own keys and values dropped first, so the
    cache holds `ids` again after it)."""
    cache.crop(len(ids) - 1 - cache.get_seq_length())  # keep ids[:-1]
    with torch.inference_mode():
        return model(torch.tensor([ids[-1:]]), cache=cache).logits[0, -1]


def roof(intensity, bandwidth, peak):
    """The most FLOP/s a computation can reach: the roofline model.

    intensity: the FLOPs it does per byte it reads. Memory caps it at
    bandwidth × intensity, the arithmetic units at peak: whichever is
    lower. Below the ridge (peak / bandwidth) it waits on memory.
    """
    return min(bandwidth * intensity, peak)


LESSONS = [bytes_per_token, kv_bytes_per_position, decode_bytes, matrix_multiply_adds,
           attention_multiply_adds, prefill_multiply_adds, fastest, read_bandwidth,
           matmul_throughput, roof, prefill, decode_step]


# --- what the page measures and computes (not lessons) -----------------------------------

PREFILL_LENGTHS = (1, 16, 64, 128, 256)


@dataclass(frozen=True)
class Point:
    """One timed forward, placed on the roofline."""
    what: str
    kind: str          # "decode", "prefill" or "batch"
    tokens: int        # tokens the forward computed
    flops: float
    nbytes: float
    seconds: float

    @property
    def intensity(self) -> float:
        return self.flops / self.nbytes

    @property
    def flops_per_second(self) -> float:
        return self.flops / self.seconds

    @property
    def bytes_per_second(self) -> float:
        return self.nbytes / self.seconds


def decode_point(model, context: int, seconds: float, batch: int = 1) -> Point:
    """A decode step of `batch` sequences attending to `context` positions each."""
    flops = 2 * batch * (matrix_multiply_adds(model) + attention_multiply_adds(model, context))
    nbytes = bytes_per_token(model) + batch * context * kv_bytes_per_position(model)
    what = f"decode step at {context:,} tokens" if batch == 1 else f"decode, batch of {batch}"
    return Point(what, "decode" if batch == 1 else "batch", batch, flops, nbytes, seconds)


def prefill_point(model, n: int, seconds: float) -> Point:
    return Point(f"prefill of {counted(n, 'token')}", "prefill", n,
                 2 * prefill_multiply_adds(model, n),
                 bytes_per_token(model) + n * kv_bytes_per_position(model), seconds)


def machine_speeds(dtype) -> tuple[Measured, Measured]:
    """This machine's read bandwidth and matmul throughput in `dtype` (each measured once
    per process; the value is (number, trace))."""
    bandwidth = measured(("bandwidth",), lambda: traced(read_bandwidth))
    throughput = measured(("matmul", str(dtype)), lambda: traced(matmul_throughput, dtype))
    return bandwidth, throughput


PREFILL_TRIES, PREFILL_BUDGET = 2, 0.05  # fastest()'s tries and budget for each length


def time_prefills(model, ids, lengths) -> tuple[tuple[int, float], ...]:
    """Prefill times for growing lengths of `ids` (repeated to reach a length), stopping
    before a length whose predicted cost would pass the measurement's budget (past 64
    tokens the guess has the time grow as fast as the length: a long prefill is
    compute-bound)."""
    times, spent = [], 0.0
    for n in lengths:
        if times and spent + cost(next_time(times, n, least=1.0 if n > 64 else 0.0),
                                  PREFILL_TRIES, PREFILL_BUDGET) > BUDGET:
            break
        text = (list(ids) * math.ceil(n / len(ids)))[:n]
        start = time.perf_counter()
        times.append((n, fastest(lambda text=text: prefill(model, text), tries=PREFILL_TRIES,
                                 budget=PREFILL_BUDGET)))
        spent += time.perf_counter() - start
    return tuple(times)


@dataclass(frozen=True)
class Roofline:
    bandwidth: Measured   # (bytes/s, trace of read_bandwidth)
    throughput: Measured  # (FLOP/s, trace of matmul_throughput)
    prefills: Measured    # ((n, seconds), ...)
    decode: Measured      # seconds of one cached step at the learner's length
    lengths: tuple[int, ...]  # the prefill lengths asked for
    points: list[Point]
    weights: int          # bytes_per_token(model)
    kv: int               # kv_bytes_per_position(model)
    traces: dict

    @property
    def step(self) -> Point:
        return self.points[0]

    @property
    def ridge(self) -> float:
        return self.throughput.value[0] / self.bandwidth.value[0]


TIMED: Slot[dict] = Slot("chapter3.roofline.timed")  # per ids: prefill(), decode_step() traced


def roofline_of(model, model_id: str, ids: tuple[int, ...], cache, cap: int, memo) -> Roofline:
    """The counts for the learner's length, this machine's speeds, the prefills and the
    decode step at the learner's length timed (each measured once per process and size, in
    measure.MEASURED), and the lessons traced on the learner's ids (the two that run the
    model kept per ids: no forward when only a measurement changed)."""
    n = len(ids)
    bandwidth, throughput = machine_speeds(model.dtype)
    lengths = tuple(length for length in PREFILL_LENGTHS if length <= cap)
    prefills = measured(("prefill", model_id, lengths),
                        lambda: time_prefills(model, ids, lengths))
    decode = measured(("decode", model_id, n),
                      lambda: fastest(lambda: decode_step(model, cache, list(ids)),
                                      tries=3, budget=0.3))
    points = [decode_point(model, n, decode.value),
              *(prefill_point(model, length, seconds) for length, seconds in prefills.value)]
    traces = {f.__name__: traced(f, model, *args)[1] for f, *args in [
        (bytes_per_token,), (kv_bytes_per_position,), (decode_bytes, n),
        (matrix_multiply_adds,), (attention_multiply_adds, n), (prefill_multiply_adds, n)]}
    bw, top = bandwidth.value[0], throughput.value[0]
    traces["roof"] = traced(roof, points[0].intensity, bw, top)[1]
    traces["read_bandwidth"], traces["matmul_throughput"] = (bandwidth.value[1],
                                                             throughput.value[1])
    if (timed := memo.get(TIMED, ids)) is None:
        with FORWARD_LOCK:  # the two timed functions, once more on the learner's own ids
            timed = memo.put(TIMED, ids, {
                "prefill": traced(prefill, model, list(ids[:SHOWN]))[1],
                "decode_step": traced(decode_step, model, cache, list(ids))[1]})
    return Roofline(bandwidth, throughput, prefills, decode, lengths, points,
                    bytes_per_token(model), kv_bytes_per_position(model), {**traces, **timed})


SHOWN = 4  # tokens of the learner's text the traced prefill() reads


def again(model_id: str) -> None:
    """on_click of "Measure again": this section's measurements are forgotten and taken anew."""
    for what in ("bandwidth", "matmul"):
        forget(what)
    forget("prefill", model_id)
    forget("decode", model_id)


def table(points: list[Point], bandwidth: float, peak: float) -> pd.DataFrame:
    """The chart's data: the two roofs and the measured points."""
    low = min([0.1, *(p.intensity / 3 for p in points)])
    high = max([peak / bandwidth * 10, *(p.intensity * 3 for p in points)])
    ridge = peak / bandwidth
    rows = [{"mark": "roof", "what": "memory roof: bandwidth × intensity", "kind": "roof",
             "FLOPs per byte": x, "GFLOP/s": bandwidth * x / 1e9} for x in (low, ridge)]
    rows += [{"mark": "roof", "what": "compute roof: matmul throughput", "kind": "roof",
              "FLOPs per byte": x, "GFLOP/s": peak / 1e9} for x in (ridge, high)]
    rows += [{"mark": "measured", "what": p.what, "kind": p.kind, "FLOPs per byte": p.intensity,
              "GFLOP/s": p.flops_per_second / 1e9} for p in points]
    return pd.DataFrame(rows)


def points_table(points: list[Point], bandwidth: float, peak: float) -> pd.DataFrame:
    """The chart's alternative: every point's numbers."""
    return pd.DataFrame({
        "forward": [p.what for p in points],
        "GFLOPs": [p.flops / 1e9 for p in points],
        "MB read": [p.nbytes / 1e6 for p in points],
        "FLOPs per byte": [p.intensity for p in points],
        "ms": [p.seconds * 1000 for p in points],
        "ms per token": [p.seconds * 1000 / p.tokens for p in points],
        "GB/s read": [p.bytes_per_second / 1e9 for p in points],
        "GFLOP/s": [p.flops_per_second / 1e9 for p in points],
        "% of the roof": [p.flops_per_second / roof(p.intensity, bandwidth, peak) * 100
                          for p in points],
    })


def render(loaded, view) -> str:
    part: Roofline = view.roofline
    n, f = len(view.ids), view.facts
    dtype = f.dtype_name
    step = part.step
    weights, kv = part.weights, part.kv
    bw, peak = part.bandwidth.value[0], part.throughput.value[0]
    st.markdown(
        "Chapter 1 ran the model in two different ways. Your text went in all together, "
        f"{counted(n, 'token')}, many positions per forward (up to {PREFILL_CHUNK} at a time): "
        "the **prefill**. Then each Generate click ran one token through the KV cache: a "
        "**decode** step. Every forward must bring every matrix of the model from memory to the "
        "processor, whether it then multiplies one token's vector or a thousand. How long that "
        "takes, against how long the arithmetic takes, decides the speed."
    )
    st.subheader("What one token costs, from the model's weights")
    lesson(view.trace(bytes_per_token), view.trace(kv_bytes_per_position),
           view.trace(decode_bytes))
    st.markdown(
        f"This model's weights are **{size(weights)}** in {dtype}; the KV cache adds "
        f"{kv:,} bytes per position ({f.layers} layers × key and value × {f.kv_heads} "
        f"key/value heads × {f.head_dim} numbers × {f.bytes_per_number} bytes). A decode step "
        f"at your {counted(n, 'token')} reads **{size(step.nbytes)}**. {f.windowed()}"
    )
    lesson(view.trace(matrix_multiply_adds), view.trace(attention_multiply_adds),
           view.trace(prefill_multiply_adds))
    mac = step.flops // 2  # the step's multiply-adds: matrices and attention
    st.markdown(
        f"One token at your length: **{mac:,} multiply-adds**, {2 * mac:,} floating-point "
        "operations (**FLOPs**: a multiply-add is two). Divided by the bytes read: "
        f"**{step.intensity:.2f} FLOPs per byte**, the step's **arithmetic intensity**. A "
        "prefill of n tokens reads the weights once for all n: its intensity grows with n."
    )
    st.subheader("What this machine can do, measured")
    lesson(fastest, view.trace(read_bandwidth), view.trace(matmul_throughput))
    st.markdown(
        f"This machine reads **{bw / 1e9:.1f} GB/s** from memory "
        f"({part.bandwidth.stamp()}) and multiplies {dtype} matrices at "
        f"**{peak / 1e9:,.0f} GFLOP/s** ({part.throughput.stamp()}). A computation that does "
        f"fewer than {part.ridge:,.1f} FLOPs per byte it reads (the **ridge**: "
        f"{peak / 1e9:,.0f} / {bw / 1e9:.1f}) waits for memory: it is **memory-bound**; "
        "above the ridge it is **compute-bound**. That is the **roofline model**:"
    )
    lesson(view.trace(roof))
    reading, computing = step.nbytes / bw, step.flops / peak
    share = step.bytes_per_second / bw
    st.subheader("Your text on the roofline")
    lesson(view.trace(prefill), view.trace(decode_step),
           note=f"prefill() traced on the first {counted(min(n, SHOWN), 'token')} of your "
                "text, decode_step() on all of it.")
    st.markdown(
        f"A decode step at your length read **{size(step.nbytes)} in {duration(step.seconds)}: "
        f"{step.bytes_per_second / 1e9:.1f} GB/s, {share:.0%} of this machine's "
        f"{bw / 1e9:.1f} GB/s**. At the measured speeds, reading alone takes "
        f"{duration(reading)} and the arithmetic alone {duration(computing)}. "
        + ("The step waits on memory: that is its speed limit." if reading > computing
           and share >= 0.4 else
           "Most of the step's time went to neither: to the fixed cost of starting each of a "
           "forward's many operations (most of the time of a small model's step), or to "
           "whatever else this machine was running then (press Measure again to see)."
           if max(reading, computing) < step.seconds / 2 else "")
    )
    data = table(part.points, bw, peak)
    st.vega_lite_chart(data, charts.fast_spec(charts.roofline, data), width="stretch")
    prefills = [p for p in part.points if p.kind == "prefill"]
    if prefills:
        longest = prefills[-1]
        per = longest.seconds / longest.tokens
        ratio = step.seconds / per
        st.markdown(
            "The prefills read a text's ids, repeated to reach each length, in one forward "
            "each (the time depends on the length, not on which ids: each length is measured "
            f"once in this server process). The longest, {counted(longest.tokens, 'token')}, took "
            f"{duration(longest.seconds)}: **{duration(per)} per token**, at "
            f"{longest.intensity:,.1f} FLOPs per byte, "
            + (f"**{ratio:,.1f}× less than a decode step**." if ratio >= 1.2 else
               "no cheaper per token than a decode step here.")
            + " Each point is one forward; the nearer its roof, the better it used the machine."
        )
    small_table(points_table(part.points, bw, peak))
    left = [n for n in part.lengths if n not in {p.tokens for p in prefills}]
    st.caption(
        f"Decode step: the last token of a text of your length ({counted(n, 'token')}) once "
        f"more through its KV cache, {part.decode.stamp()}; prefills: {part.prefills.stamp()}"
        + (f" (not {', '.join(map(str, left))} tokens: over the {BUDGET:g} s a measurement "
           "may take)" if left else "")
        + f". {view.machine.describe()}; the model in {dtype}. Each time is the fastest "
        "of a few tries: other programs on a shared machine make the others slower."
    )
    controls.measure_again("roofline_again", again, (loaded.model_id,),
                           help="Forget this section's measurements (this machine's speeds, "
                                "the prefills, the decode step) and take them again.")
    bound = "memory-bound" if step.intensity < part.ridge else "compute-bound"
    return (f"A decode step reads every weight ({size(weights)}) to make one token: at "
            f"{step.intensity:.2f} FLOPs per byte it is {bound} on this machine (ridge "
            f"{part.ridge:,.1f}). A prefill reads them once for many tokens: its intensity "
            "grows with its length, towards the compute roof.")
