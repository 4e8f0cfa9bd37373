"""The locks the whole process shares, and the one thread its decode steps run in.

FORWARD_LOCK: one forward at a time in this process, on every core. Concurrent learners queue
instead of fighting for the same CPU cores (two forwards at once are each slower than one after
the other). Every forward, and every measurement that times the CPU, holds it; it is not
reentrant. While a thread holds it, that thread's torch operations use every core
(threads.cores()); when it lets go, the thread's own count is back (in a script run, one
when the learner's browser is on this machine: token_by_token/threads.py).

`on_the_torch_thread(fn, *args)`: run a forward in the process's one long-lived torch thread,
on every core. Streamlit runs every rerun in a new thread, and the first forward a thread runs
is slower than the next ones: measured on 2 cores (Qwen3-0.6B shape, bf16, a cached decode
step at 500 tokens, medians of 10), 86.6 ms as a thread's first forward against 73.8 ms later
in the same thread (with one torch thread, 84–85 ms every time: the cost is in setting up the
parallel kernels for a new thread). A Generate click's step, run there, is the later kind.
"""

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

from token_by_token import allocator, threads


class ForwardLock:
    """A lock that gives its holder's torch operations every core while it is held."""

    def __init__(self):
        self._lock = threading.Lock()
        self._before = threads.cores()  # the holder's own count, given back on leaving

    def __enter__(self):
        self._lock.acquire()
        try:
            self._before = threads.use(threads.cores())
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            threads.use(self._before)
        finally:
            self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


FORWARD_LOCK = ForwardLock()

_TORCH = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-by-token-torch",
                            initializer=threads.use, initargs=(threads.cores(),))


def on_the_torch_thread(fn, *args):
    """fn(*args) in the long-lived torch thread; waits for it and returns its result or raises
    its error. The caller holds FORWARD_LOCK: one job at a time, and the thread itself never
    waits for the lock. fn computes only (it runs outside Streamlit's run: it can't draw).
    Its large blocks come from the heap (allocator.kept: a step's KV cache reuses the memory
    of the last one instead of faulting in fresh pages)."""
    return _TORCH.submit(contextvars.copy_context().run, _kept, fn, *args).result()


def _kept(fn, *args):
    with allocator.kept():
        return fn(*args)
