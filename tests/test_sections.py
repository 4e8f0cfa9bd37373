"""The sections of every chapter, from the chapters' own declarations: each declares what it
reads and its lessons; every lesson is short, documented and pure; every section is drawn once,
in order; and a control reruns exactly the sections that read it (a section that doesn't read
a choice draws the same whatever that choice is)."""

import ast
import inspect
from pathlib import Path

import pyarrow
import pytest
from helpers import CHAPTER1, CHAPTER2, CHAPTER3, README, run_app

import chapter1
import chapter2
import chapter3
from token_by_token import sections, state
from token_by_token.chapter import DRAWN, Chapter, Controls, _choices

CHAPTERS = {"chapter1": chapter1, "chapter2": chapter2, "chapter3": chapter3}
PAGES = {"chapter1": CHAPTER1, "chapter2": CHAPTER2, "chapter3": CHAPTER3}
ALL_SECTIONS = [(name, module) for name, package in CHAPTERS.items()
                for module in package.SECTIONS]


def test_importing_a_chapter_gives_its_sections_without_running_a_page():
    for package in CHAPTERS.values():
        assert package.SECTIONS and package.CHAPTER.sections is package.SECTIONS
        assert [m.__name__.split(".")[0] for m in package.SECTIONS] == \
            [package.__name__] * len(package.SECTIONS)


@pytest.mark.parametrize("chapter, module", ALL_SECTIONS,
                         ids=[m.__name__ for _, m in ALL_SECTIONS])
def test_every_section_declares_what_it_reads_and_shows(chapter, module):
    assert isinstance(module.TITLE, str) and callable(module.render)
    assert module.READS and set(module.READS) <= set(state.DEFAULTS) | state.BUTTONS, \
        set(module.READS) - set(state.DEFAULTS) - state.BUTTONS  # every key has a default
    assert set(getattr(module, "WIDGETS", ())) <= set(module.READS)
    assert all(inspect.isfunction(f) for f in module.LESSONS)


def lessons():
    for _, module in ALL_SECTIONS:
        for function in module.LESSONS:
            yield pytest.param(function, id=f"{module.__name__}.{function.__name__}")


@pytest.mark.parametrize("function", list(lessons()))
def test_every_lesson_is_short_documented_and_narrow(function):
    source = inspect.getsource(function)
    assert max(map(len, source.splitlines())) <= 80
    node = ast.parse(source).body[0]
    assert ast.get_docstring(node)
    body = node.body[1:]  # without the docstring
    assert body[-1].end_lineno - body[0].lineno + 1 <= 15
    assert "streamlit" not in source and "st." not in source


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_section_is_drawn_once_in_order_with_its_lessons(chapter):
    at = run_app(PAGES[chapter])
    package = CHAPTERS[chapter]
    headers = [h.value for h in at.header]
    expected = [f"{n}. {m.TITLE}" for n, m in enumerate(package.SECTIONS, start=1)]
    assert [h for h in headers if h[0].isdigit()] == expected
    assert headers[-1] == "Conclusion"
    shown = "\n".join(c.value for c in at.code)
    for module in package.SECTIONS:
        for function in module.LESSONS:
            if function.__name__ in NOT_ON_THE_DEFAULT_PAGE:
                continue
            assert f"def {function.__name__}(" in shown, function.__name__


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_page_run_draws_its_first_section_first(chapter, monkeypatch):
    """What the learner reads first is drawn first: a part's own sections and the parts
    inside it go in the order of their first sections (Chapter 2's section 1 before a later
    section opens the model; drawn after the sections the page run holds itself, it waited
    for the whole opening). A fragment draws its sections together, so one whose sections
    are apart (Chapter 2's Query head: sections 3 and 6) comes before the sections between."""
    drawn = []
    draw_one = sections.draw_one

    def recording(chapter_name, modules, index, *args):
        drawn.append((chapter_name, index))
        return draw_one(chapter_name, modules, index, *args)

    monkeypatch.setattr(sections, "draw_one", recording)
    run_app(PAGES[chapter])  # (main.py's first run draws Chapter 1, then the page's run)
    package = CHAPTERS[chapter]
    order = [index for name, index in drawn if name == package.CHAPTER.name]
    order = order[-len(package.SECTIONS):]
    assert order[0] == 0 and sorted(order) == list(range(len(package.SECTIONS))), order
    if chapter != "chapter2":  # (every fragment's sections are next to each other)
        assert order == sorted(order)


# lessons the default page does not show (another mode, or the contract's whole-model calls)
NOT_ON_THE_DEFAULT_PAGE = {"chat", "branch", "many_draws", "total_variation", "mid_stream",
                           "logit_lens", "mid_lens", "attention_weights", "window_weights",
                           "norm", "tied", "nearest", "angles", "rope_theta", "kv_head_of",
                           "llama3_speeds",  # (on a Llama 3 model's page)
                           # Chapter 3: the other draft, the check above temperature 0
                           "prompt_lookup", "first_ids"}


def everything(node) -> str:
    """All a part of the page holds, element by element, as the browser receives it."""
    children = getattr(node, "children", None)
    if children:
        return "\n".join(everything(child) for child in children.values())
    return f"{type(node).__name__}: {getattr(node, 'proto', node)}"


def section_drawings(at) -> dict[int, str]:
    """Every section's drawing on the page, by its number: all it holds, as text."""
    drawings = {}
    for block in at.main.children.values():
        text = everything(block)
        for header in block.get("header") if hasattr(block, "get") else []:
            number = header.value.split(".")[0]
            if number.isdigit():
                drawings[int(number)] = text
    return drawings


CHANGES = {  # a choice per control, and another value for it
    "chapter1": {"temperature": 1.3, "top_k": 5, "top_p": 0.5, "min_p": 0.2, "seed": 7,
                 "heatmap_rows": 3, "lookup": "the"},
    "chapter2": {"layer": 1, "head": 2, "window": 5, "halfway": True, "position": 2},
    "chapter3": {"batch_length": 16, "flash_block": 8, "quant_scheme": "4-bit",
                 "spec_draft": "lookup", "spec_layers": 1, "spec_k": 2, "spec_temperature": 0.8,
                 "paged_block": 4, "paged_learners": 50, "paged_length": 100,
                 "paged_prefix": 64},
}


@pytest.mark.parametrize("chapter, key", [(c, k) for c, keys in CHANGES.items() for k in keys])
def test_a_choice_changes_only_the_sections_that_read_it(chapter, key):
    """READS is true: a section that doesn't declare a choice draws exactly the same when the
    choice changes (so the page may leave it out of the choice's rerun)."""
    package = CHAPTERS[chapter]
    at = run_app(PAGES[chapter])
    before = section_drawings(at)
    at.session_state[key] = CHANGES[chapter][key]
    at.run()
    assert not at.exception
    after = section_drawings(at)
    assert set(before) == set(after) == set(range(1, len(package.SECTIONS) + 1))
    for number, module in enumerate(package.SECTIONS, start=1):
        if key not in module.READS:
            assert before[number] == after[number], (module.__name__, key)


# --- the scaffold: a chapter built from a list --------------------------------------------

def test_a_control_reruns_exactly_the_sections_that_read_it():
    """The page's parts follow from READS alone (token_by_token/chapter.py): each control's
    fragment holds the sections that read what it changes, nested by inclusion."""
    def tree(package, part=None):
        part = part or package.CHAPTER.parts()
        names = [m.__name__.rsplit(".", 1)[1] for m in package.SECTIONS]
        return ([names[i] for i in part.own()], [tree(package, c) for c in part.children])
    assert tree(chapter2) == (
        ["kvcache", "since_gpt2"],
        [(["embeddings", "stream"], [
            (["rmsnorm", "mlp", "rebuild"], [(["attention"], [(["patterns"], [])])]),
            (["lens"], [])])])
    assert tree(chapter1) == ([], [(["tokenizer"], []), ([], [(["logits"], []), (
        ["sampling"], [(["filters"], []), (["autoregression"], [])])])])


# --- the code's structure -------------------------------------------------------------------

PACKAGES = ("chapter1", "chapter2", "chapter3", "token_by_token")


def project_imports() -> dict[str, set[str]]:
    """Each module of the app -> the app's modules it imports (anywhere in it)."""
    root = Path(__file__).resolve().parent.parent
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
               for package in PACKAGES for p in (root / package).glob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                          else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_cycles_and_no_chapter_imports_another():
    graph = project_imports()
    for name, imported in graph.items():
        chapter = name.split(".")[0]
        if chapter.startswith("chapter"):
            assert {m.split(".")[0] for m in imported} <= {chapter, "token_by_token"}, name
        if name.startswith("token_by_token"):
            assert all(m.startswith("token_by_token") for m in imported), name
    # a chapter's package imports its sections: leave it out, then no module may reach itself
    edges = {n: {m for m in ms if "." in m} for n, ms in graph.items() if "." in n}

    def reaches(start, goal, seen=()):
        return any(m == goal or (m not in seen and reaches(m, goal, (*seen, m)))
                   for m in edges.get(start, ()))
    assert [n for n in edges if reaches(n, n)] == []


def test_no_import_inside_a_function_but_transformers_for_the_floor_page():
    root = Path(__file__).resolve().parent.parent
    late = []
    for package in PACKAGES:
        for path in (root / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef):
                    late += [(path.name, node.name) for sub in ast.walk(node)
                             if isinstance(sub, ast.Import | ast.ImportFrom)]
    # state.py is imported by bench/floor.py, which must not load transformers (its
    # garbage costs every floor rerun ~0.1 s): it imports it only when the app asks
    assert {name for name, _ in late} <= {"state.py"}, late


def test_renders_only_read():
    """No render assigns session state or puts anything in the memo: what a section needs is
    computed for its view; state changes only in callbacks."""
    for _, module in ALL_SECTIONS:
        tree = ast.parse(inspect.getsource(module))
        for function in ast.walk(tree):
            if not (isinstance(function, ast.FunctionDef) and function.name.startswith("render")):
                continue
            for node in ast.walk(function):
                assert not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                            and node.func.attr in ("put", "update")), (module, function.name)
                targets = [t for n in [node] if isinstance(n, ast.Assign | ast.AugAssign)
                           for t in (n.targets if isinstance(n, ast.Assign) else [n.target])]
                assert not any("session_state" in ast.unparse(t) or "memo" in ast.unparse(t)
                               for t in targets), (module, function.name)
                assert "memo_of" not in ast.unparse(node) or not isinstance(node, ast.Call), \
                    (module, function.name)


EXTRA = '''
import types
import streamlit as st
import chapter1
from token_by_token import chapter, model, state
from token_by_token.chapter import DRAWN, Chapter, Controls, _choices

state.DEFAULTS.setdefault("extra", 1)
state.init()
extra = types.ModuleType("chapter1.extra")  # a trivial section: one number, read back
extra.TITLE, extra.READS, extra.LESSONS = "Extra — a number", frozenset({"extra"}), []
extra.render = lambda loaded, view: st.markdown(f"extra = {st.session_state['extra']}") or "ok"
block = Controls(frozenset({"extra"}),
                 lambda loaded, view: st.slider("Extra", 1, 9, key="extra"))
test = Chapter("Test", [*chapter1.SECTIONS, extra], [*chapter1.CHAPTER.controls, block],
               chapter1.CHAPTER.view)
chapter.run(test, model.load_or_explain())
'''


def test_a_chapter_is_a_list_a_new_section_and_its_control_rerun_only_it():
    """CLAUDE.md's recipe: write the section (TITLE, READS, LESSONS, render), add it to the
    list, give its control a block of Controls: the page draws it last, in its place, and its
    control's fragment holds it alone."""
    from streamlit.testing.v1 import AppTest
    extra = type("extra", (), {"TITLE": "Extra", "READS": frozenset({"extra"}),
                               "LESSONS": [], "__name__": "chapter1.extra"})
    test = Chapter("Test", [*chapter1.SECTIONS, extra],
                   [*chapter1.CHAPTER.controls, Controls(frozenset({"extra"}))],
                   chapter1.CHAPTER.view)
    top = test.parts()
    own = [c for c in top.children if c.sections == {len(chapter1.SECTIONS)}]
    assert len(own) == 1 and own[0].own() == [len(chapter1.SECTIONS)]
    assert all(len(chapter1.SECTIONS) not in c.sections for c in top.children if c not in own)
    at = AppTest.from_string(EXTRA, default_timeout=60)
    try:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        headers = [h.value for h in at.header]
        assert headers[-1] == f"{len(chapter1.SECTIONS) + 1}. Extra — a number"
        assert "extra = 1" in [m.value for m in at.markdown]
        at.slider(key="extra").set_value(5).run()
        assert "extra = 5" in [m.value for m in at.markdown]
    finally:
        state.DEFAULTS.pop("extra", None)


# --- every page ---------------------------------------------------------------------------

@pytest.mark.parametrize("page, title", [(None, "Chapter 1: Tokenization & Sampling"),
                                         (CHAPTER1, "Chapter 1: Tokenization & Sampling"),
                                         (CHAPTER2, "Chapter 2: Inside the Model"),
                                         (CHAPTER3, "Chapter 3: The Speed of Inference")])
def test_every_chapter_renders_its_own_page(page, title):
    at = run_app(page)  # fails on any exception
    assert [t.value for t in at.title] == [title]



@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_drawn_page_records_the_choices_its_sections_were_left_with(chapter, loaded):
    """After a whole page run, every section's recorded choices are the state's: a fragment
    rerun alone then finds nothing changed outside it and stays alone (a widget that fitted
    its own value while drawn made every fragment of Chapter 3 rerun the page)."""
    at = run_app(PAGES[chapter])
    package = CHAPTERS[chapter]
    drawn = at.session_state["_memo"].for_model(loaded.model_id).get(DRAWN, "all")
    state_now = at.session_state._state.filtered_state
    for index, module in enumerate(package.SECTIONS):
        assert drawn[package.CHAPTER.name, index] == _choices(state_now, module), module


def test_readme_page_renders_the_readme():
    at = run_app(README)
    assert any("Token by Token" in m.value for m in at.markdown)



def test_choices_survive_a_page_switch():
    at = run_app()
    at.sidebar.text_area(key="text").input("kept across pages").run()
    at.switch_page(CHAPTER2).run()
    at.switch_page(CHAPTER1).run()
    assert at.sidebar.text_area(key="text").value == "kept across pages"



TABLES = {"table_tokens": (CHAPTER1, "The same tokens as a table"),
          "table_logits": (CHAPTER1, "The same as a table"),
          "table_filters": (CHAPTER1, "The chart as a table"),
          "table_timeline": (CHAPTER1, "The same as a table"),
          "table_patterns": (CHAPTER2, "The same as a table: the three keys")}


@pytest.mark.parametrize("key", TABLES)
def test_a_charts_table_is_built_when_its_expander_opens(key):
    """Nothing is only a picture: every chart has its table, built once the learner opens it
    (a closed expander costs the page nothing)."""
    page, label = TABLES[key]
    state = {"autoregressive": True, "generated": [5, 6, 7]} if key == "table_timeline" else {}

    def tables(at):
        found = [e for e in at.expander if e.label.startswith(label)]
        assert found, label
        return sum(type(c).__name__ == "Dataframe" for e in found for c in e.children.values())
    closed = run_app(page, **state)
    opened = run_app(page, **state, **{key: True})
    assert tables(closed) == 0 and tables(opened) >= 1


@pytest.mark.parametrize("rows, most, drawn, scrolls", [
    (5, 8, "Table", False), (28, 8, "Table", True), (sections.LONG + 1, 8, "Dataframe", False)])
def test_a_small_table_is_static_scrolls_past_most_rows_and_is_a_grid_when_long(
        rows, most, drawn, scrolls):
    """Static HTML (a grid keeps the browser laying it out after a rerun), within a
    scrolling box past `most` rows, and a grid over LONG rows (the browser draws only the rows
    in view); the values formatted as asked."""
    from streamlit.testing.v1 import AppTest

    def page(rows, most):
        import pandas as pd

        from token_by_token.sections import small_table
        small_table(pd.DataFrame({"x": [i / 3 for i in range(rows)]}), {"x": "{:.2f}"}, most)
    at = AppTest.from_function(page, args=(rows, most)).run()
    [element] = [*at.table, *at.dataframe]
    assert type(element).__name__ == drawn and len(element.value) == rows
    boxes = [b for b in at.main.children.values() if type(b).__name__ == "Block"
             and b.proto.height_config.pixel_height]
    assert [b.proto.height_config.pixel_height for b in boxes] == \
        ([sections.ROW * (most + 1)] if scrolls else [])
    shown = pyarrow.ipc.open_stream(element.proto.arrow_data.styler.display_values)
    assert shown.read_pandas()["x"].tolist()[:3] == ["0.00", "0.33", "0.67"]
