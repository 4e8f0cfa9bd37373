"""A chapter is a declaration: its sections in order, the sidebar's controls, and its view. The
page, its fragments and the tests all follow from it.

Each section module declares what it reads: READS, the session-state keys its drawing depends
on (besides those, only the model). Each block of controls declares what it changes. From
those alone, `run()` builds the page: a control reruns exactly the sections that read what it
changes, in an `st.fragment` of their own, and never the others. Controls whose readers are
every section belong to the page run. A section's own widgets (drawn by its render, listed in
its WIDGETS) rerun the sections that read them.

The fragments nest by the sections they redraw (Chapter 2: the Layer slider redraws sections
2–6, inside it the Query head redraws 3 and 6, inside that the Attention rows redraw 6). Of
two groups that overlap without nesting, the larger reruns a part holding both, the smaller
nested in it (Chapter 2's Token reruns sections 1–8: those reading the token or the Layer;
sections 4 and 5, which read only the Layer, come out the same and are not sent again). Every
section has a place on the page, made by the page run in order, and is drawn there by the
innermost fragment that covers it.

A fragment that finds, when it reruns alone, that a choice read by a section outside it
changed (Chapter 1's Branch button, in Section 5, cuts the generated ids that Section 2 reads
too) reruns the page, so no section is left showing an older choice.
"""

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

import streamlit as st

from token_by_token import progress, sections, threads, unchanged
from token_by_token.memo import Slot, memo_of
from token_by_token.state import BUTTONS


@dataclass(frozen=True)
class Controls:
    """A block of widgets in the sidebar, drawn together, and the choices they change.
    `draw(loaded, view)` draws them; `after(loaded, view)`, if any, runs once the sections
    they rerun are drawn."""
    changes: frozenset[str]
    draw: Callable | None = None
    after: Callable | None = None


@dataclass(frozen=True)
class Chapter:
    """Everything a chapter's page is made of."""
    name: str              # "Chapter 1"
    sections: list         # the section modules, in order
    controls: list         # the blocks of Controls in the sidebar, in order
    view: Callable         # view(loaded, state): what every section's render reads
    opening: Callable | None = None  # opening(loaded, view), in the first section's place
    # before any section is drawn (Chapter 2: a spinner while the model is opened)
    waiting: Callable | None = None  # waiting(loaded): the sidebar while the weights download
    # (then only the sections that declare NEEDS_MODEL = False are drawn)

    def readers(self, keys) -> frozenset[int]:
        """The sections (their indexes) whose READS meet `keys`."""
        return frozenset(i for i, module in enumerate(self.sections)
                         if set(module.READS) & set(keys))

    def parts(self) -> "Part":
        """The page as a tree of parts: the page run at the root, a fragment per group of
        controls that rerun the same sections, nested by the sections they rerun."""
        blocks = [*self.controls, *(Controls(frozenset(getattr(m, "WIDGETS", ())))
                                    for m in self.sections if getattr(m, "WIDGETS", ()))]
        # the sections some control reruns (one that reads no control's choice, Chapter 2's
        # comparison with GPT-2, is drawn by the page run alone)
        everything = self.readers(set().union(*(block.changes for block in blocks)))
        groups: dict[frozenset[int], list[Controls]] = {}
        root = []
        for block in blocks:
            readers = self.readers(block.changes)
            (root if readers in (everything, frozenset()) else
             groups.setdefault(readers, [])).append(block)
        while overlap := next(((a, b) for a in groups for b in groups
                               if a & b and not (a <= b or b <= a)), None):
            # two groups overlap without one holding the other: the larger one's controls
            # rerun both (the smallest part holding them: its sections that don't read
            # those controls are drawn again as they were, and the browser is sent nothing
            # for them: token_by_token/unchanged.py), the smaller keeps its fragment inside
            # it (Chapter 2's Token: the sections reading it or the Layer, not the page)
            larger, both = max(overlap, key=len), overlap[0] | overlap[1]
            (root if both == everything else groups.setdefault(both, [])).extend(
                groups.pop(larger))
        parts = {covered: Part(covered, blocks) for covered, blocks in groups.items()}
        top = Part(frozenset(range(len(self.sections))), root)
        for covered in sorted(parts, key=len):  # each inside the smallest part holding it
            holders = [p for c, p in parts.items() if covered < c]
            parent = min(holders, key=lambda p: len(p.sections)) if holders else top
            parent.children.append(parts[covered])
        for part in [top, *parts.values()]:  # in the order of their sections
            part.children.sort(key=lambda p: min(p.sections))
        return top


@dataclass
class Part:
    """Sections redrawn together, the controls that rerun them, and the parts inside."""
    sections: frozenset[int]
    controls: list
    children: list = field(default_factory=list)

    def own(self) -> list[int]:
        """The sections this part draws itself: those no part inside it draws."""
        inner = set().union(*(c.sections for c in self.children))
        return sorted(self.sections - inner)


DRAWN: Slot[dict] = Slot("chapter.drawn")  # what the page drew, and with which choices


def run(chapter: Chapter, loaded) -> bool:
    """Draw the chapter: its links and controls in the sidebar, every section in its place.
    Returns whether the sections could be drawn (False: no token ids, and the page said so;
    or the model's weights are still downloading)."""
    if not loaded.ready:
        return _without_model(chapter, loaded)
    token = _WITHIN.set(True)  # the fragments called below run as part of the page run
    try:
        st.sidebar.markdown(sections.links(chapter.sections))
        places = [st.container() for _ in chapter.sections]  # each section's place, in order
        view = chapter.view(loaded, st.session_state)
        if chapter.opening is not None and view.ids:
            with places[0]:
                chapter.opening(loaded, view)
        _draw_part(chapter, loaded, chapter.parts(), places, view)
        return bool(view.ids)
    finally:
        _WITHIN.reset(token)


def _without_model(chapter: Chapter, loaded) -> bool:
    """While the model's weights download: the sections that need only the tokenizer
    (NEEDS_MODEL = False), with the chapter's `waiting` controls; the others say they wait."""
    if chapter.waiting is not None:
        with st.sidebar:
            chapter.waiting(loaded)
    view = chapter.view(loaded, st.session_state)
    later = [i for i, m in enumerate(chapter.sections) if getattr(m, "NEEDS_MODEL", True)]
    for index in range(len(chapter.sections)):
        if index not in later:
            _draw_section(chapter, loaded, index, view)
        elif index == later[0]:
            numbers = [str(i + 1) for i in later]
            st.info(f"Section{'s' if len(later) > 1 else ''} {', '.join(numbers)} of "
                    f"{chapter.name} need{'' if len(later) > 1 else 's'} the model's "
                    "weights: they appear here as soon as the download above is done.",
                    icon="⏳")
    return False


# True while a page run or a fragment's run is drawing: a fragment called then runs as part of
# it; a fragment that starts without it is one Streamlit reruns alone (its own widget)
_WITHIN: ContextVar[bool] = ContextVar("token_by_token_chapter_run", default=False)


def _drawn(loaded) -> dict:
    """This learner's record of what each chapter's page drew: per section, the choices it
    was drawn with."""
    memo = memo_of(st.session_state).for_model(loaded.model_id)
    if (drawn := memo.get(DRAWN, "all")) is None:
        drawn = memo.put(DRAWN, "all", {})
    return drawn


def _draw_part(chapter, loaded, part: Part, places, view) -> None:
    """A part's controls (in the sidebar), then its own sections (each in its place) and the
    parts inside it (each in its fragment), in the order of their first sections: what the
    learner reads first is drawn first (Chapter 2's section 1 before the model is opened)."""
    with st.sidebar:
        for block in part.controls:
            if block.draw is not None:
                block.draw(loaded, view)
    view = chapter.view(loaded, st.session_state)  # as the controls left the choices
    inner = {min(child.sections): child for child in part.children}
    for first in sorted([*part.own(), *inner]):
        if first in inner:
            _fragment(chapter, loaded, inner[first], places)
        else:
            with places[first]:
                _draw_section(chapter, loaded, first, view)
    with st.sidebar:
        for block in part.controls:
            if block.after is not None:
                block.after(loaded, view)


@st.fragment
def _fragment(chapter, loaded, part: Part, places) -> None:
    """A part of the page in a fragment: its controls rerun it alone. Rerun alone, it first
    checks the sections outside it: if a choice one of them reads has changed since it was
    drawn (the part's own widgets changed it), the whole page reruns."""
    threads.for_the_page()  # (rerun alone, it runs in a thread of its own)
    state = st.session_state
    if not _WITHIN.get():  # rerun alone
        drawn = _drawn(loaded)
        for index, module in enumerate(chapter.sections):
            before = drawn.get((chapter.name, index))
            if index not in part.sections and before not in (None, _choices(state, module)):
                st.rerun()
    alone, token = not _WITHIN.get(), _WITHIN.set(True)
    try:
        with unchanged.drawing(state, alone):  # (what the browser shows as it is is not sent)
            _draw_part(chapter, loaded, part, places, chapter.view(loaded, state))
    finally:
        _WITHIN.reset(token)


def _choices(state, module) -> dict:
    """The choices a section reads, as it reads them now. A button is an event, not a
    choice: its value is None before its first drawing and False after (a section's own
    Measure again button made every fragment of Chapter 3 rerun the whole page)."""
    return {key: _frozen(state.get(key)) for key in sorted(module.READS)
            if key not in BUTTONS}


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def _draw_section(chapter, loaded, index: int, view) -> None:
    """One section in its place; without token ids, the first section that needs them says
    so and the others stay empty."""
    module = chapter.sections[index]
    try:
        if not view.ids and getattr(module, "NEEDS_IDS", True):
            needing = [i for i, m in enumerate(chapter.sections)
                       if getattr(m, "NEEDS_IDS", True)]
            if index == needing[0]:
                st.info("Type some text in the sidebar: the model needs at least one token.")
            return
        bar = st.empty()  # the progress of what drawing it computes (token_by_token/progress)
        with progress.shown(bar):
            sections.draw_one(chapter.name, chapter.sections, index, loaded, view)
    finally:  # the choices as the section left them: a widget it draws may fit its own
        # value first (Chapter 3's Draft layers: None, then half the model's layers)
        _drawn(loaded)[chapter.name, index] = _choices(st.session_state, module)
