"""The section scaffold every chapter uses, and how a lesson's code is shown.

A chapter is an ordered list of section modules. Each module has a TITLE ("Tokenizer — Byte
Pair Encoding"), its lesson function(s), and `render(loaded, view) -> str`, which draws the
section's body and returns its one-line summary. The scaffold draws the rest: the numbered
header with its anchor (the module's name), the summary box, the progress bar, and the links
in the sidebar. A section that can be read before the learner has typed anything (the
tokenizer) says NEEDS_IDS = False. A page may draw its sections in parts (each part in its
own st.fragment, so a control reruns only the sections that depend on it).
"""

import streamlit as st

from token_by_token.trace import Trace, source


def anchor(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def links(modules) -> str:
    """The sidebar's links to the sections: "1. Tokenizer · 2. Logits · …"."""
    return " · ".join(f"[{number}. {module.TITLE.split(' — ')[0]}](#{anchor(module)})"
                      for number, module in enumerate(modules, start=1))


def draw(chapter: str, modules, loaded, view, part: slice = slice(None)) -> bool:
    """The chapter's sections in order (or the `part` of them a fragment of the page draws),
    numbered in the whole chapter. Returns False, after saying why, at the first section
    that needs token ids when there are none: the sections after it can't be drawn."""
    numbered = list(enumerate(modules, start=1))[part]
    for number, module in numbered:
        if not view.ids and getattr(module, "NEEDS_IDS", True):
            st.info("Type some text in the sidebar: the model needs at least one token.")
            return False
        st.header(f"{number}. {module.TITLE}", anchor=anchor(module))
        summary = module.render(loaded, view)
        st.success(f"**Summary.** {summary}")
        st.progress(number / len(modules),
                    text=f"{chapter} · section {number} of {len(modules)}")
    return True


def lesson(*parts: Trace | object, note: str | None = None) -> None:
    """Lesson functions as the page shows them: each line with the values it produced for
    the learner's input (a Trace), and the plain source one click away. A part that is a
    function, not a Trace, shows its source (it was not run for this page)."""
    functions = [part.function if isinstance(part, Trace) else part for part in parts]
    plain = source(*functions)
    if not any(isinstance(part, Trace) for part in parts):
        st.code(plain, language="python")
        return
    live = "\n\n".join(part.code if isinstance(part, Trace) else source(part)
                       for part in parts)
    with_values, source_only = st.tabs(["With your values", "Source only"])
    with with_values:
        if note:
            st.caption(note)
        st.code(live, language="python")
    source_only.code(plain, language="python")
