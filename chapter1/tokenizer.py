"""Section 1 — Tokenizer: Byte Pair Encoding. Text in, a list of token ids out."""

import difflib
import re
from functools import lru_cache

import pandas as pd
import streamlit as st

from token_by_token.controls import table_alternative, vocabulary_lookup
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import TEXT, chat, has_chat_template, thinks, tokenize  # noqa: F401
from token_by_token.tokens import (
    BYTE_OF_CHAR,
    annotated,
    counted,
    markdown_literal,
    readable,
    show,
    show_bytes,
    spans,
    token_bytes,
    visible,
    vocabulary,
)

TITLE = "Tokenizer — Byte Pair Encoding"
NEEDS_IDS = False  # the tokenizer is read before there is any token
NEEDS_MODEL = False  # drawn while the model's weights download: the tokenizer is enough
READS = TEXT | {"lookup", "table_tokens"}
WIDGETS = {"lookup", "table_tokens"}


def token_table(tokenizer, ids) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [int(i) for i in ids],
        "token": [show(tokenizer, int(i)) for i in ids],
        "bytes": [(token_bytes(tokenizer, int(i)) or b"").hex(" ") for i in ids],
    })


# the lesson functions this section shows
LESSONS = [tokenize, chat]


def render(loaded, view) -> str:
    tokenizer = loaded.tokenizer
    text, ids, cut = view.text, view.sequence.text_ids, view.sequence.cut
    st.markdown(
        "A model can't read text; it reads a list of integers. The **tokenizer** turns your "
        "text into that list. Each integer, a **token id**, is a row number in the model's "
        "vocabulary table."
    )
    st.markdown(
        "Why not one id per word? There are too many words, new ones appear daily, and a "
        "word the vocabulary lacks could not be read at all. Why not one id per character? "
        "Then every text becomes a very long list, and the model pays for every item.\n\n"
        "**Byte Pair Encoding (BPE)** sits in between. Training starts with the 256 possible "
        "bytes as the vocabulary, finds the pair of neighbours that occurs most often in a "
        "large text corpus, adds that pair as a new token, and repeats until the vocabulary "
        "is full. Frequent words end up as one token; rare words are spelled from pieces; "
        "any text at all can still be written, byte by byte."
    )
    render_pretokenized(tokenizer)
    lesson(view.trace(tokenize))
    if view.sequence.chat is not None:
        render_chat(loaded, text, ids, view.sequence.chat,
                    bool(st.session_state.get("thinking")))

    st.subheader("Your text as tokens")
    st.caption("Each chip is one token with its id. ␣ is a space, \\n a newline; "
               "<0xE3> is a byte that is only part of a character.")
    annotated(spans(tokenizer, ids))
    st.code(f"tokens = {ids}\nlen(tokens) = {len(ids)}", language="python", wrap_lines=True)
    if cut:
        st.warning(f"Your text is {counted(len(ids) + cut, 'token')} long; the page keeps the "
                   f"first {len(ids):,} (the context cap of this app) and leaves out the last "
                   f"{cut:,}.")
    st.markdown(
        f"Your {counted(len(text), 'character')} became **{counted(len(ids), 'token')}**. "
        "Try a rare word, a typo, code, or another language, and watch the pieces change."
    )
    render_normalized(tokenizer, text)
    table_alternative("The same tokens as a table (id, token, bytes)", "table_tokens",
                      lambda: token_table(tokenizer, ids))

    render_vocabulary(loaded)
    own = tokenize(tokenizer, text) if view.sequence.chat is not None else ids
    render_special_tokens(loaded, own)  # in chat mode: the text's own, not the template's
    return ("The tokenizer maps text to a list of token ids from a fixed vocabulary of "
            f"{counted(len(tokenizer), 'token')}. Everything that follows works on these ids, "
            "never on the text.")


def pieces(tokenizer, text: str) -> list[str] | None:
    """The pieces the tokenizer's pre-tokenizer cuts `text` into before BPE runs, shown as
    the chips show tokens (␣ for a space); None when it has no pre-tokenizer."""
    pre = getattr(getattr(tokenizer, "backend_tokenizer", None), "pre_tokenizer", None)
    if pre is None:
        return None
    return [show_bytes(bytes(BYTE_OF_CHAR[c] for c in piece))
            if all(c in BYTE_OF_CHAR for c in piece) else piece  # byte-level: a char a byte
            for piece, _ in pre.pre_tokenize_str(text)]


def quoted(piece: str) -> str:
    """A token or piece in running text, literally: “␣apples”."""
    return f"“{markdown_literal(piece)}”"


def code(text: str) -> str:
    """Text in running text as code, literally: `<think>` (escaped instead if it holds a
    backtick, which would end the code span)."""
    return f"`{text}`" if "`" not in text else markdown_literal(text)


PRE_EXAMPLE = "12345 apples"


def render_pretokenized(tokenizer) -> None:
    """Pre-tokenization, computed on an example: the pieces, then BPE's tokens of them."""
    cut = pieces(tokenizer, PRE_EXAMPLE)
    if not cut:
        return
    spelled = [show(tokenizer, i) for i in tokenize(tokenizer, PRE_EXAMPLE)]
    digits = all(d in cut for d in "12345")
    st.markdown(
        "One step comes first: a **pre-tokenizer** cuts the text into pieces, and BPE's "
        "merges never cross those cuts. This tokenizer cuts "
        f"{quoted(PRE_EXAMPLE)} into " + " · ".join(map(quoted, cut))
        + (" (every digit on its own, so a number is read digit by digit)" if digits else "")
        + ", and BPE then spells each piece: " + " · ".join(map(quoted, spelled)) + "."
    )


KINDS = {"special": "special token", "added": "added token, not special", "text": "text"}


def kind_of(tokenizer, token_id: int) -> str:
    """"special", "added" (an added token that is not special, e.g. <think>) or "text"."""
    added = tokenizer.added_tokens_decoder.get(token_id)
    return "text" if added is None else "special" if added.special else "added"


@lru_cache(maxsize=16)
def template_parts(tokenizer, text: str, thinking: bool) -> tuple[list, list] | None:
    """The ids the chat template puts before the user's text and after it. The template is
    rendered as text and tokenized with offsets: a token lies before the text, in it or after
    it (one that straddles an edge is in neither list). None if the template changes the text
    or the ids differ from chat()'s."""
    def rendered(content):
        return tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                             add_generation_prompt=True,
                                             enable_thinking=thinking, tokenize=False)
    marker = "\ue000"  # a private-use character: where the text goes
    whole, start = rendered(text), rendered(marker).find(marker)
    end = start + len(text)
    if start < 0 or whole[start:end] != text:
        return None
    encoded = tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True)
    if encoded["input_ids"] != chat(tokenizer, text, thinking):
        return None
    spans = list(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True))
    return ([i for i, (_, b) in spans if b <= start],
            [i for i, (a, b) in spans if a >= end and b > start])


def render_chat(loaded, text: str, ids, trace, thinking: bool) -> None:
    """Chat mode: the template's ids, and what each of them is, computed from the template."""
    tokenizer = loaded.tokenizer
    st.markdown(
        "**Chat mode is on**: a chat app does not send your text as it is. It wraps it as a "
        "user message in the model's own **chat template**, and the model reads those ids, "
        "with the same function as before:"
    )
    lesson(trace)
    parts = template_parts(tokenizer, text, thinking)
    if parts is None:
        st.markdown("The `tokens = [...]` line below is what the model reads.")
        return
    before, after = parts
    added = before + after
    by_kind = {kind: [i for i in dict.fromkeys(added) if kind_of(tokenizer, i) == kind]
               for kind in ("special", "added", "text")}

    def listed(kind):
        return ", ".join(f"{code(show(tokenizer, i))} ({i})" for i in by_kind[kind])

    words = readable(tokenizer, [i for i in added if kind_of(tokenizer, i) == "text"])
    roles = [role for role in ("user", "assistant") if role in words]
    sentences = [
        f"The template put **{counted(len(before), 'id')} before your text and "
        f"{len(after):,} after it** (the table below)."]
    if by_kind["special"]:
        verb = "is a special token" if len(by_kind["special"]) == 1 else "are special tokens"
        sentences.append(f"{listed('special')} {verb}: markers kept apart from text, which "
                         "`decode(ids, skip_special_tokens=True)` drops.")
    if by_kind["added"]:
        sentences.append(f"{listed('added')}: added tokens that are not special (kept by "
                         "that decode).")
    if by_kind["text"]:
        sentences.append(
            "The rest is **ordinary text**, spelled by BPE like yours"
            + (f", the roles ({', '.join(f'`{r}`' for r in roles)}) included." if roles
               else "."))
    ends = [i for i in after if i in loaded.eos_ids]
    if ends:
        sentences.append(
            f"{code(show(tokenizer, ends[0]))} ({ends[0]}), which closes your message, is also "
            "one of the ids where generation stops (Section 5): a chat model ends its answer "
            "with it.")
    block = []
    if thinks(tokenizer):  # what Thinking off adds at the end: the ids with it, less without
        other = chat(tokenizer, text, not thinking)
        off, on = (other, ids) if thinking else (ids, other)
        block = off[len(on):] if off[: len(on)] == on else []
    if "assistant" in readable(tokenizer, after):
        sentences.append("Then comes the start of the assistant's turn: what the model writes "
                         "after these ids is its answer.")
    if block:
        empty = f"{code(repr(readable(tokenizer, block)))} ({counted(len(block), 'id')}: " \
                f"{', '.join(map(str, block))})"
        sentences.append(
            f"With Thinking off, the template itself then writes an empty reasoning block, "
            f"{empty}, so the model answers at once." if not thinking else
            "With Thinking on, the template leaves the reasoning block to the model, which "
            "may reason there before it answers (with Thinking off the template would write "
            f"an empty one itself, {empty}).")
    st.markdown(" ".join(sentences) + " The `tokens = [...]` line below is what the model "
                "reads.")
    st.dataframe(pd.DataFrame({
        "where": ["before your text"] * len(before) + ["after your text"] * len(after),
        "id": added, "token": [show(tokenizer, i) for i in added],
        "kind": [KINDS[kind_of(tokenizer, i)] for i in added]}), hide_index=True)


def render_normalized(tokenizer, text: str) -> None:
    """Say where the tokenizer's normalizer (Qwen's: Unicode NFC) changed the text before
    splitting it: the chips then show other bytes than were typed."""
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    if normalizer is None or (normalized := normalizer.normalize_str(text)) == text:
        return
    changes = [(text[a:b], normalized[c:d]) for op, a, b, c, d in
               difflib.SequenceMatcher(None, text, normalized, autojunk=False).get_opcodes()
               if op != "equal"]

    def spelled(part: str) -> str:
        chars = " + ".join(f"`{markdown_literal(visible(c))}` U+{ord(c):04X}" for c in part)
        return f"{chars or 'nothing'} (bytes {part.encode().hex(' ') or 'none'})"

    st.info(
        f"Before splitting, the tokenizer **normalizes** your text ({type(normalizer).__name__}"
        ": one standard spelling for characters Unicode can write in more than one way), so "
        "the chips show other bytes than you typed. "
        + "; ".join(f"{spelled(typed)} became {spelled(read)}" for typed, read in changes[:5])
        + (f"; and {counted(len(changes) - 5, 'more change')}." if len(changes) > 5 else ".")
    )


def table_rows(tokens: int, rows: int) -> str:
    """What the page says about the model's table rows against the tokenizer's size: the
    same, fewer, or more, and then what the padding makes of the number of rows."""
    extra = rows - tokens
    power = rows & -rows  # the largest power of two that divides the number of rows
    said = f"The model's tables have {rows:,} rows: "
    if extra == 0:
        return said + "the same number."
    if extra < 0:
        return said + f"{-extra:,} fewer: the last ids have no row, and the model can't read them."
    return (said + f"{extra:,} more than the tokenizer uses, rows no token id reaches"
            + (f". They pad the table to a multiple of {power:,} ({rows:,} = {power:,} × "
               f"{rows // power:,}): matrix routines work in blocks of such sizes, so padded "
               "tables run efficiently." if power >= 8 else "."))


def render_vocabulary(loaded) -> None:
    tokenizer = loaded.tokenizer
    st.subheader("The vocabulary")
    st.markdown(
        f"This tokenizer knows **{counted(len(tokenizer), 'token')}** (ids 0 to "
        f"{len(tokenizer) - 1:,}). " + table_rows(len(tokenizer), loaded.vocab_size))
    query = vocabulary_lookup()
    if not query:
        return
    number = re.fullmatch(r"\s*(\d{1,3}(?:[,_ ]\d{3})+|\d+)\s*", query)
    if number:
        token_id = int(re.sub(r"\D", "", number[1]))
        if token_id < len(tokenizer):
            st.markdown(f"Id {token_id:,}:")
            st.dataframe(token_table(tokenizer, [token_id]), hide_index=True)
        else:
            st.info(f"There is no token with id {token_id:,}: the vocabulary ends at "
                    f"{len(tokenizer) - 1:,}.")
    wanted = query.replace("␣", " ")  # the page shows a space as ␣: either may be typed
    matches = vocabulary(tokenizer).containing(wanted.encode())
    shown = markdown_literal(show_bytes(wanted.encode()))
    verb = "contains" if len(matches) == 1 else "contain"
    st.caption(f"{counted(len(matches), 'token')} {verb} “{shown}” as text"
               + ("; the first 200 are shown." if len(matches) > 200 else "."))
    if matches:
        st.dataframe(token_table(tokenizer, matches[:200]), hide_index=True)


def render_special_tokens(loaded, ids: list[int]) -> None:
    tokenizer = loaded.tokenizer
    added = tokenizer.added_tokens_decoder
    special = [i for i, token in added.items() if token.special]
    plain = [i for i, token in added.items() if not token.special]
    st.subheader("Special tokens" + (" and other added tokens" if plain else ""))
    st.markdown(
        f"Besides pieces of text, the vocabulary has **{counted(len(special), 'special token')}**: "
        "markers such as `<|endoftext|>` (a document ends here) and `<|im_start|>` (a chat "
        "message starts here). BPE never builds them from pieces of text: the tokenizer "
        "looks for each one whole, before BPE runs (what that means for text that spells one "
        "is below). Chat templates wrap every message in them."
    )
    if plain:
        example = added[plain[0]].content
        split = tokenizer.encode(example, add_special_tokens=False, split_special_tokens=True)
        st.markdown(
            f"It also has **{counted(len(plain), 'added token')} that "
            f"{'is' if len(plain) == 1 else 'are'} not special**, such as `{example}`. Both "
            "kinds sit outside BPE's merges and are found whole in the text. What differs is "
            "how the tokenizer treats them: special tokens are control markers, dropped by "
            "`decode(ids, skip_special_tokens=True)` and spelled from ordinary pieces with "
            "`split_special_tokens=True`; the other added tokens are text the model writes "
            "(Qwen3 writes its reasoning between `<think>` and `</think>`), kept by both: "
            f"`decode({[*special[:1], plain[0]]}, skip_special_tokens=True)` gives "
            f"`{tokenizer.decode([*special[:1], plain[0]], skip_special_tokens=True)!r}`, and "
            f"with `split_special_tokens=True` `{example}` is still "
            + (f"one token, {split}." if len(split) == 1 else f"{split}.")
        )
    small_table(pd.DataFrame({"id": list(added), "token": [t.content for t in added.values()],
                              "special": [t.special for t in added.values()]}), most=7)
    spelled = "<|endoftext|>"
    as_special = tokenize(tokenizer, spelled)
    as_text = tokenizer.encode(spelled, add_special_tokens=False, split_special_tokens=True)
    st.markdown(
        f"What if your text spells one? Here `tokenize(tokenizer, \"{spelled}\")` gives "
        f"`{as_special}`: "
        + ("**one special token**. The tokenizer looks for special tokens in the text before "
           "BPE runs, so typed text can produce them: that is the transformers tokenizer's "
           "default (`split_special_tokens=False`), and this page keeps it. A chat app that "
           "passes its users' text this way lets them forge the markers of a turn, one narrow "
           "kind of prompt injection (prompt injection in general needs no special token: "
           "instructions and data share one channel, the text). Many stacks refuse it: "
           "tiktoken, for one, raises an error for special tokens in text unless told to "
           "allow them (`disallowed_special`). Read as plain text "
           f"(`split_special_tokens=True`) it would be {counted(len(as_text), 'ordinary token')}"
           f": `{as_text}`." if len(as_special) == 1 else
           "ordinary pieces: this tokenizer does not turn typed text into special tokens.")
    )
    in_text = set(ids)
    for kind, found in (("special tokens", [i for i in special if i in in_text]),
                        ("added tokens that are not special", [i for i in plain if i in in_text])):
        if found:
            st.info(f"Your text contains {kind}: "
                    + ", ".join(f"`{added[i].content}` (id {i})" for i in found) + ".")
