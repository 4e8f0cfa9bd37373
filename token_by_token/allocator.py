"""Where glibc puts large blocks: a mapping of their own, or its heap.

Apart (the process's rule, set when this module is imported): every block over 1 MB gets a
mapping of its own, given back to the system when freed. glibc's own rule raises that
threshold as large blocks are freed (up to 32 MB) and then serves the next ones from its
heap, which it keeps: Chapter 2's many 16-64 MB attention temporaries left the process 0.6 GB
larger at 512 tokens (peak 2.90 GB, 2.30 GB with this; forward time unchanged, measured).

Kept (`kept()`, while a generation step runs in the torch thread: locks.on_the_torch_thread):
blocks up to 32 MB come from the heap. A step makes every layer's keys and values anew, one
position longer (transformers' DynamicCache concatenates), and a block with a mapping of its
own arrives as fresh pages, which the kernel faults in and zeroes 4 KB at a time: on
Qwen3-0.6B's shape in float32 at 500 tokens (56 blocks of 2 MB), 28,000 page faults a step
and 231-278 ms against 164-214 ms with none (a bare step in the torch thread, fresh processes
alternating, on this VM's AVX2 CPU). From the heap, a step reuses the blocks the last one
freed (about 300 faults a step at 1,024 positions). In the page (two servers in one Chromium,
Generate clicks alternating, medians of 10-12), the page's own step at 500 tokens in float32
went 0.297 / 0.315 -> 0.238 / 0.256 s, at 1,000 tokens in bfloat16 0.393 -> 0.316 s. Not for
everything: with blocks up to 4 or 8 MB from the heap everywhere, Chapter 2 at 1,024 tokens
in bfloat16 peaked at 2.85 / 2.83 GB against 2.57 GB (measured).

No effect where glibc is not the allocator.
"""

import ctypes
from contextlib import contextmanager

M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)
APART = 1 << 20        # blocks over this get a mapping of their own
KEPT = 32 << 20        # during a step: up to this from the heap (glibc's largest threshold)


def _threshold(size: int) -> None:
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, size)
    except (OSError, AttributeError):
        pass


@contextmanager
def kept():
    """Large blocks from the heap, for the work inside (a generation step: see above)."""
    _threshold(KEPT)
    try:
        yield
    finally:
        _threshold(APART)


_threshold(APART)
