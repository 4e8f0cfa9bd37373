"""Chapter 3's view of the learner's choices: what every section's render(loaded, view) reads.

The page builds one Base per change of ids (the learner's Chapter 1 forward, with its KV cache;
the model's facts; the machine), then each section's `prepare(loaded, base, state, memo)`
computes that section's part (measuring what is not measured yet) and returns a View. render()
only reads the View: it never measures, runs the model or writes state.
"""

from dataclasses import dataclass, field

from chapter1.pipeline import Forward, advance
from chapter2.inside import Facts
from chapter3.measure import Machine, machine
from token_by_token.memo import Memo
from token_by_token.trace import Trace


@dataclass(frozen=True)
class Base:
    """What every section reads: the ids, the learner's forward of them, facts, the machine."""
    ids: tuple[int, ...]
    forward: Forward     # Chapter 1's forward of these ids: last logits, KV cache
    facts: Facts         # the model's dimensions, read from its weights
    machine: Machine
    model_id: str


def base(loaded, ids: list[int], memo: Memo) -> Base:
    """The learner's forward of `ids`, shared with Chapter 1 (one forward per change of ids,
    none when Chapter 1 has run it already)."""
    forward = advance(loaded.model, ids, memo, loaded.eos_ids)
    return Base(tuple(ids), forward, Facts.of(loaded.model), machine(), loaded.model_id)


@dataclass(frozen=True)
class View:
    """One section's view: the Base, the section's own results (`part`, a dataclass of its
    module), and the lesson calls the page made for it, traced."""
    base: Base
    part: object = None
    traces: dict[str, Trace] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return list(self.base.ids)

    def trace(self, function) -> Trace | object:
        """The traced call of a lesson function for this page, or the function itself."""
        return self.traces.get(function.__name__, function)


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
