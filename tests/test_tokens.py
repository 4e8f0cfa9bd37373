"""Token display: exact bytes, visible whitespace and invisibles, no markup interpreted."""

import html

import pytest

from token_by_token.tokens import (
    markdown_literal,
    show,
    show_bytes,
    show_ids,
    spans,
    token_bytes,
    visible,
)


@pytest.mark.parametrize("char, shown", [
    (" ", "␣"), ("\n", "\\n"), ("\t", "\\t"), ("\r", "\\r"),
    ("\u200b", "<U+200B>"),  # zero-width space
    ("\u200d", "<U+200D>"),  # zero-width joiner (emoji families)
    ("\ufe0f", "<U+FE0F>"),  # variation selector-16
    ("\U000e0100", "<U+E0100>"),  # variation selector-17
    ("\u202e", "<U+202E>"),  # right-to-left override (bidi control)
    ("\u2066", "<U+2066>"),  # left-to-right isolate (bidi control)
    ("\x00", "<U+0000>"), ("\x1b", "<U+001B>"),  # NUL, ESC
    ("\u00a0", "<U+00A0>"),  # no-break space
    ("a", "a"), ("é", "é"), ("日", "日"), ("👍", "👍"), ("\U0001f3fd", "\U0001f3fd"),
])
def test_visible_characters(char, shown):
    assert visible(char) == shown


def test_partial_utf8_is_shown_as_bytes_never_replacement_char():
    assert show_bytes("日".encode()[:1]) == "<0xE6>"
    assert show_bytes("日".encode()[1:]) == "<0x97><0xA5>"
    shown = show_bytes(b"x" + "👍".encode()[:3])
    assert shown == "x<0xF0><0x9F><0x91>" and "\ufffd" not in shown


def test_every_token_of_mixed_text_round_trips_to_its_bytes(loaded):
    tokenizer = loaded.tokenizer
    text = "The fox 日本語 👨‍👩‍👧 👍🏽 x\u200by\ufe0f\ttab\nline <|endoftext|>"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert b"".join(token_bytes(tokenizer, i) for i in ids) == text.encode()
    shown = show_ids(tokenizer, ids)
    assert all("\ufffd" not in s for s in shown)
    assert "<|endoftext|>" in shown  # a special token is shown as its text, whole
    joined = "".join(shown)
    # this small tokenizer has no multi-byte merges: the zero-width space is three bytes
    assert "x<0xE2><0x80><0x8B>y" in joined and "\\ttab\\nline" in joined


def test_whole_characters_in_a_token_are_shown_as_characters():
    assert show_bytes("x\u200by".encode()) == "x<U+200B>y"
    assert show_bytes("👨\u200d👩".encode()) == "👨<U+200D>👩"
    assert show_bytes(" 日本\n".encode()) == "␣日本\\n"


def test_an_id_without_a_token_is_named_not_crashed(loaded):
    assert show(loaded.tokenizer, 10**6) == f"<unused id {10**6}>"
    assert token_bytes(loaded.tokenizer, 10**6) is None


@pytest.mark.parametrize("text", [
    "**bold**", "_x_", "$x^2$", ":red[x]", "[a](javascript:alert(1))", "`code`",
    "# heading", "{{ x }}", "\\", "~~strike~~", "| a | b |", "1. list",
])
def test_markdown_literal_escapes_every_syntax_character(text):
    escaped = markdown_literal(text)
    # every ASCII punctuation character except those html.escape handles gets a backslash
    for char in set(text):
        if not char.isalnum() and char.isascii() and char not in " &<>\"'":
            assert f"\\{char}" in escaped, (char, escaped)


def test_spans_escape_markup_and_mark_the_highlighted_token(loaded):
    tokenizer = loaded.tokenizer
    ids = tokenizer.encode("**x** <b>", add_special_tokens=False)
    chips = spans(tokenizer, ids, highlight=1)
    assert [c[1] for c in chips] == [str(i) for i in ids]
    assert chips[0][0] == "\\*\\*"
    assert chips[1][2] == "#000080" and chips[0][2] != "#000080"
    # st-annotated-text html-escapes the body: no tag survives
    assert "<b>" not in "".join(html.escape(c[0]) for c in chips)


def test_cached_chips_are_exactly_st_annotated_texts_markup(loaded, monkeypatch):
    from annotated_text.util import get_annotated_html

    from token_by_token import tokens
    tokenizer = loaded.tokenizer
    text = "**x** <b>&amp; <img src=x onerror=alert(1)> 日本"
    ids = tokenizer.encode(text, add_special_tokens=False)
    chips = spans(tokenizer, ids, highlight=2, generated_from=4)
    written = []
    monkeypatch.setattr(tokens.st, "markdown", lambda body, **kw: written.append((body, kw)))
    tokens.annotated(chips)
    tokens.annotated(chips)  # the second time from the cache: the same markup
    assert written[0] == written[1] == (get_annotated_html(*chips), {"unsafe_allow_html": True})
    assert "<b>" not in written[0][0] and "<img" not in written[0][0]
