"""Chapter 3's sidebar: the text box, whose choices every section reads (so it reruns the
page). Every other control of the chapter belongs to one section and is drawn in it (the
sections' WIDGETS): moving it reruns that section alone (token_by_token/chapter.py)."""

import streamlit as st

from token_by_token import controls, state
from token_by_token.chapter import Controls
from token_by_token.tokens import counted

CONTROLS = [
    Controls(state.TEXT_CHOICES, lambda loaded, view: controls.text_box()),
]


def opening(loaded, view) -> None:
    """The learner's KV cache read on new ids (when no chapter has read them yet); the page
    says so while it runs, then what the page measured on."""
    if not view.ready:
        with st.spinner(f"Reading your {counted(len(view.ids), 'token')} into the KV cache…",
                        show_time=True):
            view.cache  # noqa: B018  (read here, kept in the learner's memo)
    st.caption(f"Measured on this machine: {view.machine.describe()}; the model in "
               f"{view.facts.dtype_name}. Measurements are taken once per server process and "
               "size, and again when you press a section's Measure again.")
