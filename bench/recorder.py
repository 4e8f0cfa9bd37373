"""`python bench/recorder.py DIR run main.py …`: `streamlit run`, keeping every script run's
element messages in DIR for the second floor (bench/replay.py).

Each run that finishes (a page run or a fragment's; not one stopped for a rerun) becomes one
file, numbered in the order runs finish: `NNNNN-page.pb` or `NNNNN-fragment.pb`, its delta
messages as sent (before Streamlit swaps a message the browser has cached for a reference),
each prefixed by its length (bench/recorded.py reads them).

A run's record begins in the script's thread, when Streamlit resets the run's context, before
its first element, and ends when its `script_finished` message leaves, on the event loop; the
two threads don't wait for each other (a run's first elements can be sent before the event
loop has announced the run, and the next run can begin before the last one's end is sent:
seen on a busy machine, a page run recorded without its title). So each session keeps its
runs in the order they began, and each `script_finished` closes the oldest.
"""

import itertools
import sys
import threading
from collections import deque
from pathlib import Path

from recorded import encoded  # bench/, this script's folder
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime import app_session
from streamlit.runtime.scriptrunner_utils.script_run_context import ScriptRunContext
from streamlit.web import cli

OUT = Path(sys.argv.pop(1))
OUT.mkdir(parents=True, exist_ok=True)
# session id -> its runs not finished yet, oldest first: (kind, messages so far)
RUNS: dict[str, deque[tuple[str, list[bytes]]]] = {}
NUMBERS, LOCK = itertools.count(), threading.Lock()

sent, enqueue = app_session.AppSession._enqueue_forward_msg, ScriptRunContext.enqueue
reset = ScriptRunContext.reset
FINISHED = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}


def resetting(self, *args, **kwargs) -> None:
    reset(self, *args, **kwargs)
    kind = "fragment" if kwargs.get("fragment_ids_this_run") else "page"
    RUNS.setdefault(self.session_id, deque()).append((kind, []))


def sending(self, msg) -> None:
    if msg.WhichOneof("type") == "script_finished" and RUNS.get(self.id):
        what, messages = RUNS[self.id].popleft()
        if msg.script_finished not in FINISHED:  # stopped for a rerun: not the page drawn
            return sent(self, msg)
        with LOCK:
            path = OUT / f"{next(NUMBERS):05d}-{what}.pb"
        path.with_suffix(".tmp").write_bytes(encoded(messages))
        path.with_suffix(".tmp").rename(path)  # whole, or not there
    sent(self, msg)


def enqueuing(self, msg) -> None:
    if msg.WhichOneof("type") == "delta" and RUNS.get(self.session_id):
        RUNS[self.session_id][-1][1].append(msg.SerializeToString())  # the run going on
    enqueue(self, msg)


app_session.AppSession._enqueue_forward_msg = sending
ScriptRunContext.enqueue = enqueuing
ScriptRunContext.reset = resetting
sys.argv[0] = "streamlit"
sys.exit(cli.main())
