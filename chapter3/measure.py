"""Chapter 3's measurements of this machine: taken once per process and input size, kept,
and taken again only when a learner asks (a button whose callback forgets them).

A measurement times the CPU, so it holds token_by_token.locks.FORWARD_LOCK while it runs: no
learner's forward runs at the same time, and two measurements never overlap. What it found is
kept in MEASURED, keyed by what was measured, the model and the input size, for every learner
of this process (a machine's speed is not a learner's choice). Anything computed from one
learner's own text lives in that learner's Memo instead.
"""

import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

import torch

from token_by_token import threads
from token_by_token.locks import FORWARD_LOCK

BUDGET = 2.0  # seconds one measurement may take at most (on the Qwen3-0.6B shape)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU instructions for bfloat16 arithmetic


def fastest(run, tries=5, budget=0.5):
    """Seconds of run(), the fastest of a few timed tries.

    A first, untimed run warms up (a new shape's kernels, the caches).
    Other programs on the machine can only slow a try down, so the
    fastest is nearest this machine's own speed. Stops early once the
    tries have taken `budget` seconds in all.
    """
    run()  # warm-up, not timed
    best, spent = math.inf, 0.0
    for _ in range(tries):
        start = time.perf_counter()
        run()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if spent > budget:
            break
    return best


def alternately(runs: dict, tries: int = 3, budget: float = BUDGET / 2) -> dict:
    """Seconds of each of `runs` (name -> function), the fastest of a few tries taken in
    turns, so that a busy moment of the machine slows them all alike: one untimed warm-up
    each, then turns until `tries` turns or `budget` seconds (at least one turn)."""
    for run in runs.values():
        run()  # warm-up, not timed
    best, start = {}, time.perf_counter()
    for _ in range(tries):
        for name, run in runs.items():
            began = time.perf_counter()
            run()
            best[name] = min(best.get(name, math.inf), time.perf_counter() - began)
        if time.perf_counter() - start > budget:
            break
    return best


def next_time(times: list[tuple[int, float]], size: int, least: float = 0.0) -> float:
    """A guess at one run's time at `size`, from (size, seconds) measured so far: time grows
    as size ** e, e read from the last two (between `least` and 1, compute-bound; 0 is
    memory-bound; 0.5 with one measurement). Measurements stop before one that would pass
    the budget."""
    (s1, t1) = times[-1]
    exponent = max(0.5, least)
    if len(times) > 1:
        (s0, t0) = times[-2]
        exponent = min(max(math.log(t1 / t0) / math.log(s1 / s0), least), 1.0)
    return t1 * (size / s1) ** exponent


def cost(seconds: float, tries: int, budget: float) -> float:
    """What fastest(run, tries, budget) takes for a run of `seconds`: the warm-up, then tries
    until they have taken more than `budget` (at least one, at most `tries`)."""
    return seconds * (1 + min(tries, int(budget / seconds) + 1))


@contextmanager
def one_thread():
    """torch on one thread inside, for many small operations in a row (quantizing a model a
    few rows at a time, seeded rounds of verify()): on 2 shared cores, making a second
    thread join each small operation cost far more than it saved (quantizing the Qwen3-0.6B
    shape to int8: 0.45 s on one thread, 4.3 s on two; measured). Hold FORWARD_LOCK around
    it: the setting may reach other threads' forwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Machine:
    """What the measurements ran on, read from the operating system and torch."""
    cpu: str                   # the model name in /proc/cpuinfo
    cores: int                 # logical CPUs the process may use
    threads: int               # torch's threads (a forward uses this many cores)
    bf16: tuple[str, ...]      # the CPU's bfloat16 instructions (empty: emulated, slow)
    caches: tuple[str, ...]    # "L2 1 MB per core", ... from /sys
    memory: int                # bytes of memory the machine has (MemTotal)

    def describe(self) -> str:
        """One line: on what the page measured."""
        bf16 = (f"bfloat16 instructions: {', '.join(self.bf16)}" if self.bf16
                else "no bfloat16 instructions")
        return (f"{self.cpu}, {self.cores} cores, torch {torch.__version__} with "
                f"{self.threads} threads, {bf16}")


@cache
def machine() -> Machine:
    cpuinfo = _read("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
             if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags")), [])
    meminfo = {line.split(":")[0]: line.split(":")[1] for line in _read("/proc/meminfo")
               .splitlines() if ":" in line}
    memory = int(meminfo.get("MemTotal", "0 kB").split()[0]) * 1024
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Machine(names[0] if names else "an unnamed CPU", cores or 1,
                   threads.cores(), tuple(f for f in BF16_FLAGS if f in flags),
                   caches(), memory)


def caches() -> tuple[str, ...]:
    """The data caches of CPU 0, as Linux lists them: "L2 1,024 KB (1 core)"."""
    found = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        kind, level = _read(index / "type").strip(), _read(index / "level").strip()
        size, shared = _read(index / "size").strip(), _read(index / "shared_cpu_list").strip()
        if kind in ("Data", "Unified") and size.endswith("K") and size[:-1].isdigit():
            kb, sharing = int(size[:-1]), _cpus(shared)
            amount = f"{kb // 1024:,} MB" if kb >= 1024 and kb % 1024 == 0 else f"{kb:,} KB"
            found.append(f"L{level} {amount} "
                         f"({'per core' if sharing == 1 else f'shared by {sharing} cores'})")
    return tuple(found)


def _cpus(listed: str) -> int:
    """How many CPUs a list such as "0-1,4" names."""
    count = 0
    for part in filter(None, listed.split(",")):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def _read(path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


@dataclass(frozen=True)
class Measured:
    """What one measurement found, when, and how long it took."""
    value: object
    when: datetime
    seconds: float

    def stamp(self) -> str:
        return f"measured at {self.when:%H:%M:%S} in {self.seconds:.2f} s"


MEASURED: dict[tuple, Measured] = {}  # (what, model id, size…) -> Measured, for the process
_KEYS = threading.Lock()  # guards MEASURED's keys (never held while measuring)


def measured(key: tuple, measure) -> Measured:
    """measure(), once per process for `key`: the first learner who needs it waits for it
    (holding FORWARD_LOCK: no forward runs meanwhile), the others read it."""
    if (found := MEASURED.get(key)) is not None:
        return found
    with FORWARD_LOCK, torch.inference_mode():
        if (found := MEASURED.get(key)) is not None:  # measured while this one waited
            return found
        start = time.perf_counter()
        value = measure()
        found = Measured(value, datetime.now(), time.perf_counter() - start)
    with _KEYS:
        MEASURED[key] = found
    return found


def known(key: tuple) -> bool:
    return key in MEASURED


_FORGOTTEN = [0]  # how many times measurements were forgotten in this process


def forget(*prefix) -> None:
    """(In a "Measure again" button's callback:) drop what was measured under keys that
    start with `prefix`; the page measures them again when it next needs them."""
    with _KEYS:
        for key in [k for k in MEASURED if k[: len(prefix)] == prefix]:
            del MEASURED[key]
        _FORGOTTEN[0] += 1


def version() -> int:
    """Changes whenever measurements are forgotten: a learner's view made before is stale."""
    return _FORGOTTEN[0]


# --- how the page says a measurement --------------------------------------------------------

def size(nbytes: float) -> str:
    """Bytes for reading: 256 bytes, 411 KB, 1.19 GB (decimal units, 3 significant digits)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.3g} {unit}" if nbytes < 1000 * scale or unit != "GB" \
                else f"{nbytes / scale:,.0f} {unit}"
    return f"{nbytes:,.0f} bytes"


def duration(seconds: float) -> str:
    """Seconds for reading: 0.72 ms, 68.1 ms, 1.24 s."""
    if seconds >= 1:
        return f"{seconds:,.2f} s"
    return f"{seconds * 1000:,.3g} ms" if seconds < 0.1 else f"{seconds * 1000:,.0f} ms"
