"""Section 2 — Logits: the model turns token ids into one row of scores per position."""

from dataclasses import dataclass, fields, replace

import pandas as pd
import streamlit as st
import torch

from chapter1.sampling import entropy
from token_by_token import charts
from token_by_token.controls import heatmap_rows, table_alternative
from token_by_token.sections import lesson
from token_by_token.sequence import IDS
from token_by_token.tokens import show

TITLE = "Logits — one score per token, at every position"
READS = IDS | {"heatmap_rows", "table_logits"}
WIDGETS = {"heatmap_rows", "table_logits"}


def logits(model, ids, cache=None):
    """The model is a function: token ids in, a table of scores out.

    Row i scores every vocabulary entry as the token that follows
    ids[: i + 1]; the last row predicts the next token. A `cache`
    (see Section 5) keeps each layer's keys and values for these ids.
    """
    with torch.inference_mode():  # inference only: no gradients
        output = model(torch.tensor([ids]), cache=cache)
    return output.logits[0].float()  # [positions, vocab]


TOP = 10  # candidates kept per position for the heatmap


@dataclass(frozen=True)
class Candidates:
    """The top candidates at each position, without the [positions × vocab] table, and how
    sure the model was there (Section 4's uncertainty, at temperature 1, before filters)."""
    ids: torch.Tensor     # [positions, TOP] best candidates at each position
    logits: torch.Tensor  # [positions, TOP]
    probs: torch.Tensor   # [positions, TOP] softmax at temperature 1
    entropy: torch.Tensor  # [positions] bits
    end: torch.Tensor     # [positions] the probability of an end-of-text token
    chosen: torch.Tensor  # [positions] the probability of the id that came next (NaN: none yet)
    rank: torch.Tensor    # [positions] its rank, 1 = the favourite (0: none yet)

    @staticmethod
    def of(rows: torch.Tensor, next_ids=(), end_ids=()) -> "Candidates":
        """The top candidates of each row of logits, with their probabilities: softmax taken
        64 rows at a time, so no second [positions, vocab] tensor is made. `next_ids`: the
        ids that followed the first rows (the others are not known yet)."""
        top = rows.topk(min(TOP, rows.shape[-1]), dim=-1)
        log_total = torch.cat([torch.logsumexp(chunk, dim=-1) for chunk in rows.split(64)])
        bits = torch.cat([entropy(torch.softmax(chunk, dim=-1)) for chunk in rows.split(64)])
        end = torch.exp(rows[:, sorted(end_ids)] - log_total[:, None]).sum(-1)
        chosen = torch.full((len(rows),), float("nan"))
        rank = torch.zeros(len(rows), dtype=torch.long)
        if len(next_ids):
            known = torch.arange(len(next_ids))
            logit = rows[known, torch.tensor(list(next_ids))]
            chosen[known] = torch.exp(logit - log_total[known])
            rank[known] = (rows[known] > logit[:, None]).sum(-1) + 1
        return Candidates(top.indices, top.values, torch.exp(top.values - log_total[:, None]),
                          bits, end, chosen, rank)

    def then(self, more: "Candidates") -> "Candidates":
        """These positions followed by `more`'s."""
        return Candidates(*(torch.cat([getattr(self, f.name), getattr(more, f.name)])
                            for f in fields(self)))

    def first(self, n: int) -> "Candidates":
        """The first n positions, as they are."""
        return Candidates(*(getattr(self, f.name)[:n] for f in fields(self)))

    def cut(self, n: int, next_id: int) -> "Candidates":
        """The first n positions, the last of them followed by `next_id` (its probability
        and rank read from that position's top candidates: a branch picks one of them)."""
        kept = Candidates(*(getattr(self, f.name)[:n].clone() for f in fields(self)))
        found = (kept.ids[-1] == next_id).nonzero()
        kept.chosen[-1] = kept.probs[-1, found[0, 0]] if len(found) else float("nan")
        kept.rank[-1] = int(found[0, 0]) + 1 if len(found) else 0
        return kept

    def followed_by(self, next_id: int, last: torch.Tensor) -> "Candidates":
        """The same, with the id that followed the last row (`last`: that row's logits)."""
        probs = torch.softmax(last, dim=-1)
        chosen, rank = self.chosen.clone(), self.rank.clone()
        chosen[-1] = probs[next_id]
        rank[-1] = int((last > last[next_id]).sum()) + 1
        return replace(self, chosen=chosen, rank=rank)


def heatmap_table(tokenizer, ids, candidates: Candidates, rows: int,
                  count: int) -> pd.DataFrame:
    """The top `count` candidates of the last `rows` positions, one line per cell."""
    start = len(ids) - rows
    top_ids = candidates.ids[start:, :count].tolist()
    top_logits = candidates.logits[start:, :count].tolist()
    top_probs = candidates.probs[start:, :count].tolist()
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


# the lesson functions this section shows
LESSONS = [logits]


def render(loaded, view) -> str:
    ids, forward = view.ids, view.forward
    n, vocab = len(ids), forward.vocab
    st.markdown(
        "The model takes the whole list of ids and returns a table of numbers: one row per "
        "position, one column per vocabulary entry. Each number, a **logit**, is a score: "
        "how strongly the model expects that vocabulary entry to come *next* after the "
        "tokens up to that position. Higher means more likely. The scores are not "
        "probabilities yet (they can be negative and don't sum to 1); Section 3 turns them "
        "into probabilities."
    )
    note = None
    if forward.chunks > 1:
        note = (f"The page read your text in {forward.chunks} calls, one chunk of positions "
                "after another, each adding to the KV cache of Section 5. These are the last "
                "call's values.")
    lesson(view.trace(logits), note=note)
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
        shown = heatmap_rows(n)
    candidates = 8 if shown <= 12 else 5
    table = heatmap_table(loaded.tokenizer, ids, forward.candidates, shown, candidates)
    row_height = 30 if shown <= 12 else 22
    spec = charts.fast_spec(charts.logits_heatmap, table, height=row_height * shown)
    st.vega_lite_chart(table, spec, width="stretch")
    st.caption("Each row is a position, labelled by its input token; the cells are the top "
               f"{candidates} candidates for the token that follows, darker = more likely "
               "relative to that row's favourite. Hover a cell for its logit and probability.")
    table_alternative("The same as a table", "table_logits",
                      lambda: table.drop(columns=["shade"]))
    return (f"`logits(model, ids)` runs the model once over the sequence and returns a "
            f"{n:,} × {vocab:,} table of scores. The last row is the raw material for the next "
            "token.")


def format_row(row: torch.Tensor, edge: int = 3) -> str:
    """A long row the way torch prints it: first and last values around an ellipsis."""
    head = ", ".join(f"{v:.4f}" for v in row[:edge].tolist())
    tail = ", ".join(f"{v:.4f}" for v in row[-edge:].tolist())
    return f"tensor([{head}, ..., {tail}])"
