"""Section 4 — Quantization: fewer bits per weight, fewer bytes per step.

Each matrix of every layer is stored as small integers and a few scales: 8 bits with one scale
per output row (absmax), or 4 bits with one scale per group of 128 numbers. Dequantized, the
model reads the learner's text again, and the two models are compared at every position.
"""

import math
import threading
import time
from dataclasses import dataclass, replace
from functools import cache
from types import SimpleNamespace

import pandas as pd
import streamlit as st
import torch
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

from chapter3 import roofline
from chapter3.facts import layers_of
from chapter3.measure import (
    BUDGET,
    MEASURED,
    Measured,
    alternately,
    duration,
    forget,
    measured,
    one_thread,
    size,
)
from chapter3.roofline import bytes_per_token
from chapter3.speculative import first_layers
from chapter3.twin import twin
from token_by_token import controls, kvcache
from token_by_token.locks import FORWARD_LOCK
from token_by_token.memo import Slot
from token_by_token.precision import difference, largest_abs
from token_by_token.sections import lesson, number, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted
from token_by_token.trace import traced

TITLE = "Quantization — fewer bits per weight"
READS = IDS | {"quant_scheme", "quantize_again"}
WIDGETS = {"quant_scheme", "quantize_again"}

SCHEMES = ("int8", "4-bit")  # the quant_scheme values
GROUP = 128  # numbers per scale in the 4-bit scheme (fewer where a row is not a multiple)
CHUNK = 32  # positions whose scores are compared at a time


def quantize_int8(weight):
    """Each row of a weight matrix as 8-bit integers and one scale.

    absmax: the row's largest |w| maps to 127, so scale = max|w| / 127
    and q = round(w / scale), in -127..127. A step of q is one scale:
    rounding moves a weight by at most half a step.
    """
    w = weight.float()
    scale = w.abs().amax(dim=1) / 127  # one per output row
    scale = scale.clamp(min=torch.finfo(torch.float32).tiny)  # a zero row
    q = torch.round(w / scale[:, None]).to(torch.int8)
    return q, scale


def dequantize(q, scale):
    """Back to numbers a matmul can use: each q times its row's scale."""
    return q * scale[:, None]


def quantize_groups(weight, group, bits=4):
    """Each row as `bits`-bit integers, one scale per `group` numbers.

    4 bits hold -8..7; each group's largest |w| maps to 7. A scale per
    group, not per row, keeps one large weight from coarsening the
    steps of the whole row.
    """
    top = 2 ** (bits - 1) - 1  # 7 for 4 bits
    w = weight.float().view(weight.shape[0], -1, group)  # [rows, groups, group]
    scale = w.abs().amax(dim=-1) / top  # [rows, groups]
    scale = scale.clamp(min=torch.finfo(torch.float32).tiny)
    q = torch.round(w / scale[..., None]).to(torch.int8)
    return q.view(weight.shape), scale


def dequantize_groups(q, scale):
    """Each q times its group's scale, back to the weight's shape."""
    rows, groups = scale.shape
    return (q.view(rows, groups, -1) * scale[..., None]).view(q.shape)


def kl_divergence(logits_p, logits_q):
    """How far distribution q strays from p, in bits, per position:
    Σ p · (log₂ p − log₂ q). 0 when they are the same."""
    log_p = torch.log_softmax(logits_p.float(), dim=-1)
    log_q = torch.log_softmax(logits_q.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1) / math.log(2)


def surprisals(logits, next_ids):
    """How surprised the model is by each next token of the text, in
    bits: −log₂ p(the token that really came next)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -log_p[torch.arange(len(next_ids)), next_ids] / math.log(2)


def perplexity(bits):
    """2 ** the mean surprisal: the number of equally likely choices
    that would be as surprising. Lower: the text was expected."""
    return 2 ** bits.mean()


LESSONS = [quantize_int8, dequantize, quantize_groups, dequantize_groups, kl_divergence,
           surprisals, perplexity]


# --- the quantized model the page runs (not lessons) -------------------------------------

def group_for(columns: int) -> int:
    """GROUP, or the largest power of two below it that divides a row's length."""
    return math.gcd(GROUP, columns)


class Quantized(torch.nn.Module):
    """A linear layer kept as the lessons' integers and scales (buffers), multiplied by
    PyTorch's own CPU kernel for them where one runs (`_weight_int8pack_mm`, or
    `_weight_int4pack_mm_for_cpu` on the integers packed two to a byte), else dequantized by
    the lessons' functions at every product. `lazy`: nothing kept; the same integers are made
    at each product and dropped after it (one matrix's at a time in memory)."""

    def __init__(self, linear: torch.nn.Linear, scheme: str, kernel: bool,
                 lazy: bool = False):
        super().__init__()
        self.scheme, self.bias, self.kernel = scheme, linear.bias, kernel
        self.group = group_for(linear.in_features)
        self.source = (linear.weight,) if lazy else None  # (a tuple: not registered)
        if not lazy:
            q, scale = self.quantized(linear.weight)
            self.register_buffer("q", q, persistent=False)
            self.register_buffer("scale", scale, persistent=False)

    def quantized(self, weight, pack: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The lessons' integers and scales of `weight` (packed for the 4-bit kernel)."""
        # rows are quantized independently: a few at a time gives the same integers, with
        # float32 temporaries under 1 MB (glibc then keeps them in its heap: the app returns
        # larger blocks to the system at once, model.py) and in cache: 6× faster, measured.
        # Each chunk goes into tensors made once; for the 4-bit kernel it is packed at once
        # (the kernel packs each block of 64 rows on its own: a chunk of whole blocks packs
        # as the whole matrix would, tested), never a whole int32 copy of the matrix (that
        # copy took 1.8 of the 3.1 s the 4-bit twin took on the Qwen3-0.6B shape, measured)
        packed = pack and self.kernel and self.scheme == "4-bit"
        rows = max(64, (1 << 19) // (4 * weight.shape[1]) // 64 * 64)
        q = torch.empty((weight.shape[0], weight.shape[1] // 2) if packed else weight.shape,
                        dtype=torch.uint8 if packed else torch.int8)
        scale = torch.empty((weight.shape[0],) if self.scheme == "int8" else
                            (weight.shape[0], weight.shape[1] // self.group))
        for start in range(0, weight.shape[0], rows):
            chunk = weight[start:start + rows]
            ints, scales = (quantize_int8(chunk) if self.scheme == "int8" else
                            quantize_groups(chunk, self.group))
            if packed:  # the kernel's layout: two 4-bit numbers (0..15) per byte
                ints = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                    (ints + 8).to(torch.int32), 1)
            q[start:start + rows], scale[start:start + rows] = ints, scales
        if packed:
            scale = torch.stack([scale.T, torch.zeros_like(scale.T)], dim=-1)
        return q, scale

    def kept(self, pack: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if self.source is None:
            return self.q, self.scale
        with one_thread():  # many small operations: one thread is faster (measure.py)
            return self.quantized(self.source[0], pack)

    def weight_back(self) -> torch.Tensor:
        """The dequantized weight, by the lessons (not from the 4-bit kernel's packing)."""
        q, scale = self.kept(pack=False)
        return dequantize(q, scale) if self.scheme == "int8" else dequantize_groups(q, scale)

    def forward(self, x):
        flat = x.reshape(-1, x.shape[-1])
        packed = self.kernel and self.scheme == "4-bit" and self.source is None
        if not self.kernel or (len(flat) > MANY_ROWS and not packed):
            out = F.linear(flat, self.weight_back().to(x.dtype))
        elif self.scheme == "int8":
            q, scale = self.kept()
            out = torch.ops.aten._weight_int8pack_mm(flat, q, scale.to(x.dtype))
        else:
            q, scale = self.kept()
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, q, self.group,
                                                              scale.to(x.dtype))
        out = out.view(*x.shape[:-1], -1)
        return out if self.bias is None else out + self.bias


# More rows than this at once (a text read in one forward): the lessons' dequantized matrix
# multiplies them faster than PyTorch's integer kernels, whose time grows with the rows (one
# 1,024 × 3,072 matrix, 1,024 rows: int8 kernel 20 ms, 4-bit 19 ms, dequantized 8-14 ms,
# bfloat16 7 ms; 256 rows: 5 ms against 8 ms; measured on 2 cores here)
MANY_ROWS = 512


def matrices(model, layers: int | None = None) -> list[tuple[torch.nn.Module, str,
                                                              torch.nn.Linear]]:
    """Every nn.Linear inside the decoder layers (the first `layers` of them if given), with
    its parent and name (the output layer, the embedding table, stays as it is). GPT-2's
    Conv1D, a Linear whose matrix is stored transposed, is given as one (`as_linear`: its
    weight read as [out, in])."""
    return [(parent, name, as_linear(child)) for layer in layers_of(model)[:layers]
            for parent in layer.modules() for name, child in parent.named_children()
            if isinstance(child, (torch.nn.Linear, Conv1D))]


def as_linear(module) -> torch.nn.Linear | SimpleNamespace:
    """An nn.Linear as it is; a Conv1D (y = x @ weight + bias) as what Quantized reads of a
    Linear (y = x @ weightᵀ + bias): its weight transposed (a view: nothing copied)."""
    if isinstance(module, torch.nn.Linear):
        return module
    rows, columns = module.weight.shape[1], module.weight.shape[0]
    return SimpleNamespace(weight=module.weight.T, bias=module.bias, in_features=columns,
                           out_features=rows)


def modules_of(model) -> list[tuple[torch.nn.Module, str, Quantized]]:
    return [(parent, name, child) for layer in layers_of(model) for parent in layer.modules()
            for name, child in parent.named_children() if isinstance(child, Quantized)]


@dataclass(frozen=True)
class Built:
    """What the page says about a scheme's quantized model (never the model itself: a
    learner's view must not keep a quantized copy of the layers alive)."""
    scheme: str
    kernel: bool            # PyTorch's integer kernels run here
    check: float | None     # kernel against the lessons' dequantized matrix: max difference
    why_not: str | None     # why no kernel ran
    seconds: float | None = None  # quantizing the timed layers took (for the timed steps)


def kernel_check(linear: torch.nn.Linear, scheme: str) -> float:
    """The kernel's product against x times the lessons' dequantized matrix, on one matrix
    (raises where the kernel does not run)."""
    x = torch.randn(3, linear.in_features, dtype=linear.weight.dtype,
                    generator=torch.Generator().manual_seed(0))
    fast, slow = Quantized(linear, scheme, kernel=True), Quantized(linear, scheme, kernel=False)
    return float((fast(x).float() - x.float() @ slow.weight_back().T).abs().max())


BUILT: dict[tuple, Built] = {}  # (model id, scheme) -> what was found, for the process
_BUILDING = threading.Lock()  # one quantized twin is built at a time


def probe(model, model_id: str, scheme: str) -> Built:
    """Whether PyTorch's integer kernel for `scheme` runs on this machine, checked on one
    matrix against the lessons (once per process and scheme)."""
    key = (model_id, scheme)
    if (found := BUILT.get(key)) is None:
        with FORWARD_LOCK, torch.inference_mode(), one_thread():
            try:
                check, why_not = kernel_check(matrices(model)[0][2], scheme), None
            except (RuntimeError, AttributeError, NotImplementedError) as error:
                lines = str(error).strip().splitlines() or [type(error).__name__]
                check, why_not = None, lines[0]
        found = BUILT[key] = Built(scheme, why_not is None, check, why_not)
    return found


def quantized_twin(model, scheme: str, kernel: bool, lazy: bool = False):
    """The model with every layer's matrices quantized by `scheme`: a twin (the loaded model
    is shared and never changed). `lazy`: each matrix's integers are made at each product
    and dropped (to read a text once: one matrix's integers in memory at a time); else kept
    (on the Qwen3-0.6B shape 0.44 GB of int8 integers, 0.22 GB of packed 4-bit ones: for
    the timed decode steps, then dropped by the caller). Built on one thread, holding
    FORWARD_LOCK; one at a time."""
    with _BUILDING, FORWARD_LOCK, torch.inference_mode(), one_thread():
        double = twin(model)
        for parent, name, linear in matrices(double):
            setattr(parent, name, Quantized(linear, scheme, kernel, lazy))
    return double


STEP_CONTEXT = 16  # tokens each model has read before its timed decode step


def timed_layers(model) -> int:
    """How many layers the timed decode steps go through: the first quarter of them (at least
    one), so that the quantized copy with its integers stays small (on the Qwen3-0.6B shape
    7 of 28 layers: 0.11 GB of int8 integers, where every layer's would be 0.44 GB)."""
    return max(1, len(layers_of(model)) // 4)


def time_steps(model, quantized, ids) -> dict:
    """One decode step through the layers of `model` and of its quantized twin (PyTorch's
    integer kernels; the output layer, which neither quantizes, left out), after reading
    ids[:-1]: in turns, the fastest of a few tries each."""
    steps = {}
    for name, m in (("original", model), ("quantized", quantized)):
        cache = kvcache.keeping_every_position()
        m.base_model(torch.tensor([ids[:-1]]), cache=cache, use_cache=True)

        def step(m=m, cache=cache):
            m.base_model(torch.tensor([ids[-1:]]), cache=cache, use_cache=True)
            cache.crop(-1)
        steps[name] = step
    return alternately(steps, tries=3, budget=BUDGET / 4)


@dataclass(frozen=True)
class Compared:
    """The quantized model against the original on the learner's ids."""
    scheme: str
    largest_gap: float       # max |logit difference| anywhere
    largest_logit: float     # max |original logit|
    agree: int               # positions whose top-1 is the same
    kl: torch.Tensor         # [positions] bits
    perplexity: tuple[float, float] | None  # (original, quantized); None for one token
    seconds: float
    traces: dict             # kl_divergence, surprisals (first chunk), perplexity


HIDDEN: Slot[torch.Tensor] = Slot("chapter3.quantize.hidden")  # the original's, per ids
COMPARED: Slot[dict] = Slot("chapter3.quantize.compared")  # per ids: scheme -> Compared


def compare(model, quantized, ids, scheme: str, memo) -> Compared:
    """Both models read the ids; their scores compared CHUNK positions at a time (never a
    positions × vocabulary table for the whole text). The lessons' first calls are traced."""
    start, key, traces = time.perf_counter(), tuple(ids), {}
    with FORWARD_LOCK, torch.inference_mode():
        if (mine := memo.get(HIDDEN, key)) is None:
            mine = memo.put(HIDDEN, key,
                            model.base_model(torch.tensor([ids])).last_hidden_state[0])
        theirs = quantized.base_model(torch.tensor([ids])).last_hidden_state[0]
        gap, largest, agree, kl, bits = 0.0, 0.0, 0, [], ([], [])
        for c in range(0, len(ids), CHUNK):
            # the scores in the model's dtype (the lessons take them to float32 themselves):
            # no float32 copies alive beside the lessons' own [CHUNK × vocabulary] tables
            a, b = model.lm_head(mine[c:c + CHUNK]), model.lm_head(theirs[c:c + CHUNK])
            gap = max(gap, float(difference(a, b, a.dtype)))
            largest = max(largest, largest_abs(a))
            agree += int((a.argmax(-1) == b.argmax(-1)).sum())
            kl.append(once(traces, kl_divergence, a, b))
            following = torch.tensor(ids[c + 1:c + CHUNK + 1], dtype=torch.long)
            for kept, logits in zip(bits, (a, b), strict=True):
                kept.append(once(traces, surprisals, logits[: len(following)], following))
        both = None
        if len(ids) > 1:
            both = (float(perplexity(torch.cat(bits[0]))),
                    float(once(traces, perplexity, torch.cat(bits[1]))))
    return Compared(scheme, gap, largest, agree, torch.cat(kl), both,
                    time.perf_counter() - start, traces)


def once(traces: dict, function, *args):
    """function(*args), traced the first time the page calls it."""
    if function.__name__ in traces:
        return function(*args)
    result, traces[function.__name__] = traced(function, *args)
    return result


@dataclass(frozen=True)
class Quantization:
    scheme: str
    compared: Compared
    built: Built
    steps: Measured | None     # decode steps, original and quantized (None: no kernel)
    timed: int                 # the layers those steps went through (the first ones)
    promised: float            # those layers' matrices: original bytes / quantized bytes
    sizes: pd.DataFrame        # bytes per scheme
    matrix: str                # the matrix the traced lessons quantized
    error: tuple[float, float]  # its largest |w − dequantized| and its largest half step
    weights: int               # bytes_per_token(model)
    traces: dict


def matrix_bytes(model, layers: int | None = None) -> dict[str, int]:
    """The bytes of the layers' matrices (of the first `layers` if given), as they are
    ("original") and in each scheme (the integers packed, the scales in 2 bytes each)."""
    linears = [linear for _, _, linear in matrices(model, layers)]
    weights = sum(m.weight.numel() for m in linears)
    rows = sum(m.out_features for m in linears)
    groups = sum(m.out_features * (m.in_features // group_for(m.in_features)) for m in linears)
    return {"original": sum(m.weight.numel() * m.weight.element_size() for m in linears),
            "int8": weights + 2 * rows, "4-bit": weights // 2 + 2 * groups}


def sizes(model) -> pd.DataFrame:
    """The bytes a decode step reads in each scheme: the layers' matrices quantized,
    everything else as it is."""
    original, matrix = bytes_per_token(model), matrix_bytes(model)
    rest = original - matrix["original"]
    return pd.DataFrame({"scheme": [str(model.dtype).removeprefix("torch."), *SCHEMES],
                         "bytes": [original, *(rest + matrix[s] for s in SCHEMES)]})


def quantization_of(model, model_id: str, ids: tuple[int, ...], scheme: str,
                    memo) -> Quantization:
    """The learner's text read by the original and by the scheme's lazily quantized twin
    (kept per ids and scheme), and the decode steps timed through the first layers, on a twin
    of them that keeps its integers (once per process and scheme, where PyTorch's integer
    kernel runs; dropped after)."""
    about = probe(model, model_id, scheme)
    kept = memo.get(COMPARED, ids)
    if kept is None:
        kept = memo.put(COMPARED, ids, {})
    if scheme not in kept:
        reading = quantized_twin(model, scheme, about.kernel, lazy=True)
        kept[scheme] = compare(model, reading, list(ids), scheme, memo)
    steps, key, layers = None, ("kernel", model_id, scheme, STEP_CONTEXT), timed_layers(model)
    if about.kernel and (steps := MEASURED.get(key)) is None:
        first = first_layers(model, layers)  # (a twin: nothing copied)
        start = time.perf_counter()
        resident = quantized_twin(first, scheme, kernel=True)  # (outside the lock)
        BUILT[model_id, scheme] = about = replace(about, seconds=time.perf_counter() - start)
        context = (list(ids) * STEP_CONTEXT)[-STEP_CONTEXT:]  # (repeated if shorter)
        steps = measured(key, lambda: time_steps(first, resident, context))
        del resident  # no quantized copy of the layers outlives its measurement
    matrix = matrix_bytes(model, layers)
    where, errors, traces = one_matrix(model)
    return Quantization(scheme, kept[scheme], BUILT[model_id, scheme], steps,
                        layers, matrix["original"] / matrix[scheme],
                        sizes(model), where, errors[scheme], bytes_per_token(model),
                        {**traces, **kept[scheme].traces})


@cache
def one_matrix(model) -> tuple[str, dict, dict]:
    """The lessons traced on the first matrix of the first layer (once per model): which
    matrix, each scheme's (largest |w − dequantized|, largest half step), the traces."""
    parent, name, linear = matrices(model)[0]
    weight = linear.weight
    with torch.inference_mode():
        (q, scale), t8 = traced(quantize_int8, weight)
        back, tb = traced(dequantize, q, scale)
        (q4, scale4), t4 = traced(quantize_groups, weight, group_for(weight.shape[1]))
        back4, tb4 = traced(dequantize_groups, q4, scale4)
    errors = {"int8": (float((back - weight.float()).abs().max()), float(scale.max() / 2)),
              "4-bit": (float((back4 - weight.float()).abs().max()), float(scale4.max() / 2))}
    traces = {"quantize_int8": t8, "dequantize": tb, "quantize_groups": t4,
              "dequantize_groups": tb4}
    return f"layer 0's {type(parent).__name__}.{name}", errors, traces


def again(model_id: str) -> None:
    forget("kernel", model_id)


LABELS = {"int8": "8 bits, a scale per row", "4-bit": f"4 bits, a scale per {GROUP} numbers"}


def render(loaded, view) -> str:
    part: Quantization = view.quantization
    n, c, f = len(view.ids), part.compared, view.facts
    dtype = f.dtype_name
    bits = f.dtype.itemsize * 8
    st.markdown(
        f"Section {number(roofline)} showed that a decode step must read every weight: "
        f"{size(part.weights)} in {dtype}, {bits} bits per number. Store "
        "them in fewer bits and there is less to read. **Quantization** does that: each "
        "weight becomes a small integer, and a few **scales** in full precision say what one "
        "step of the integers is worth. Multiply back (**dequantize**) and you get the weight, "
        "off by at most half a step."
    )
    controls.quant_scheme_radio(LABELS)
    st.markdown("**8 bits, one scale per output row** (absmax; the weights' half of "
                "LLM.int8()'s vector-wise scheme):")
    lesson(view.trace(quantize_int8), view.trace(dequantize))
    st.markdown(f"**4 bits, one scale per group** of {GROUP} numbers along a row (where a row's "
                f"length is not a multiple of {GROUP}, the largest power of two that divides "
                "it):")
    lesson(view.trace(quantize_groups), view.trace(dequantize_groups))
    largest, half = part.error
    st.markdown(
        f"On {part.matrix} ({'scheme: ' + part.scheme}), the largest change any weight got is "
        f"**{largest:.3g}**, within half a step ({half:.3g} for the coarsest row or group). The "
        "page quantizes every matrix of every layer this way; "
        + ("the embedding table, which is also the output layer here, stays as it is."
           if f.tied else "the embedding table and the output layer stay as they are.")
    )
    st.subheader("The same text, read by the quantized model")
    lesson(view.trace(kl_divergence), view.trace(surprisals), view.trace(perplexity),
           note="Traced on the first positions; the page runs them on every position.")
    mean_kl = float(c.kl.mean())
    rows = {"largest logit difference": f"{c.largest_gap:.3g} (logits reach "
                                        f"{c.largest_logit:.3g})",
            "same top-1 token": f"{c.agree:,} of {counted(n, 'position')}",
            "KL divergence, mean per position": f"{mean_kl:.3g} bits",
            "KL divergence, largest": f"{float(c.kl.max()):.3g} bits"}
    if c.perplexity:
        rows["perplexity of your text"] = (f"{c.perplexity[0]:,.2f} original, "
                                           f"{c.perplexity[1]:,.2f} quantized")
    small_table(pd.DataFrame({"": list(rows), part.scheme: list(rows.values())}))
    built = part.built
    st.caption(f"Both models read your {counted(n, 'token')} in one forward each "
               f"({duration(c.seconds)}); the quantized one "
               + "quantizes each matrix when it is used (never a second copy of every layer "
               "in memory) and "
               + ("multiplies with PyTorch's integer kernels (below)"
                  + (f", or, with more than {MANY_ROWS} positions at once, by the matrices "
                     "the lessons above dequantize (faster then here)" if n > MANY_ROWS
                     else "") + "." if built.kernel else
                  "multiplies by the matrices the lessons above dequantize."))
    st.subheader("Memory and speed")
    table = part.sizes.copy()
    table["size"] = [size(b) for b in table["bytes"]]
    small_table(table)
    original, small = table["bytes"].iloc[0], table["bytes"].iloc[1 + SCHEMES.index(part.scheme)]
    st.markdown(
        f"In {part.scheme} the weights a step reads shrink from {size(original)} to "
        f"**{size(small)}** (the integers packed, the scales in 2 bytes each): a step that "
        f"only waited for its weights to arrive (section {number(roofline)}) could take "
        f"{small / original:.0%} of the time, {original / small:,.2f}× faster. That is "
        "computed from the bytes, not measured."
    )
    if part.steps is None:
        st.markdown(f"PyTorch's integer kernel for this scheme did not run here "
                    f"({built.why_not}): the quantized model multiplies by the dequantized "
                    "matrices instead, and no quantized step was measured.")
    else:
        k, layers = part.steps.value, f.layers
        ratio = k["original"] / k["quantized"]
        through = ("all its layers" if part.timed == layers else "its first layer (of "
                   f"{layers})" if part.timed == 1 else f"the first {part.timed} of its {layers} "
                   "layers")
        st.markdown(
            f"Measured with PyTorch's own CPU kernels, which multiply by the integers "
            f"directly (they agree with the lessons' dequantized matrix to {built.check:.2g}): "
            f"a decode step through {through} took **{duration(k['quantized'])} quantized "
            f"against {duration(k['original'])}** in {dtype}: "
            + (f"{ratio:,.2f}× faster" if ratio >= 1 else f"{1 / ratio:,.2f}× slower")
            + f", where the bytes of their matrices promised {part.promised:,.2f}×. A kernel "
            "must also turn the integers back into numbers as it goes, and a step is not all "
            f"reading (section {number(roofline)})."
        )
        st.caption(f"Steps {part.steps.stamp()}: each model read {STEP_CONTEXT - 1} tokens "
                   "of a text, then one more token is its timed step (the time depends on the "
                   "length, not on which tokens: measured once per scheme in this server "
                   "process), the fastest of a few tries taken in turns; through "
                   + (f"{through} only" if part.timed == layers else
                      f"{through} only, so that the quantized copy with its integers stays "
                      "small")
                   + " (the output layer, which neither model quantizes, left out)"
                   + (f"; quantizing them took {duration(built.seconds)} (the copy is dropped "
                      "once timed). " if built.seconds else ". ")
                   + f"{view.machine.describe()}.")
    controls.measure_again("quantize_again", again, (loaded.model_id,),
                           help="Time the decode steps, original and quantized, again.")
    return (f"{part.scheme}: the weights a step reads shrink to {small / original:.0%}; on your "
            f"text the top-1 token stays the same at {c.agree:,} of {n:,} positions, with a mean "
            f"KL divergence of {mean_kl:.3g} bits.")
