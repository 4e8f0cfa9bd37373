"""Chapter 2's sidebar: its blocks of controls, each with the choices it changes. The page
reruns, for each block, exactly the sections that read those choices
(token_by_token/chapter.py): the text and the Token rerun the page (most sections read the
token); the Layer its sections, inside them the Query head its own, and so on. None runs the
model."""

import streamlit as st

from chapter2.patterns import ROWS
from token_by_token import controls, state
from token_by_token.chapter import Controls
from token_by_token.tokens import counted, show


def text_and_token(loaded, view) -> None:
    controls.text_box()
    if view.ids:
        controls.token_slider([f"{i}: {show(loaded.tokenizer, t)}"
                               for i, t in enumerate(view.ids)])


CONTROLS = [
    Controls(state.TEXT_CHOICES | {"position"}, text_and_token),
    Controls(frozenset({"layer"}), lambda loaded, view: controls.layer_slider(
        view.facts.layers)),
    Controls(frozenset({"head"}), lambda loaded, view: controls.head_slider(view.facts.heads)),
    Controls(frozenset({"window"}), lambda loaded, view: controls.rows_slider(ROWS)),
    Controls(frozenset({"halfway"}), lambda loaded, view: controls.halfway_toggle()),
]


def opening(loaded, view) -> None:
    """The model opened on new ids: a forward by the library and one by hand, every layer
    checked; the page says so while it runs."""
    if not view.ready:
        with st.spinner(f"Running the model on your {counted(len(view.ids), 'token')} twice: "
                        "by the library, then by hand with the lesson functions…",
                        show_time=True):
            view.inside  # noqa: B018  (computed here, read by the sections)
