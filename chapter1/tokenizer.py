"""Section 1 — Tokenizer: Byte Pair Encoding. Text in, a list of token ids out."""

import pandas as pd
import streamlit as st

from token_by_token.sections import lesson
from token_by_token.tokens import (
    annotated,
    markdown_literal,
    show,
    show_bytes,
    spans,
    token_bytes,
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


@st.cache_resource(show_spinner="Listing the vocabulary…")
def vocabulary(_tokenizer, model_id: str) -> list[str]:
    """Every token of the vocabulary as visible text, built once per model and shared."""
    return [show(_tokenizer, token_id) for token_id in range(len(_tokenizer))]


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

    st.subheader("Your text as tokens")
    st.caption("Each chip is one token with its id. ␣ is a space, \\n a newline; "
               "<0xE3> is a byte that is only part of a character.")
    annotated(spans(tokenizer, ids))
    st.code(f"tokens = {ids}\nlen(tokens) = {len(ids)}", language="python", wrap_lines=True)
    if cut:
        st.warning(f"Your text is {len(ids) + cut:,} tokens long; the page keeps the first "
                   f"{len(ids):,} (the context cap of this app) and leaves out the last {cut:,}.")
    st.markdown(
        f"Your {len(text):,} characters became **{len(ids):,} tokens**. "
        "Try a rare word, a typo, code, or another language, and watch the pieces change."
    )
    with st.expander("The same tokens as a table (id, token, bytes)"):
        st.dataframe(token_table(tokenizer, ids), hide_index=True)

    render_vocabulary(loaded)
    render_special_tokens(loaded, ids)
    return ("The tokenizer maps text to a list of token ids from a fixed vocabulary of "
            f"{len(tokenizer):,} tokens. Everything that follows works on these ids, never on "
            "the text.")


def render_vocabulary(loaded) -> None:
    tokenizer = loaded.tokenizer
    st.subheader("The vocabulary")
    st.markdown(
        f"This tokenizer knows **{len(tokenizer):,} tokens** (ids 0 to {len(tokenizer) - 1:,}). "
        f"The model's tables have {loaded.vocab_size:,} rows: "
        + ("the same number." if loaded.vocab_size == len(tokenizer) else
           f"{loaded.vocab_size - len(tokenizer):,} more than the tokenizer uses, "
           "left unused so the table size is a round number for fast arithmetic.")
    )
    query = st.text_input("Look up an id or a piece of text in the vocabulary", key="lookup",
                          placeholder="e.g. 1234 or ␣fox")
    if not query:
        return
    if query.strip().isdigit():
        token_id = int(query.strip())
        if token_id >= len(tokenizer):
            st.info(f"There is no token with id {token_id:,}: the vocabulary ends at "
                    f"{len(tokenizer) - 1:,}.")
            return
        st.dataframe(token_table(tokenizer, [token_id]), hide_index=True)
        return
    needle = show_bytes(query.encode())  # compare in the same visible form as the table
    matches = [i for i, token in enumerate(vocabulary(tokenizer, loaded.model_id))
               if needle in token]
    st.caption(f"{len(matches):,} tokens contain “{markdown_literal(needle)}”"
               + ("; the first 200 are shown." if len(matches) > 200 else "."))
    if matches:
        st.dataframe(token_table(tokenizer, matches[:200]), hide_index=True)


def render_special_tokens(loaded, ids: list[int]) -> None:
    tokenizer = loaded.tokenizer
    st.subheader("Special tokens")
    special = {i: token.content for i, token in tokenizer.added_tokens_decoder.items()}
    st.markdown(
        f"Besides pieces of text, the vocabulary has **{len(special)} special tokens**: markers "
        "that no ordinary text produces, such as `<|endoftext|>` (a document ends here) and "
        "`<|im_start|>` (a chat message starts here). Chat apps wrap every message in them."
    )
    st.dataframe(pd.DataFrame({"id": list(special), "token": list(special.values())}),
                 hide_index=True, height=min(35 * len(special) + 38, 300))
    spelled = "<|endoftext|>"
    as_special = tokenize(tokenizer, spelled)
    as_text = tokenizer.encode(spelled, add_special_tokens=False, split_special_tokens=True)
    st.markdown(
        f"What if your text spells one? Here `tokenize(tokenizer, \"{spelled}\")` gives "
        f"`{as_special}`: "
        + ("**one special token**. The tokenizer looks for special tokens in the text before "
           "BPE runs, so typed text can produce them, exactly as in a chat app (and the reason "
           "prompt injection works). This page keeps that behaviour. Read as plain text "
           f"(`split_special_tokens=True`) it would be {len(as_text)} ordinary tokens: "
           f"`{as_text}`." if len(as_special) == 1 else
           "ordinary pieces: this tokenizer does not turn typed text into special tokens.")
    )
    in_text = sorted({i for i in ids if i in special})
    if in_text:
        st.info("Your text contains special tokens: "
                + ", ".join(f"`{special[i]}` (id {i})" for i in in_text) + ".")
