"""How torch's threads share the CPU with the page: set before torch is first imported.

torch's CPU kernels run on an OpenMP thread pool (libgomp). By default an idle pool thread
spins for a while after every parallel region, holding a core that Streamlit's event loop and,
on a learner's own machine, the browser need; and when another process holds the other core,
each parallel region waits for a descheduled thread. Measured on 2 cores (Qwen3-0.6B shape,
bf16, a cached decode step, the machine busy with other work): the default policy gave a median
step of 240 ms (fastest 33 ms), OMP_WAIT_POLICY=PASSIVE 58 ms; the page's small tensor
operations (a softmax, a top-k, a count over 151,936 scores) 1.3 ms against 0.48 ms. PASSIVE
makes idle pool threads sleep at once: every forward still uses every core.

The process's own settings win: OMP_WAIT_POLICY or OMP_NUM_THREADS set in the environment
(the container sets the threads per replica) are left as they are.
"""

import os
import sys


def share_the_cores() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless set, if torch (libgomp) is not loaded yet: libgomp reads
    it once, when it loads."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


share_the_cores()
