"""Section 1 — Embeddings: each token id picks one row of a learned table."""

import weakref

import pandas as pd
import streamlit as st
import torch

from chapter2.architecture import family
from token_by_token.locks import FORWARD_LOCK
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted, markdown_literal, show
from token_by_token.trace import traced


def embed(model, ids):
    """Token ids in, one vector per position out: [positions, hidden].

    The model keeps a table with one row per vocabulary entry, and a
    token id is a row number: embedding is a lookup. The Llama family
    adds no position vector here; where a token sits enters later,
    inside attention (RoPE).
    """
    table = model.model.embed_tokens.weight  # [vocab, hidden]
    x = table[torch.tensor(ids)]  # [positions, hidden]
    return x


def tied(model) -> bool:
    """Does the model write its scores with the table it reads with?

    With tied embeddings the last step multiplies by this same table,
    transposed: one matrix, held once in memory, used twice.
    """
    return model.lm_head.weight is model.model.embed_tokens.weight


def nearest(model, token_id, k=8):
    """The k tokens whose rows point most nearly the same way.

    Cosine similarity: the dot product of two rows divided by their
    lengths, from 1 (same direction) to -1 (opposite). Returns
    (ids, similarities), the token itself left out.
    """
    table = model.model.embed_tokens.weight  # [vocab, hidden]
    dots = table @ table[token_id]  # one dot product per row
    lengths = torch.linalg.vector_norm(table, dim=-1)  # one per row
    cosines = (dots / (lengths * lengths[token_id]).clamp_min(1e-12)).float()
    cosines[token_id] = float("-inf")  # not itself
    similarities, ids = cosines.topk(k)
    return ids, similarities


TITLE = "Embeddings — a token id picks a row"
READS = IDS | {"position"}


_NEAREST: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> {id: …}
NEAREST_KEPT = 256  # tokens whose neighbours are kept per model


def _nearest_to(model, token_id: int):
    """nearest() for one token, traced; kept per model while it is loaded (its weights never
    change; a model dropped from memory takes its entries with it)."""
    kept = _NEAREST.setdefault(model, {})
    if token_id not in kept:
        if len(kept) >= NEAREST_KEPT:
            kept.pop(next(iter(kept)))
        with FORWARD_LOCK:  # a pass over the whole table, on every core
            (ids, similarities), trace = traced(nearest, model, token_id)
        kept[token_id] = ids, similarities, trace
    return kept[token_id]


# the lesson functions this section shows
LESSONS = [embed, tied, nearest]


def render(loaded, view) -> str:
    model, tokenizer, facts = loaded.model, loaded.tokenizer, view.facts
    st.markdown(
        f"The model's first step is a lookup. It keeps a table of **{facts.vocab:,} rows × "
        f"{facts.hidden:,} numbers**, one row per vocabulary entry, learned in training; a "
        "token id is a row number. Your "
        f"{counted(len(view.ids), 'token')} become {len(view.ids):,} rows: `x`, the "
        "**residual stream**, which every layer reads and adds to."
    )
    lesson(view.trace(embed))
    gap = view.embedded[1]
    st.caption("Checked: the library's embedding layer gives the same rows"
               + (", bit for bit." if gap == 0 else
                  f" (largest difference {gap:g}: {gap.said()})."))
    st.markdown(
        "What is absent: **no position vector is added**. GPT-2 adds a learned row per "
        f"position here; {family(model)} adds nothing, and the order of the tokens enters "
        "later, inside "
        "attention, by turning queries and keys by an angle that grows with the position "
        "(RoPE, section 3)."
    )
    is_tied, trace = traced(tied, model)
    lesson(trace)
    table = facts.vocab * facts.hidden
    st.markdown(
        f"`tied(model)` is **{is_tied}**: "
        + (f"the output layer that turns `x` into scores at the very end is this same table, "
           f"transposed. One matrix of {table:,} numbers serves twice." if is_tied else
           f"this model has a separate output matrix of {table:,} more numbers.")
    )
    token_id = view.ids[view.position]
    ids, similarities, trace = _nearest_to(model, token_id)
    st.subheader("Neighbours in the table")
    st.markdown(
        f"Training moves the rows of tokens used alike to point in similar directions. The "
        f"rows nearest to "
        f"“{markdown_literal(show(tokenizer, token_id))}” (id {token_id}, the token at "
        f"position {view.position}; pick another in the sidebar), by cosine similarity:"
    )
    lesson(trace)
    small_table(pd.DataFrame({"id": ids.tolist(),
                              "token": [show(tokenizer, int(i)) for i in ids],
                              "cosine similarity": similarities.tolist()}),
                {"cosine similarity": "{:.3f}"})
    return (f"Embedding is a table lookup: id → a row of {facts.hidden:,} numbers. No position "
            "is added; " + ("the same table scores the output at the end." if is_tied else
                            "a separate matrix scores the output at the end."))

