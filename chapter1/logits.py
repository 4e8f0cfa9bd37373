"""Section 2 — Logits: the model turns token ids into one row of scores per position."""

import pandas as pd
import streamlit as st
import torch

from token_by_token import charts
from token_by_token.tokens import show, source


def logits(model, ids, cache=None):
    """The model is a function: token ids in, a table of scores out.

    Row i scores every vocabulary entry as the token that follows
    ids[: i + 1]; the last row predicts the next token. A `cache`
    (see Section 5) keeps what the model computed for these ids.
    """
    with torch.inference_mode():  # inference only: no gradients
        output = model(torch.tensor([ids]), cache=cache)
    return output.logits[0].float()  # [positions, vocab]


def heatmap_table(tokenizer, ids, forward, rows: int, candidates: int) -> pd.DataFrame:
    """The top candidates of the last `rows` positions, one line per cell."""
    start = len(ids) - rows
    top_ids = forward.top_ids[start:, :candidates].tolist()
    top_logits = forward.top_logits[start:, :candidates].tolist()
    top_probs = forward.top_probs[start:, :candidates].tolist()
    records = []
    for offset, (cand_ids, cand_logits, cand_probs) in enumerate(
            zip(top_ids, top_logits, top_probs, strict=True)):
        position = start + offset
        for rank, (cand, logit, prob) in enumerate(
                zip(cand_ids, cand_logits, cand_probs, strict=True), start=1):
            records.append({
                "position": position,
                "input token": show(tokenizer, ids[position]),
                "rank": rank,
                "predicted token": show(tokenizer, cand),
                "predicted id": cand,
                "logit": round(logit, 3),
                "probability": prob,
                "shade": prob / cand_probs[0],  # normalised per position
            })
    return pd.DataFrame.from_records(records)


def render(loaded, ids, forward) -> None:
    st.header("2. Logits — one score per token, at every position", anchor="logits")
    n, vocab = len(ids), forward.vocab
    st.markdown(
        "The model takes the whole list of ids and returns a table of numbers: one row per "
        "position, one column per vocabulary entry. Each number, a **logit**, is a score: "
        "how strongly the model expects that vocabulary entry to come *next* after the "
        "tokens up to that position. Higher means more likely. The scores are not "
        "probabilities yet (they can be negative and don't sum to 1); Section 3 turns them "
        "into probabilities."
    )
    st.code(source(logits), language="python")
    st.markdown(
        f"Your {n:,} tokens gave a **{n:,} × {vocab:,}** table: `logits.shape` is "
        f"`torch.Size([{n}, {vocab}])`. Only the **last row** matters for what comes next; "
        "the other rows are the model's guesses at every earlier position, which is how it "
        "was trained (predict every next token of a text at once)."
    )
    st.code(f"logits.shape = torch.Size([{n}, {vocab}])\n"
            f"logits[0] = {format_row(forward.first)}\n"
            f"logits[-1] = {format_row(forward.last)}", language="python", wrap_lines=True)

    st.subheader("What the model expects at each position")
    shown = n
    if n > 1:
        shown = st.slider("Positions shown (the last ones)", 1, n, min(n, 12),
                          key="heatmap_rows")
    candidates = 8 if shown <= 12 else 5
    table = heatmap_table(loaded.tokenizer, ids, forward, shown, candidates)
    row_height = 30 if shown <= 12 else 22
    spec = charts.fast_spec(charts.logits_heatmap, table, height=row_height * shown)
    st.vega_lite_chart(table, spec, width="stretch")
    st.caption("Each row is a position, labelled by its input token; the cells are the top "
               f"{candidates} candidates for the token that follows, darker = more likely "
               "relative to that row's favourite. Hover a cell for its logit and probability.")
    with st.expander("The same as a table"):
        st.dataframe(table.drop(columns=["shade"]), hide_index=True)
    st.success("**Summary.** `logits(model, ids)` runs the model once over the sequence and "
               f"returns a {n:,} × {vocab:,} table of scores. The last row is the raw "
               "material for the next token.")
    st.progress(2 / 5, text="Chapter 1 · section 2 of 5")


def format_row(row: torch.Tensor, edge: int = 3) -> str:
    """A long row the way torch prints it: first and last values around an ellipsis."""
    head = ", ".join(f"{v:.4f}" for v in row[:edge].tolist())
    tail = ", ".join(f"{v:.4f}" for v in row[-edge:].tolist())
    return f"tensor([{head}, ..., {tail}])"
