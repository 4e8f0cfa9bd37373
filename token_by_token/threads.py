"""How torch's threads share the CPU with the page.

torch's CPU kernels run on an OpenMP thread pool (libgomp). By default an idle pool thread
spins for a while after every parallel region, holding a core that Streamlit's event loop and,
on a learner's own machine, the browser need; and when another process holds the other core,
each parallel region waits for a descheduled thread. Measured on 2 cores (Qwen3-0.6B shape,
bf16, a cached decode step, the machine busy with other work): the default policy gave a median
step of 240 ms (fastest 33 ms), OMP_WAIT_POLICY=PASSIVE 58 ms; the page's small tensor
operations (a softmax, a top-k, a count over 151,936 scores) 1.3 ms against 0.48 ms. PASSIVE
makes idle pool threads sleep at once. It is set when this module is imported, before torch.

What PASSIVE costs a forward: its threads meet at every operation, and a thread that slept must
be woken. Alone on this 2-core VM, a cached step at 500 tokens took 198-216 ms with PASSIVE
against 131-152 ms with libgomp's default (medians of 15, two rounds); a short spin
(GOMP_SPINCOUNT, read with any policy: 10,000 or 100,000) got most of it back there (129-166
ms), and a whole Generate click without a browser too (AppTest, fresh processes alternating,
medians of 12: 226-278 ms with PASSIVE, 190-243 ms with 100,000). Beside the browser it does
not: in one Chromium, the variants alternating (medians of 11-13), the page's own step took
188 ms with PASSIVE against 223 / 224 ms with 10,000 / 100,000 spins at 500 tokens, and 160
against 184 / 197 ms with 30,000 / 100,000 at 10. So PASSIVE stays. A replica pinned to cores
of its own could spin (GOMP_SPINCOUNT in its environment); compose.yaml's replicas share the
host's cores under CPU quotas, where a spinning thread would spend its replica's quota
(reasoned, not measured): not set there.

Then each thread decides how many of torch's threads its own operations use (OpenMP keeps the
count per thread): a forward takes every core (`cores()`, held by locks.FORWARD_LOCK and in the
long-lived torch thread), while a script run's small operations on the vocabulary (the filters,
the sample, the tables) take one when the learner's browser runs on the same machine
(`for_the_page`): on 2 cores shared with the browser, a second thread joining each of them
waits for a core more than it saves; with the browser elsewhere (a served app) they take
every core.

The process's own settings win: OMP_WAIT_POLICY or OMP_NUM_THREADS set in the environment
(the container sets the threads per replica) are left as they are, and OMP_NUM_THREADS is what
`cores()` gives a forward.
"""

import os
import sys
from functools import cache

PAGE = 1  # torch's threads for a script run's own operations (not its forwards)


def share_the_cores() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless set, if torch (libgomp) is not loaded yet: libgomp reads
    it once, when it loads."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


share_the_cores()

import streamlit as st  # noqa: E402
import torch  # noqa: E402  (after the policy: libgomp reads it when torch loads it)


@cache
def cores() -> int:
    """The threads a forward uses: torch's own default for this process (OMP_NUM_THREADS if
    set, else one per core), read once, before any thread changes its own."""
    return torch.get_num_threads()


def use(threads: int) -> int:
    """torch on `threads` threads in the calling thread from now on; returns the count it had.
    (Setting it clears oneDNN's kernel cache: nothing is set when the count is already right.)"""
    before = torch.get_num_threads()  # (a thread's first call also fixes its own count)
    if threads != before:
        torch.set_num_threads(threads)
    return before


def browser_here() -> bool:
    """Whether the learner's browser runs on this machine: Streamlit gives no address for a
    connection from localhost (nor outside a served session: AppTest's is a stand-in)."""
    return not isinstance(st.context.ip_address, str)


def for_the_page() -> None:
    """At the start of a script run (a page's or a fragment's, each in a new thread): its own
    tensor operations on one thread when the learner's browser shares this machine's cores,
    on every core when it is elsewhere (a served app); its forwards take every core either
    way (FORWARD_LOCK). Measured on 2 cores, Qwen3-0.6B shape, paired: with Chromium on the
    machine, one thread made a Temperature move 0-15 % faster; without a browser (AppTest, the
    whole page's rerun), it made it slower, 0.046 -> 0.062 s."""
    cores()  # (read before the first thread lowers its own)
    use(PAGE if browser_here() else cores())
