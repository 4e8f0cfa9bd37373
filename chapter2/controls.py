"""Chapter 2's sidebar: its blocks of controls, each with the choices it changes. The page
reruns, for each block, exactly the sections that read those choices
(token_by_token/chapter.py): the text reruns the page; the Token the sections that read it or
the Layer (their readers overlap: one part holds both); inside it the Layer its sections, inside
them the Query head its own, and so on. None runs the model."""

from chapter2.patterns import ROWS
from token_by_token import controls, state
from token_by_token.chapter import Controls
from token_by_token.tokens import show


def token(loaded, view) -> None:
    if view.ids:
        controls.token_slider([f"{i}: {show(loaded.tokenizer, t)}"
                               for i, t in enumerate(view.ids)])


CONTROLS = [
    Controls(state.TEXT_CHOICES, lambda loaded, view: controls.text_box()),
    Controls(frozenset({"position"}), token),
    Controls(frozenset({"layer"}), lambda loaded, view: controls.layer_slider(
        view.facts.layers)),
    Controls(frozenset({"head"}), lambda loaded, view: controls.head_slider(view.facts.heads)),
    Controls(frozenset({"window"}), lambda loaded, view: controls.rows_slider(ROWS)),
    Controls(frozenset({"halfway"}), lambda loaded, view: controls.halfway_toggle()),
]
