"""The locks the whole process shares, and the one thread its decode steps run in.

FORWARD_LOCK: one forward at a time in this process. Concurrent learners queue instead of
fighting for the same CPU cores (two forwards at once are each slower than one after the
other). Every forward, and every measurement that times the CPU, holds it; it is not
reentrant.

`on_the_torch_thread(fn, *args)`: run a forward in the process's one long-lived torch thread.
Streamlit runs every rerun in a new thread, and the first forward a thread runs is slower
than the next ones: measured on 2 cores (Qwen3-0.6B shape, bf16, a cached decode step at 500
tokens, medians of 10), 86.6 ms as a thread's first forward against 73.8 ms later in the same
thread (with one torch thread, 84–85 ms every time: the cost is in setting up the parallel
kernels for a new thread). A Generate click's step, run there, is the later kind.
"""

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

FORWARD_LOCK = threading.Lock()

_TORCH = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-by-token-torch")


def on_the_torch_thread(fn, *args):
    """fn(*args) in the long-lived torch thread; waits for it and returns its result or raises
    its error. The caller holds FORWARD_LOCK: one job at a time, and the thread itself never
    waits for the lock. fn computes only (it runs outside Streamlit's run: it can't draw)."""
    return _TORCH.submit(contextvars.copy_context().run, fn, *args).result()
