"""The progress of a long computation, shown in the page where it is needed.

A computation reports its steps with `report(done, total, what)`: code that doesn't know of
Streamlit (a pipeline, a forward with hooks) and costs nothing when nobody watches. The page
draws a bar where a section is being drawn (`shown(place)`): whatever that section's drawing
computes, lazily, reports into it ("Opening layer 12 of 28 · about 4 s left"); the bar goes
when the section is drawn.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_SINK: ContextVar[Callable | None] = ContextVar("token_by_token_progress", default=None)
EVERY = 0.1  # seconds between two updates of a bar (each is a message to the browser)


def report(done: int, total: int, what: str) -> None:
    """`done` of `total` steps of `what` are done (a no-op unless a bar is shown)."""
    if (sink := _SINK.get()) is not None:
        sink(done, total, what)


@contextmanager
def shown(place) -> Iterator[None]:
    """While inside, reports go to a progress bar in `place` (an st.empty()), with the time
    left estimated from the pace so far; the place is emptied at the end, if a bar was
    drawn (else it is left alone: one message fewer per section drawn)."""
    start, last = time.perf_counter(), [0.0]

    def sink(done: int, total: int, what: str) -> None:
        now = time.perf_counter()
        if now - last[0] < EVERY and done < total:
            return
        last[0] = now
        text = f"{what}: {done:,} of {total:,}"
        if 0 < done < total:
            text += f" · about {(now - start) / done * (total - done):,.0f} s left"
        place.progress(min(done / total, 1.0), text=text)

    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)
        if last[0]:
            place.empty()
