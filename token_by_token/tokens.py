"""How a token id is shown: its exact bytes, made visible and safe to print.

A byte-level BPE token is a sequence of bytes, not always whole characters: an emoji can be
split over two tokens. We show whitespace as visible marks (␣ \\n \\t), invisible characters as
<U+XXXX>, and bytes that are only part of a UTF-8 character as <0xE3>, never as �.
"""

import re
import unicodedata
from functools import cache

from transformers.convert_slow_tokenizer import bytes_to_unicode

BYTE_OF_CHAR = {char: byte for byte, char in bytes_to_unicode().items()}
ESCAPES = {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
INVISIBLE = {"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp", "Zs"}  # controls, format, separators


def is_variation_selector(char: str) -> bool:
    return 0xFE00 <= ord(char) <= 0xFE0F or 0xE0100 <= ord(char) <= 0xE01EF


def visible(char: str) -> str:
    """One character as the learner should see it."""
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not valid UTF-8 here (see show_bytes)
        return f"<0x{code - 0xDC00:02X}>"
    if char in ESCAPES:
        return ESCAPES[char]
    if unicodedata.category(char) in INVISIBLE or is_variation_selector(char):
        return f"<U+{code:04X}>"
    return char


def show_bytes(data: bytes) -> str:
    """Bytes as visible text; bytes that are only part of a character as <0xNN>."""
    return "".join(visible(c) for c in data.decode("utf-8", errors="surrogateescape"))


@cache
def token_bytes(tokenizer, token_id: int) -> bytes | None:
    """The exact bytes of one token, or None for an id the tokenizer has no token for."""
    if token_id in tokenizer.added_tokens_decoder:  # special tokens are stored as text
        return tokenizer.added_tokens_decoder[token_id].content.encode()
    token = tokenizer.convert_ids_to_tokens(token_id)
    if token is None:
        return None
    if all(char in BYTE_OF_CHAR for char in token):  # byte-level BPE: one char per byte
        return bytes(BYTE_OF_CHAR[char] for char in token)
    return tokenizer.convert_tokens_to_string([token]).encode()  # other tokenizers


@cache
def show(tokenizer, token_id: int) -> str:
    """One token id as visible text (cached: the same id always shows the same way)."""
    data = token_bytes(tokenizer, token_id)
    return f"<unused id {token_id}>" if data is None else show_bytes(data)


def show_ids(tokenizer, ids) -> list[str]:
    return [show(tokenizer, int(token_id)) for token_id in ids]


MARKDOWN_SYNTAX = re.compile(r"([!#$%()*+,\-./:;=?@\[\\\]^_`{|}~])")


def markdown_literal(text: str) -> str:
    """Escape every Markdown, LaTeX and directive character so that st.markdown shows `text`
    literally. (&, <, >, quotes are left to html.escape, which st-annotated-text applies.)"""
    return MARKDOWN_SYNTAX.sub(r"\\\1", text)


# Pale backgrounds that alternate so neighbouring tokens are told apart; the sampled or
# highlighted token gets the theme's navy with white text.
SPAN_COLORS = ["#dbeafe", "#fde68a", "#d1fae5", "#fbcfe8", "#e9d5ff", "#fed7aa"]
HIGHLIGHT = ("#000080", "#ffffff")


def spans(tokenizer, ids, highlight: int | None = None) -> list[tuple]:
    """Arguments for st-annotated-text: one (token, id) chip per token, shown literally.

    `highlight` is a position in `ids` to mark (the sampled token)."""
    chips = []
    for position, token_id in enumerate(ids):
        background, color = (
            HIGHLIGHT if position == highlight else (SPAN_COLORS[position % len(SPAN_COLORS)], None)
        )
        chips.append((markdown_literal(show(tokenizer, int(token_id))), str(token_id),
                      background, color))
    return chips
