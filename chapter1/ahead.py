"""The next Generate click's step, taken while the learner reads the page.

Once a page that a step drew (Generate, Play, a branch) is on screen, the id the next Generate
click will append is known: the one Section 4 shows as sampled (the same choices sample the same
id). So the process runs that step then, in the background (`wanted`, `launch`): the same
`one_step`, on a copy of the learner's KV cache that shares its tensors (a step makes each
layer's keys and values anew, so the page's own cache never changes). The click takes the
step already made (`take`) instead of running the model while the learner waits. A slider,
the seed or a new text changes the ids the click makes: it runs its own step, and the one
taken ahead is dropped.

At most one per learner, one step's work; the job waits for FORWARD_LOCK like any forward, and a
click that comes before the job has begun takes the lock first: the job then never runs.
"""

import contextvars
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from token_by_token.locks import FORWARD_LOCK
from token_by_token.memo import Memo, Slot

# True in the jobs' forwards (the torch thread runs them in a copy of the job's context): what
# tests/helpers.counting_forwards tells apart from the forwards a click waits for.
RUNNING: contextvars.ContextVar[bool] = contextvars.ContextVar("stepping ahead", default=False)


class Job:
    """One step taken ahead: for `ids` (the learner's and the next id), once made, `forward`,
    and when it was finished (time.perf_counter)."""

    def __init__(self, memo: Memo, ids: tuple[int, ...], start: float):
        self.memo = weakref.ref(memo)
        self.ids, self.start, self.forward, self.finished = ids, start, None, None
        self.dropped = False

    def run(self, make) -> None:
        if self.dropped:
            return
        time.sleep(max(self.start - time.monotonic(), 0))
        with FORWARD_LOCK:
            memo = self.memo()
            if self.dropped or memo is None or memo.latest(JOB) is not self:
                return  # the learner's next forward came first, or their memo was reset
            token = RUNNING.set(True)
            start = time.perf_counter()
            try:
                self.forward = replace(make(), ahead=True, seconds=time.perf_counter() - start)
            except Exception:  # the click runs the step itself and shows what went wrong
                logging.getLogger(__name__).exception("a step taken ahead failed")
            finally:
                RUNNING.reset(token)
                self.finished = time.perf_counter()


# Seconds from the page's last element to the job's start: the browser is still drawing the
# page then, on the same cores when it runs on this machine. Measured (Chromium and the server
# on 2 cores, Qwen3-0.6B shape, bfloat16, 500 tokens, medians of 12): a Generate click 0.468 s
# stepping on the click, 0.375 s taken ahead at once (the step itself 0.204 s, slowed by the
# browser), 0.352 s taken ahead after 0.3 s (0.148 s). A click within it runs its own step.
READING = 0.3
JOB: Slot[Job] = Slot("chapter1.ahead")
WANTED: Slot[bool] = Slot("chapter1.ahead wanted")  # ids a step made: step ahead once drawn
_JOBS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-by-token-ahead")


def want(memo: Memo, ids) -> None:
    """A step made the forward of `ids`: once its page is drawn, take the next one ahead."""
    memo.put(WANTED, tuple(ids), True)


def wanted(memo: Memo, ids) -> bool:
    """Did a step make the forward of `ids` since its page was last drawn? Asked once per
    page, by its last hook: a rerun that changes no ids (a slider) never runs the model."""
    made = memo.get(WANTED, tuple(ids)) is not None
    memo.put(WANTED, None, None)
    return made


def launch(memo: Memo, ids, make) -> None:
    """Run `make()` (the step to `ids`) in the background, READING seconds from now, and keep
    it for the click."""
    job = memo.put(JOB, None, Job(memo, tuple(ids), time.monotonic() + READING))
    _JOBS.submit(contextvars.copy_context().run, job.run, make)


def take(memo: Memo, ids, asked: float) -> object | None:
    """The forward made ahead if it is for `ids`, else None; either way the learner's job is
    let go (one not yet begun never begins). The caller holds FORWARD_LOCK: no job is
    running. `asked`: when the caller's forward was asked for (time.perf_counter); a step
    that finished after it was partly waited for, and is not said to be taken ahead."""
    job = drop(memo)
    if job is None or job.forward is None or job.ids != tuple(ids or ()):
        return None
    return job.forward if job.finished <= asked else replace(job.forward, ahead=False)


def drop(memo: Memo) -> Job | None:
    """Let go of the learner's job (its memory: a KV cache of one more position), if any."""
    job = memo.latest(JOB)
    memo.put(JOB, None, None)
    if job is not None:
        job.dropped = True
    return job


def taken_ahead(memo: Memo) -> tuple[int, ...] | None:
    """The ids the learner's job steps to, if they have one."""
    job = memo.latest(JOB)
    return None if job is None else job.ids


def settled() -> None:
    """Wait for every job launched so far (tests: an action's forwards are all counted)."""
    _JOBS.submit(lambda: None).result()
