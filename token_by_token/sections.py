"""The section scaffold every chapter uses, and how a lesson's code is shown.

A chapter is an ordered list of section modules (its package's SECTIONS; token_by_token/
chapter.py builds the page from it). Each module has a TITLE ("Tokenizer — Byte Pair
Encoding"), READS (the session-state keys its drawing reads), its lesson function(s), and
`render(loaded, view) -> str`, which draws the section's body from the view and returns its
one-line summary; it only reads. The scaffold draws the rest: the numbered header with its
anchor (the module's name), the summary box, the progress bar, and the links in the sidebar.
A section that can be read before the learner has typed anything (the tokenizer) says
NEEDS_IDS = False; one that draws widgets of its own lists their keys in WIDGETS.
"""

import contextlib
import sys

import streamlit as st

from token_by_token.trace import Trace, source


def anchor(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def links(modules) -> str:
    """The sidebar's links to the sections: "1. Tokenizer · 2. Logits · …"."""
    return " · ".join(f"[{number}. {module.TITLE.split(' — ')[0]}](#{anchor(module)})"
                      for number, module in enumerate(modules, start=1))


def draw_one(chapter: str, modules, index: int, loaded, view) -> None:
    """Section `index` of the chapter's `modules`: its numbered header (with the module's name
    as anchor), its body (render), its summary box and the progress bar."""
    module, number = modules[index], index + 1
    st.header(f"{number}. {module.TITLE}", anchor=anchor(module))
    summary = module.render(loaded, view)
    st.success(f"**Summary.** {summary}")
    st.progress(number / len(modules), text=f"{chapter} · section {number} of {len(modules)}")


def small_table(data, formats: dict[str, str] | None = None, most: int | None = None) -> None:
    """A table of a few rows as static HTML (st.table), not st.dataframe's grid: a canvas
    widget that the browser keeps laying out after every rerun that redraws it (Chapter 1's
    survivors table as a grid: a Generate at 500 tokens held still 0.13 s later in
    Chromium), and that Ctrl-F can't search. Not cheaper per cell: five tables of 28 rows ×
    4 columns, new on a rerun, cost Chromium's script 0.21–0.23 s as tables, 0.07 s as grids
    (which then kept changing the page for 0.21 s; measured).

    `formats`: a column's format ("{:.1%}"), else the value as it is. `most`: the rows shown
    at once; a longer table (a row per layer) scrolls within their height. Over LONG rows it
    is a grid after all (a row per position of a long text): the browser draws only the rows
    in view."""
    rows, scrolls = len(data), most is not None and len(data) > most
    if formats:  # (a fixed id: the same table sends the same element)
        data = data.style.format(formats).set_uuid("table")
    if rows > LONG:
        st.dataframe(data, hide_index=True, height=ROW * (min(most or rows, rows) + 1))
        return
    with st.container(height=ROW * (most + 1)) if scrolls else contextlib.nullcontext():
        st.table(data, hide_index=True)


ROW = 36  # pixels: a row of st.table's, for the height of one that scrolls
LONG = 100  # rows: a longer table is a grid


def number(module) -> int:
    """The section's number in its chapter (from the chapter package's SECTIONS), for prose:
    f"section {number(patterns)}" stays true when sections move."""
    package = sys.modules[module.__name__.rsplit(".", 1)[0]]
    return package.SECTIONS.index(module) + 1


TABS = ["With your values", "Source only"]  # (the tabs' keys, one per lesson shown, are
# made here: which tab a learner reads is not a choice the page derives anything from)


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
    # the plain source is built when its tab is opened: two code blocks per lesson cost the
    # browser a quarter of a slider move's time (0.167 -> 0.120 s, measured in Chromium)
    key = "lesson:" + "+".join(f"{f.__module__}.{f.__qualname__}" for f in functions)
    with_values, source_only = st.tabs(TABS, key=key, on_change="rerun")
    with with_values:
        if note:
            st.caption(note)
        st.code(live, language="python")
    if st.session_state.get(key) == TABS[1]:
        source_only.code(plain, language="python")
