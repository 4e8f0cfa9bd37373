"""What the browser already shows is not sent again.

A control reruns the fragment of the sections that read it, and most of what those sections
draw comes out the same: headers, prose, code blocks whose values did not move, the charts of
what the control does not touch (a Temperature move drew 87 of its 96 elements byte for byte
as before; a Generate click 72 of 111). Streamlit sends them all again and the browser lays
them all out again. Here a chapter's fragment sends an element only when it differs from the
one the browser shows at the same place.

How: every element (not a widget) and container that a chapter's fragment draws is sent as
the page's own, without the fragment's id. The browser removes, after a fragment's run, only
the elements of that fragment the run did not send (Streamlit's frontend, `clearStaleNodes`);
the page's own stay as they are (a container the run did not send goes, with all inside it).
So a fragment's run that skips an element leaves the browser showing it.
The record of what was sent where (`Record`, one per learner) starts anew with every page run,
which sends everything.

Two rules keep the page true to what a page run would draw:
- a place that held an element of the fragment's last run and that this run leaves unwritten
  would keep a stale element (the page's own are never removed by a fragment's run): the whole
  page reruns, after the fragment's run;
- a run that did not finish (stopped for a newer one), or whose messages had not all left
  for the browser when it ended (a new run's start drops a fragment's messages not sent yet),
  leaves unknown what the browser got: the next fragment run sends everything and is followed
  by a page run. (At its end a run waits for its messages to leave: 0-5 ms, measured.)
A place whose container changed (another kind of block, or an element where a block was)
loses its record for everything inside it: the browser dropped those elements with it.

`TOKEN_BY_TOKEN_SEND_UNCHANGED=1` turns this off (everything is sent, as Streamlit does): the
benchmarks measure the page both ways.
"""

import hashlib
import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue
from streamlit.runtime.scriptrunner_utils.script_run_context import (
    ScriptRunContext,
    ThreadState,
    get_script_run_ctx,
)

OFF = os.environ.get("TOKEN_BY_TOKEN_SEND_UNCHANGED") == "1"
KEY = "_unchanged"  # the learner's Record in their session state
ONE_SHOT = {"toast", "balloons", "snow"}  # elements that act once, whatever they show


@dataclass
class Record:
    """One learner's: what the browser shows at each place a chapter's fragment drew."""
    shown: dict[tuple, bytes] = field(default_factory=dict)  # delta path -> digest sent there
    owned: dict[str, set] = field(default_factory=dict)  # fragment id -> the places of the
    # elements its last run drew as the page's own
    open: bool = True  # a run began and has not finished yet
    page_run: "Run" = field(default=None, repr=False)  # the page run's, made with the record

    def __post_init__(self):
        self.page_run = Run(self, skip=False)


@dataclass
class Run:
    """A page run, or a fragment's run alone, while a chapter's fragments draw."""
    record: Record = field(repr=False)
    skip: bool  # elements the browser shows as they are are skipped (a fragment's run alone)
    fragments: set = field(default_factory=set)  # the chapter's fragments drawing in it
    drawn: dict[str, set] = field(default_factory=dict)  # fragment id -> the places of the
    # elements it drew as the page's own
    written: set = field(default_factory=set)  # every place written (a container, a widget)


_RUN: ContextVar[Run | None] = ContextVar("token_by_token_unchanged", default=None)


def page_started(state) -> None:
    """The top of every page run: it sends everything, so the record starts anew."""
    state[KEY] = Record()


def page_finished(state) -> None:
    if (record := state.get(KEY)) is not None:
        record.open = not _all_sent()


def _all_sent(wait: float = 0.1) -> bool:
    """Whether every element this run drew has left for the browser (waiting up to `wait`
    seconds). A new run's start drops the fragment's messages not sent yet, and what the
    record says the browser shows must be what it got. Without a server (AppTest): True."""
    ctx = get_script_run_ctx()
    sessions = getattr(Runtime.instance(), "_session_mgr", None) if Runtime.exists() else None
    info = sessions.get_session_info(ctx.session_id) if sessions and ctx else None
    queue = getattr(getattr(info, "session", None), "_browser_queue", None)
    if not isinstance(queue, ForwardMsgQueue):  # (AppTest's runtime is a stand-in)
        return True
    deadline = time.monotonic() + wait
    while any(m.WhichOneof("type") == "delta" for m in list(queue._queue)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


@contextmanager
def drawing(state, alone: bool):
    """Around a chapter's fragment. `alone`: Streamlit reruns it by itself (its own control);
    else it runs as part of a page run or of a fragment around it."""
    fragment, run, record = ThreadState.get().fragment_id, _RUN.get(), state.get(KEY)
    if OFF or fragment is None or record is None:
        yield
        return
    top, unsure = run is None, alone and record.open  # (open: the run before did not finish)
    if top:
        run = Run(record, skip=not unsure) if alone else record.page_run
        record.open = True
    run.fragments.add(fragment)
    run.drawn[fragment] = set()
    token = _RUN.set(run)
    try:
        yield
    finally:
        _RUN.reset(token)
    if top and alone:
        left = any(record.owned.get(f, set()) - run.written for f in run.fragments)
        record.owned.update(run.drawn)
        if unsure or left:
            st.rerun()  # (the page run sends everything; the record stays open until it ends)
        record.open = not _all_sent()
    elif top:  # a page run's
        record.owned.update(run.drawn)


def _digest(kind: str, message) -> bytes:
    """What a container or an element is, in 16 bytes (its kind too: a container and an
    element never compare equal)."""
    return hashlib.blake2b(kind.encode() + b":" + message.SerializeToString(),
                           digest_size=16).digest()


def _fragments_own(block) -> bool:
    """A container that must stay the fragment's: Streamlit's wrapper of what a fragment
    writes into a container made outside it (the browser removes, in it, what the fragment
    no longer draws), and one that acts as a widget (tabs or an expander with a key: a
    change reruns the fragment it belongs to), or a form or dialog."""
    which = block.WhichOneof("type")
    if block.id or which in ("transparent", "form", "dialog"):
        return True
    return which is not None and bool(getattr(getattr(block, which), "id", ""))


def _forget_inside(record: Record, path: tuple) -> None:
    """The browser dropped what was inside `path` (its container was replaced)."""
    for place in [p for p in record.shown if len(p) > len(path) and p[:len(path)] == path]:
        del record.shown[place]


_send = ScriptRunContext.enqueue


def _enqueue(self, msg) -> None:
    """ScriptRunContext.enqueue: what is sent is noted once sent (Streamlit may stop the run
    for a newer one inside the sending, and the message is then never sent)."""
    run = _RUN.get()
    if run is None or msg.WhichOneof("type") != "delta" or \
            msg.delta.fragment_id not in run.fragments:
        return _send(self, msg)
    record, path = run.record, tuple(msg.metadata.delta_path)
    kind = msg.delta.WhichOneof("type")
    if kind == "new_transient":  # a spinner over the element there: the browser keeps that
        return _send(self, msg)  # element beneath it, and gets it back when it is cleared
    element = msg.delta.new_element if kind == "new_element" else None
    which = element.WhichOneof("type") if element is not None else None
    if kind == "add_block":
        digest = _digest(kind, msg.delta.add_block)
        if not _fragments_own(msg.delta.add_block):
            msg.delta.fragment_id = ""  # the page's own, as the elements in it
    elif which is None or which in ONE_SHOT or getattr(getattr(element, which), "id", ""):
        digest = None  # a widget, or a change to an element (add_rows): sent, never skipped
    else:
        digest = _digest(kind, element)
        run.drawn[msg.delta.fragment_id].add(path)
        msg.delta.fragment_id = ""  # the page's own: kept through a fragment's run that
        # skips it
        if run.skip and record.shown.get(path) == digest:
            run.written.add(path)
            self.yield_check()  # (where Streamlit stops a run for a newer one, as a send)
            return None
    before = record.shown.get(path)
    _send(self, msg)
    run.written.add(path)
    if before is not None and (before != digest or digest is None):
        _forget_inside(record, path)  # (what the browser had inside it went with it)
    if digest is None:
        record.shown.pop(path, None)
    else:
        record.shown[path] = digest
    return None


_clear = ForwardMsgQueue.clear


def _clear_whole(self, retain_lifecycle_msgs: bool = False,
                 fragment_ids_this_run: list[str] | None = None) -> None:
    """ForwardMsgQueue.clear at a fragment's run's start drops that fragment's messages not
    sent yet and keeps the page's own: here the page's own inside a dropped container go too
    (the browser could not place them; the run after one that did not finish sends
    everything again)."""
    if fragment_ids_this_run:
        going = [tuple(m.metadata.delta_path) for m in self._queue
                 if m.WhichOneof("type") == "delta"
                 and m.delta.fragment_id in fragment_ids_this_run]
        self._queue = [m for m in self._queue if not (
            m.WhichOneof("type") == "delta" and not m.delta.fragment_id and any(
                len(m.metadata.delta_path) > len(g)
                and tuple(m.metadata.delta_path[:len(g)]) == g for g in going))]
    _clear(self, retain_lifecycle_msgs, fragment_ids_this_run)


ScriptRunContext.enqueue = _enqueue
ForwardMsgQueue.clear = _clear_whole
