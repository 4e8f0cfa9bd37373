"""Token by Token: the entry point. Page config, logo, and navigation over the chapters."""

from pathlib import Path

import streamlit as st

from chapter1 import ahead
from token_by_token import model, state, threads, unchanged
from token_by_token.memo import memo_of

ROOT = Path(__file__).parent

st.set_page_config(page_title="Token by Token", page_icon="🔤", layout="centered",
                   initial_sidebar_state="expanded")
st.logo(str(ROOT / "attention.png"), size="large")
threads.for_the_page()  # this run's own tensor operations: one thread if the browser is here
state.init()
unchanged.page_started(st.session_state)  # a page run sends every element (unchanged.py)
with st.sidebar:
    model.picker()

chapter1 = st.Page(ROOT / "chapter1" / "page.py", title="Chapter 1: Tokenization & Sampling",
                   icon="🔢", url_path="chapter-1", default=True)
page = st.navigation([
    st.Page(ROOT / "readme.py", title="README", icon="📖"),
    chapter1,
    st.Page(ROOT / "chapter2" / "page.py", title="Chapter 2: Inside the Model", icon="🧠",
            url_path="chapter-2"),
    st.Page(ROOT / "chapter3" / "page.py", title="Chapter 3: The Speed of Inference", icon="⚡",
            url_path="chapter-3"),
])
if page is not chapter1:  # Chapter 1's step taken ahead is let go with its memory
    ahead.drop(memo_of(st.session_state))
page.run()
unchanged.page_finished(st.session_state)
