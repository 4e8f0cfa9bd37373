"""AppTest: every page renders, the tokenizer section follows the text, text shows literally."""

import pytest
from helpers import (
    CHAPTER1,
    CHAPTER2,
    README,
    chip_bodies,
    chips_blocks,
    code_starting,
    literal_markdown,
    run_app,
)

from chapter1.tokenizer import tokenize


def tokens_code(at) -> str:
    return code_starting(at, "tokens = ")


@pytest.mark.parametrize("page, title", [(None, "Chapter 1: Tokenization & Sampling"),
                                         (CHAPTER1, "Chapter 1: Tokenization & Sampling"),
                                         (CHAPTER2, "Chapter 2: Inside the Model")])
def test_every_chapter_renders_its_own_page(page, title):
    at = run_app(page)  # fails on any exception
    assert [t.value for t in at.title] == [title]


def test_readme_page_renders_the_readme():
    at = run_app(README)
    assert any("Token by Token" in m.value for m in at.markdown)


def test_default_text_is_tokenized_with_the_lesson_function(loaded, chapter1):
    ids = tokenize(loaded.tokenizer, "The quick brown fox jumps over the lazy")
    assert tokens_code(chapter1) == f"tokens = {ids}\nlen(tokens) = {len(ids)}"
    assert any("def tokenize(tokenizer, text" in c.value for c in chapter1.code)


@pytest.mark.parametrize("text", [
    "def add(a, b):\n    return a + b",
    "日本語のテキスト",
    "family 👨‍👩‍👧‍👦 thumbs 👍🏽",
    "plain English sentence.",
])
def test_typing_text_updates_spans_and_ids(loaded, chapter1, text):
    chapter1.sidebar.text_area(key="text").input(text).run()
    assert not chapter1.exception
    ids = tokenize(loaded.tokenizer, text)
    assert tokens_code(chapter1).startswith(f"tokens = {ids}")
    bodies = chip_bodies(chips_blocks(chapter1)[0])
    assert len(bodies) == len(ids)  # one chip per token
    assert "".join(bodies) == literal_markdown(loaded.tokenizer, ids)


@pytest.mark.parametrize("text", [
    "**bold** and _it_", "$x^2$", ":red[alarm]",
    "<b>bold</b> <img src=x onerror=alert(1)> <script>alert(1)</script>",
    "[a](javascript:alert(1))",
])
def test_hostile_text_renders_literally(loaded, chapter1, text):
    chapter1.sidebar.text_area(key="text").input(text).run()
    assert not chapter1.exception
    html = chips_blocks(chapter1)[0]
    # Markdown syntax is escaped in every chip, whatever the token cuts ...
    ids = tokenize(loaded.tokenizer, text)
    assert "".join(chip_bodies(html)) == literal_markdown(loaded.tokenizer, ids)
    # ... and no tag reaches the page as markup: html.escape in every chip
    assert "<script" not in html and "<img" not in html and "<b>" not in html


def test_special_tokens_section_reports_what_the_tokenizer_does(loaded, chapter1):
    eot = loaded.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert any(f"gives `[{eot}]`" in m.value for m in chapter1.markdown)
    chapter1.sidebar.text_area(key="text").input("end<|endoftext|>").run()
    assert any(f"(id {eot})" in i.value for i in chapter1.info)


def test_vocabulary_lookup_by_id_and_by_text(loaded, chapter1):
    chapter1.text_input(key="lookup").input("5").run()
    assert chapter1.dataframe[1].value["id"].tolist() == [5]
    chapter1.text_input(key="lookup").input("␣the").run()
    found = chapter1.dataframe[1].value
    assert len(found) > 0 and all("␣the" in token for token in found["token"])
    chapter1.text_input(key="lookup").input("999999").run()
    assert any("no token with id 999,999" in i.value for i in chapter1.info)


def test_choices_survive_a_page_switch():
    at = run_app()
    at.sidebar.text_area(key="text").input("kept across pages").run()
    at.switch_page(CHAPTER2).run()
    at.switch_page(CHAPTER1).run()
    assert at.sidebar.text_area(key="text").value == "kept across pages"
