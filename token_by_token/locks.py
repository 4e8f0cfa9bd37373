"""The locks the whole process shares.

FORWARD_LOCK: one forward at a time in this process. Concurrent learners queue instead of
fighting for the same CPU cores (two forwards at once are each slower than one after the
other). Every forward, and every measurement that times the CPU, holds it; it is not
reentrant.
"""

import threading

FORWARD_LOCK = threading.Lock()
