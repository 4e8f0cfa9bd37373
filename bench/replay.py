"""The second floor of the browser benchmark: the app's own elements, their values computed
before (Chapter 1).

`BENCH_RECORDS=DIR streamlit run bench/replay.py`, beside the app served by bench/recorder.py
with the same DIR. The sidebar holds Chapter 1's widgets (as bench/floor.py: the same keys,
in fragments nested as the app's: Generate's holds the sampling controls'); the main area
holds what the app last drew: a page run sends the app's newest page run's elements again, a
fragment's run the app's newest fragment run's, message for message, at the same places,
each owned as the app's was (an element the app sent as the page's own, which its fragment's
later runs may skip, token_by_token/unchanged.py, is the page's own here too).
Nothing is computed. What a learner waits for here is Streamlit sending and the browser
drawing the app's elements; the app's time beyond it is the app's own work.
"""

import os
import random
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import (
    enqueue_message,
    get_script_run_ctx,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recorded import main_area  # noqa: E402  (bench/, the script's folder)

from token_by_token import controls, state  # noqa: E402

RECORDS = Path(os.environ["BENCH_RECORDS"])
CHAPTER1 = b"Chapter 1: Tokenization"  # in the title of a page run of Chapter 1
# element types sent as st.empty() in their place (to find what costs the browser most:
# BENCH_REPLAY_SKIP=code,…)
SKIP = set(filter(None, os.environ.get("BENCH_REPLAY_SKIP", "").split(",")))
_REPLAYED: ContextVar[bool] = ContextVar("replayed", default=False)

st.set_page_config(page_title="Replay", layout="centered", initial_sidebar_state="expanded")
state.init()
s = st.session_state


def replay(kind: str) -> None:
    """The app's newest run of this kind ("page" or "fragment"), its elements sent again."""
    runs = sorted(RECORDS.glob(f"*-{kind}.pb"))
    if kind == "page":  # Chapter 1's newest (a run of another page, in a tab closed a moment
        runs = [run for run in runs if CHAPTER1 in run.read_bytes()]  # ago, may end later)
    for msg in main_area(runs[-1], SKIP) if runs else ():
        if msg.delta.fragment_id:  # the app's fragment's: this page's own fragment's
            msg.delta.fragment_id = ""  # (set on sending)
            enqueue_message(msg)
        else:  # the page's own, as the app sent it (token_by_token/unchanged.py: the
            get_script_run_ctx().enqueue(msg)  # browser keeps it through fragment runs)


@contextmanager
def replayed(kind: str):
    """Replay the app's newest run of this kind, unless a run around this one did."""
    if _REPLAYED.get():
        yield
        return
    replay(kind)
    token = _REPLAYED.set(True)
    try:
        yield
    finally:
        _REPLAYED.reset(token)


def generate() -> None:
    s["generated"].append(random.randrange(1000))


@st.fragment
def stepping() -> None:
    with st.sidebar:
        if s["autoregressive"]:
            controls.generate_button(generate)
    with replayed("fragment"):  # (rerun alone; else the page run replayed)
        sampling()


@st.fragment
def sampling() -> None:
    with st.sidebar:
        controls.sampling_controls(state.sampling_reset(None))
    with replayed("fragment"):
        pass


with st.sidebar:
    controls.text_box()
    controls.autoregressive_toggle()
with replayed("page"):
    stepping()
