"""Token by Token: the entry point. Page config, logo, and navigation over the chapters."""

import re
from pathlib import Path

import streamlit as st

from token_by_token import state

ROOT = Path(__file__).parent

st.set_page_config(page_title="Token by Token", page_icon="🔤", layout="centered",
                   initial_sidebar_state="expanded")
st.logo(str(ROOT / "attention.png"), size="large")
state.init()


def readme() -> None:
    """The README, with its images shown by st.image (Markdown can't load local files)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    # re.split with a group alternates: markdown, image path, markdown, ...
    for i, part in enumerate(re.split(r"^!\[[^\]]*\]\(([^)]+)\)$", text, flags=re.M)):
        if i % 2:
            st.image(str(ROOT / part))
        elif part.strip():
            st.markdown(part)


st.navigation([
    st.Page(readme, title="README", icon="📖", url_path="readme"),
    st.Page(ROOT / "chapter1" / "page.py", title="Chapter 1: Tokenization & Sampling",
            icon="🔢", url_path="chapter-1", default=True),
    st.Page(ROOT / "chapter2" / "page.py", title="Chapter 2: Inside the Model", icon="🧠",
            url_path="chapter-2"),
]).run()
