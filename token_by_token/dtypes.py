"""Which number type the model computes in on this CPU: bfloat16 or float32, the faster here.

A CPU with bfloat16 instructions (avx512_bf16, amx_bf16) multiplies bfloat16 matrices several
times faster than float32 ones, and reads half the bytes. A CPU without them widens each
bfloat16 number to float32 to multiply it: many rows at once (a chunk of a text being read)
are then several times slower than in float32, while one row (a generation step), which mostly
waits for the weights to arrive from memory, can still gain from bfloat16's half the bytes. So
the app measures instead of guessing: a short probe multiplies matrices of the model's own
shapes (its MLP's, the largest of a layer) by one row and by 64 rows, in both types,
interleaved, each the best of a few runs, and keeps the type whose row and 64 rows together
take less time, within the memory budget (float32 takes twice the bytes of bfloat16). The
result is kept per process and per shape; the sidebar says how each kind of work compared.

TOKEN_BY_TOKEN_DTYPE overrides it: auto (the default), bfloat16 or float32.
"""

import os
import re
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from token_by_token import threads
from token_by_token.locks import FORWARD_LOCK

SETTING = "TOKEN_BY_TOKEN_DTYPE"
CHOICES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
ROWS = (1, 64)     # a generation step; a chunk of a text read at once (PREFILL_CHUNK)
RUNS = 5           # each measurement is the best of this many (other work shares the cores)
CLEAR = 1.15       # a type must be this much faster to be chosen over bfloat16's half memory
LARGEST = 1 << 22  # numbers per probe matrix at most (4M: 16 MB in float32)
MEASURED = "measured on the model's MLP matrices"  # what the ratios are of: not a whole step


@dataclass(frozen=True)
class Choice:
    """The type the model is loaded in, and why, in a sentence for the sidebar."""
    dtype: torch.dtype
    reason: str
    seconds: dict  # (type name, rows) -> best time of one probe pass, when measured

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def setting() -> str:
    """TOKEN_BY_TOKEN_DTYPE, checked: auto, bfloat16 or float32."""
    value = os.environ.get(SETTING, "auto").strip().lower() or "auto"
    return value if value in (*CHOICES, "auto") else "auto"


def cpu_flags() -> set[str]:
    """The CPU's bfloat16 instructions, as /proc/cpuinfo names them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(re.findall(r"\b(avx512_bf16|amx_bf16)\b", text))


@cache
def measured(hidden: int, intermediate: int, threads: int) -> dict:
    """Best seconds of one pass over the probe matrices, per (type, rows): the MLP's two
    shapes, [intermediate, hidden] and [hidden, intermediate] (capped at LARGEST numbers),
    after one warm-up pass each (the first call of a shape prepares its kernel)."""
    out = max(min(intermediate, LARGEST // hidden), 1)
    generator = torch.Generator().manual_seed(0)
    base = [torch.randn(out, hidden, generator=generator),
            torch.randn(hidden, min(intermediate, LARGEST // hidden) or 1, generator=generator)]
    weights = {name: [w.to(dtype) for w in base] for name, dtype in CHOICES.items()}
    inputs = {(name, rows): [torch.randn(rows, w.shape[1], generator=generator).to(dtype)
                             for w in base]
              for name, dtype in CHOICES.items() for rows in ROWS}
    best = {}
    with FORWARD_LOCK, torch.inference_mode():
        for run in range(RUNS + 1):  # run 0 warms up
            for key, xs in inputs.items():
                start = time.perf_counter()
                for x, w in zip(xs, weights[key[0]], strict=True):
                    torch.nn.functional.linear(x, w)
                took = time.perf_counter() - start
                if run:
                    best[key] = min(best.get(key, took), took)
    return best


def choose(hidden: int, intermediate: int, parameters: int, budget: int) -> Choice:
    """bfloat16 or float32 for a model of these shapes and parameters, under `budget` bytes
    of weights: TOKEN_BY_TOKEN_DTYPE if set, else the faster one measured here."""
    wanted = setting()
    if wanted != "auto":
        return Choice(CHOICES[wanted], f"{wanted}: set by {SETTING}", {})
    seconds = measured(hidden, intermediate, threads.cores())
    cost = {name: sum(seconds[name, rows] for rows in ROWS) for name in CHOICES}
    faster = min(cost, key=cost.get)
    slower = max(cost, key=cost.get)
    ratio = cost[slower] / max(cost[faster], 1e-9)
    flags = cpu_flags()
    cpu = (f"this CPU has {' and '.join(sorted(flags))}" if flags else
           "this CPU has no bfloat16 instructions")
    compared = against(seconds, "float32", "bfloat16")
    if faster == "float32" and ratio < CLEAR:
        return Choice(torch.bfloat16, (
            f"bfloat16: float32 is not clearly faster on this CPU ({compared}; {MEASURED}; "
            f"{cpu}), and bfloat16 takes half the memory"), seconds)
    if faster == "float32" and parameters * 4 > budget:
        return Choice(torch.bfloat16, (
            f"bfloat16: float32 faster on this CPU ({compared}; {MEASURED}), but its weights "
            f"({parameters * 4 / 1e9:.1f} GB) would pass the memory budget "
            f"({budget / 1e9:.1f} GB, TOKEN_BY_TOKEN_MEMORY_GB)"), seconds)
    return Choice(CHOICES[faster], f"{faster}: on this CPU, against {slower}, "
                                   f"{against(seconds, faster, slower)}; {MEASURED} ({cpu})",
                  seconds)


def against(seconds: dict, mine: str, other: str) -> str:
    """How `mine` compared with `other` in the probe, per kind of work, in words: "reading a
    text 5.1 × faster, a generation step 1.5 × slower" (a CPU without bfloat16 instructions
    multiplies many rows much slower in bfloat16, while one row, which mostly reads the
    weights from memory, can still gain from its half the bytes)."""
    said = []
    for rows, work in ((ROWS[1], "reading a text"), (ROWS[0], "a generation step")):
        times = seconds[other, rows] / max(seconds[mine, rows], 1e-12)
        said.append(f"{work} as fast" if round(times, 1) == 1 else
                    f"{work} {times:.1f} × faster" if times > 1 else
                    f"{work} {1 / times:.1f} × slower")
    return ", ".join(said)


def describe(seconds: dict) -> str:
    """The probe's timings in words: "1 row: bfloat16 0.49 ms, float32 1.33 ms; …"."""
    return "; ".join(
        f"{rows} row{'s' if rows > 1 else ''}: " + ", ".join(
            f"{name} {seconds[name, rows] * 1e3:.2f} ms" for name in CHOICES)
        for rows in ROWS if all((name, rows) in seconds for name in CHOICES))
