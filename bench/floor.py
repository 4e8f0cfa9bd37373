"""The floor page of the browser benchmark: the app's sidebar controls and nothing else.

`streamlit run bench/floor.py`: the same widgets, keys and ranges as Chapter 1's sidebar, and a
main area that only prints the choices. Whatever the app takes beyond this page's time is the
app's own cost (bench/browser.py measures both in one run).
"""

import random
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from token_by_token import state  # noqa: E402

st.set_page_config(page_title="Floor", layout="centered", initial_sidebar_state="expanded")
state.init()
s = st.session_state


def generate() -> None:
    s["generated"].append(random.randrange(1000))


with st.sidebar:
    st.text_area("Your text", key="text", on_change=state.text_edited, height=120,
                 disabled=s["autoregressive"])
    st.toggle("Autoregressive mode", key="autoregressive")
    if s["autoregressive"]:
        st.button("Generate next token", key="generate", type="primary", on_click=generate)
    st.subheader("Sampling")
    for key in state.SLIDERS:
        state.slider(key)
    st.button("Reset to Qwen3's defaults", on_click=state.reset_sampling)
    state.seed_input()
    st.button("Resample", key="resample", on_click=state.resample)

st.title("Floor page")
st.markdown(f"temperature = {s['temperature']:g}, top_k = {s['top_k']}, "
            f"top_p = {s['top_p']:g}, min_p = {s['min_p']:g}")
st.markdown(f"seed = {s['seed']}, resamples = {s['resamples']}")
st.markdown(f"{len(s['generated'])} generated so far")
