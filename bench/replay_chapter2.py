"""The page bench/chapter2_draw.py times: the app's newest first open of Chapter 2, its
main-area elements sent again with nothing computed, at each odd press of Draw (an even press
draws nothing, so the next odd one draws the chapter afresh).

`BENCH_RECORDS=DIR streamlit run bench/replay_chapter2.py`, beside the app served by
bench/recorder.py with the same DIR. `?skip=code,markdown` sends those element types as
st.empty() in their places: what the browser pays for each kind.
"""

import os
from pathlib import Path

import streamlit as st
from recorded import main_area  # bench/, the script's folder
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

RECORDS = Path(os.environ["BENCH_RECORDS"])
CHAPTER2 = "1. Embeddings — ".encode()  # in a page run of Chapter 2 (its first section)

st.set_page_config(page_title="Replay of Chapter 2", layout="centered")
s = st.session_state
s.setdefault("draws", 0)
skip = set(filter(None, st.query_params.get("skip", "").split(",")))
with st.sidebar:
    if st.button("Draw"):
        s.draws += 1
    st.write(f"draws = {s.draws}")
if s.draws % 2:
    runs = [run for run in sorted(RECORDS.glob("*-page.pb")) if CHAPTER2 in run.read_bytes()]
    for msg in main_area(runs[-1], skip):
        msg.delta.fragment_id = ""  # this page's own
        get_script_run_ctx().enqueue(msg)
