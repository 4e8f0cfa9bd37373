"""Section 1 — Tokenizer: Byte Pair Encoding. Text in, a list of token ids out."""

import difflib
import re

import pandas as pd
import streamlit as st

from token_by_token.sections import lesson
from token_by_token.tokens import (
    annotated,
    counted,
    markdown_literal,
    show,
    show_bytes,
    spans,
    token_bytes,
    visible,
    vocabulary,
)

TITLE = "Tokenizer — Byte Pair Encoding"
NEEDS_IDS = False  # the tokenizer is read before there is any token


def tokenize(tokenizer, text: str) -> list[int]:
    """Text in, token ids out.

    tokenizer = AutoTokenizer.from_pretrained(model_id), loaded once.
    It cuts the text into pieces from its vocabulary (Byte Pair
    Encoding) and returns their ids.
    """
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids


def chat(tokenizer, text: str, thinking: bool = False) -> list[int]:
    """Your text as a chat app sends it: one user message, then the
    start of the assistant's turn, in the model's own chat template.

    The template adds special tokens around each turn; the model then
    writes the answer and ends its turn with an end-of-turn token.
    """
    messages = [{"role": "user", "content": text}]
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, enable_thinking=thinking)
    return encoded["input_ids"]


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def thinks(tokenizer) -> bool:
    """True when the chat template can switch the model's thinking on and off (Qwen3)."""
    return "enable_thinking" in (getattr(tokenizer, "chat_template", None) or "")


def token_table(tokenizer, ids) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [int(i) for i in ids],
        "token": [show(tokenizer, int(i)) for i in ids],
        "bytes": [(token_bytes(tokenizer, int(i)) or b"").hex(" ") for i in ids],
    })


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
    lesson(view.trace(tokenize))
    if view.sequence.chat is not None:
        render_chat(tokenizer, ids, view.sequence.chat)

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
    with st.expander("The same tokens as a table (id, token, bytes)"):
        st.dataframe(token_table(tokenizer, ids), hide_index=True)

    render_vocabulary(loaded)
    render_special_tokens(loaded, ids)
    return ("The tokenizer maps text to a list of token ids from a fixed vocabulary of "
            f"{counted(len(tokenizer), 'token')}. Everything that follows works on these ids, "
            "never on the text.")


def render_chat(tokenizer, ids, trace) -> None:
    """Chat mode: the template's ids, and what its special tokens are for."""
    specials = sorted({i for i in ids if i in set(tokenizer.all_special_ids)
                       or i in tokenizer.added_tokens_decoder})
    st.markdown(
        "**Chat mode is on**: a chat app does not send your text as it is. It wraps it as a "
        "user message in the model's own **chat template**, and the model reads those ids, "
        "with the same function as before:"
    )
    lesson(trace)
    st.markdown(
        "The template's tokens, "
        + ", ".join(f"`{show(tokenizer, i)}` ({i})" for i in specials)
        + ", mark where a turn starts, whose it is, and where it ends. The ids end with the "
        "start of the assistant's turn: what the model writes next is its answer, and it "
        "ends the answer with an end-of-turn token, where generation stops (Section 5). The "
        "`tokens = [...]` line below is what the model reads."
    )


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


def render_vocabulary(loaded) -> None:
    tokenizer = loaded.tokenizer
    st.subheader("The vocabulary")
    st.markdown(
        f"This tokenizer knows **{counted(len(tokenizer), 'token')}** (ids 0 to "
        f"{len(tokenizer) - 1:,}). The model's tables have {loaded.vocab_size:,} rows: "
        + ("the same number." if loaded.vocab_size == len(tokenizer) else
           f"{loaded.vocab_size - len(tokenizer):,} more than the tokenizer uses, "
           "left unused so the table size is a round number for fast arithmetic.")
    )
    query = st.text_input("Look up an id or a piece of text in the vocabulary", key="lookup",
                          placeholder="e.g. 1234, 151,668 or ␣fox")
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
        "markers that no ordinary text produces, such as `<|endoftext|>` (a document ends "
        "here) and `<|im_start|>` (a chat message starts here). Chat apps wrap every message "
        "in them."
    )
    if plain:
        example = added[plain[0]].content
        st.markdown(
            f"It also has **{counted(len(plain), 'added token')} that "
            f"{'is' if len(plain) == 1 else 'are'} not special**, such as `{example}`. Both "
            "kinds were added after BPE training and are always read whole, never spelled "
            "from pieces. What differs is how the tokenizer treats them: special tokens are "
            "control markers, dropped by `decode(ids, skip_special_tokens=True)` and read as "
            "plain text with `split_special_tokens=True`; the other added tokens are text the "
            "model writes (Qwen3 writes its reasoning between `<think>` and `</think>`), kept "
            f"by both: `decode({[*special[:1], plain[0]]}, skip_special_tokens=True)` gives "
            f"`{tokenizer.decode([*special[:1], plain[0]], skip_special_tokens=True)!r}`."
        )
    st.dataframe(pd.DataFrame({"id": list(added), "token": [t.content for t in added.values()],
                               "special": [t.special for t in added.values()]}),
                 hide_index=True, height=min(35 * len(added) + 38, 300))
    spelled = "<|endoftext|>"
    as_special = tokenize(tokenizer, spelled)
    as_text = tokenizer.encode(spelled, add_special_tokens=False, split_special_tokens=True)
    st.markdown(
        f"What if your text spells one? Here `tokenize(tokenizer, \"{spelled}\")` gives "
        f"`{as_special}`: "
        + ("**one special token**. The tokenizer looks for special tokens in the text before "
           "BPE runs, so typed text can produce them, exactly as in a chat app (and the reason "
           "prompt injection works). This page keeps that behaviour. Read as plain text "
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
