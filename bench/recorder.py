"""`python bench/recorder.py DIR run main.py …`: `streamlit run`, keeping every script run's
element messages in DIR for the second floor (bench/replay.py).

Each run that finishes (a page run or a fragment's; not one stopped for a rerun) becomes one
file, numbered in the order runs finish: `NNNNN-page.pb` or `NNNNN-fragment.pb`, its delta
messages as sent (before Streamlit swaps a message the browser has cached for a reference),
each prefixed by its length (4 bytes).
"""

import itertools
import sys
import threading
from pathlib import Path

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime import app_session
from streamlit.runtime.scriptrunner_utils.script_run_context import ScriptRunContext
from streamlit.web import cli

OUT = Path(sys.argv.pop(1))
OUT.mkdir(parents=True, exist_ok=True)
RUNS: dict[str, tuple[str, list[bytes]]] = {}  # session id -> (kind, messages so far)
NUMBERS, LOCK = itertools.count(), threading.Lock()

sent, enqueue = app_session.AppSession._enqueue_forward_msg, ScriptRunContext.enqueue
FINISHED = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}


def sending(self, msg) -> None:
    kind = msg.WhichOneof("type")
    if kind == "new_session":
        RUNS[self.id] = ("fragment" if msg.metadata.run.fragment_ids else "page", [])
    elif kind == "script_finished" and self.id in RUNS:
        what, messages = RUNS.pop(self.id)
        if msg.script_finished not in FINISHED:  # stopped for a rerun: not the page drawn
            return sent(self, msg)
        with LOCK:
            path = OUT / f"{next(NUMBERS):05d}-{what}.pb"
        path.with_suffix(".tmp").write_bytes(b"".join(len(m).to_bytes(4, "big") + m
                                                      for m in messages))
        path.with_suffix(".tmp").rename(path)  # whole, or not there
    sent(self, msg)


def enqueuing(self, msg) -> None:
    if msg.WhichOneof("type") == "delta" and self.session_id in RUNS:
        RUNS[self.session_id][1].append(msg.SerializeToString())
    enqueue(self, msg)


app_session.AppSession._enqueue_forward_msg = sending
ScriptRunContext.enqueue = enqueuing
sys.argv[0] = "streamlit"
sys.exit(cli.main())
