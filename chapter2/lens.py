"""Section 7 — the logit lens: what would the model predict if it stopped after layer i?"""

from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch

from chapter2.rebuild import unembed
from chapter2.rmsnorm import norm
from token_by_token import charts
from token_by_token.capture import capture
from token_by_token.memo import Memo, Slot
from token_by_token.model import FORWARD_LOCK
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted, markdown_literal, show
from token_by_token.trace import traced


def residual_stream(model, ids, use_cache=True):
    """x after the embeddings and after each layer.

    [layers + 1, positions, hidden]. The library's hidden_states hand
    the last one back already through the final norm, so that one is
    read just before the norm instead.
    """
    final_norm = {"final norm": model.model.norm}
    with capture(final_norm) as seen, torch.inference_mode():
        out = model(torch.tensor([ids]), output_hidden_states=True,
                    logits_to_keep=1,  # the last position's scores only
                    use_cache=use_cache)  # keep the KV cache?
    xs = [*out.hidden_states[:-1], seen.input("final norm")]
    return torch.cat(xs)  # [layers + 1, positions, hidden]


def mid_stream(model, ids):
    """x halfway through each layer (after attention, before the MLP).

    It is what each layer's second RMSNorm reads: [layers, positions,
    hidden].
    """
    norms = [layer.post_attention_layernorm for layer in model.model.layers]
    with capture(norms) as seen, torch.inference_mode():
        model(torch.tensor([ids]))
    return torch.cat([seen.input(name) for name in seen.calls])


def lens(model, x):
    """Logits read from any point of the residual stream x.

    The model's own last steps, applied early: the final RMSNorm,
    then the scores against the vocabulary.
    """
    with torch.inference_mode():
        return unembed(model, norm(model.model.norm, x))


def logit_lens(model, ids):
    """The top-1 token at every layer: int64 [layers + 1, positions].

    Row 0 reads the embeddings, row i + 1 the stream after layer i
    (layers count from 0); the last row is the model's own prediction.
    """
    xs = residual_stream(model, ids)
    return torch.stack([lens(model, x).argmax(-1) for x in xs])


def mid_lens(model, ids):
    """The top-1 token halfway through each layer: int64 [layers, positions].

    Row i reads layer i after its attention, before its MLP: which of
    the two moved the guess?
    """
    xs = mid_stream(model, ids)
    return torch.stack([lens(model, x).argmax(-1) for x in xs])


def lens_top_k(model, xs, k):
    """The k likeliest tokens and their probabilities, at each point.

    xs is [..., positions, hidden], e.g. residual_stream(...)[:, -1:]
    for the last position only; returns (probs, ids).
    """
    probs = torch.softmax(lens(model, xs).float(), dim=-1)
    return probs.topk(k, dim=-1)


TITLE = "The logit lens — the guess, layer by layer"
READS = IDS | {"position", "halfway"}
COLUMNS = 8  # positions the grid shows, ending at the picked token
HALFWAY = 256  # positions whose stream halfway through each layer is kept (the logit lens)
LENS: Slot[dict] = Slot("chapter2.lens")  # per ids: (position, part) -> (probs, ids)


@dataclass(frozen=True)
class Grid:
    """What section 7 draws: the columns ending at the picked token, one row per depth."""
    positions: range
    kept: dict             # (position, part) -> (probs, ids) of lens_top_k; "trace"
    table: pd.DataFrame    # one row per (position, depth)


def grid_of(loaded, inside, position: int, halfway: bool, memo: Memo) -> Grid:
    """The logit lens at the COLUMNS positions ending at `position` (after every layer, and
    halfway through each when asked), computed one new column at a time."""
    positions = range(max(position + 1 - COLUMNS, 0), position + 1)
    kept = columns(loaded.model, inside, positions, halfway, memo)
    if (table := kept.get(("grid", positions, halfway))) is None:  # reused while unchanged
        table = kept["grid", positions, halfway] = _grid(loaded.tokenizer, inside.ids, kept,
                                                          positions, halfway)
    return Grid(positions, kept, table)


def columns(model, inside, positions: range, halfway: bool, memo: Memo) -> dict:
    """lens_top_k() at these positions after every layer (and halfway through each), kept
    per ids and position: picking the next token computes one new column, not the grid.
    One column at a time: the scores of 8 columns × 29 depths × 151,936 tokens would take
    ~350 MB at once (float32, softmax), one column 45 MB."""
    kept = memo.get(LENS, inside.ids)
    if kept is None:
        kept = memo.put(LENS, inside.ids, {})
    first = inside.halfway_from
    for part in ("after", "halfway") if halfway else ("after",):
        todo = [p for p in positions if (p, part) not in kept
                and (part == "after" or p >= first)]
        if not todo:
            continue
        for p in todo:
            xs = (inside.stream[:, [p]] if part == "after" else
                  torch.stack([o.halfway[[p - first]] for o in inside.layers]))
            with FORWARD_LOCK:
                if p == todo[-1]:  # the trace shown: the last column's, the rightmost (a
                    # trace describes every value, the 4.4M probabilities too: once, not 8 ×)
                    (probs, ids), kept["trace"] = traced(lens_top_k, model, xs, 5)
                else:
                    probs, ids = lens_top_k(model, xs, 5)
            kept[p, part] = (probs[:, 0], ids[:, 0])
    return kept


def _grid(tokenizer, ids, kept, positions: range, halfway: bool) -> pd.DataFrame:
    """One row per (position, depth): the top-1 token there, its probability, the top 5.
    Depths in the model's order: the embeddings, then per layer (halfway,) after."""
    rows = []
    for p in positions:
        after, mid = kept[p, "after"], kept.get((p, "halfway")) if halfway else None
        depths = [("embeddings", after, 0)]
        for i in range(len(after[0]) - 1):
            if mid is not None:
                depths.append((f"layer {i} · halfway", mid, i))
            depths.append((f"after layer {i}", after, i + 1))
        for order, (name, (probs, top), row) in enumerate(depths):
            rows.append({
                "position": p, "token": f"{p}: {show(tokenizer, ids[p])}",
                "order": order, "read from": name,
                "top-1": show(tokenizer, int(top[row, 0])), "probability": float(probs[row, 0]),
                "top 5": ", ".join(f"{show(tokenizer, int(i))} {float(q):.0%}"
                                   for q, i in zip(probs[row], top[row], strict=True))})
    return pd.DataFrame(rows)


# the lesson functions this section shows
LESSONS = [residual_stream, mid_stream, lens, logit_lens, mid_lens, lens_top_k]


def render(loaded, view) -> str:
    tokenizer, position, seen, ids = loaded.tokenizer, view.position, view.inside, view.ids
    positions, kept, grid = view.lens.positions, view.lens.kept, view.lens.table
    st.markdown(
        "The model's last two steps, the final RMSNorm and the scores against the table, can "
        "be applied to the residual stream anywhere, not only after the last layer. What "
        "would the model predict if it stopped after layer i? That is the **logit lens**. "
        "The final norm must be applied too (the stream's scale grows layer by layer); the "
        "library hands back its last hidden state already normalised, so the stream is read "
        "just before the final norm instead."
    )
    lesson(residual_stream, kept["trace"], lens)
    st.markdown(
        f"The likeliest next token at each depth (rows, top to bottom) for the "
        f"{counted(len(positions), 'position')} ending at the token you picked (columns); "
        "colour is its probability, and hovering a cell shows the top 5. Turn on **Halfway "
        "through each layer** in the sidebar to read the stream between attention and the "
        "MLP as well: which of the two moved the guess?"
    )
    st.vega_lite_chart(grid, charts.fast_spec(charts.lens_grid, grid, height={"step": 20}),
                       width="stretch")
    depths = "halfway through and after" if view.halfway else "after"
    st.caption(f"Rows: the embeddings, then {depths} each of the "
               f"{counted(len(seen.layers), 'layer')} ({grid['order'].nunique()} rows).")
    if view.halfway and positions.start < seen.halfway_from:
        st.caption(f"The halfway stream is kept for the last {len(ids) - seen.halfway_from:,} "
                   f"positions only (from position {seen.halfway_from:,}): earlier columns "
                   "show the rows after each layer.")
    last = grid[grid["read from"] == grid["read from"].iloc[-1]]
    agree = sum(int(kept[p, "after"][1][-1, 0]) == int(seen.top_library[p]) for p in positions)
    st.markdown(
        f"The last row is the model's own prediction: in **{agree} of {len(last)}** columns "
        "its top-1 equals the top-1 of the library's logits"
        + ("." if agree == len(last) else
           "; in the others the library's two best scores are "
           + ", ".join(f"{float(seen.margins[p]):.3g}" for p in positions
                       if int(kept[p, "after"][1][-1, 0]) != int(seen.top_library[p]))
           + " apart: near-ties that a rounding difference can swap (section 5).")
    )
    mine = grid[grid["position"] == position]
    st.markdown(f"At position {position} “{markdown_literal(show(tokenizer, ids[position]))}"
                "”, the five likeliest next tokens at each depth:")
    small_table(mine[["read from", "top-1", "probability", "top 5"]],
                {"probability": "{:.1%}"}, most=11)
    return ("The logit lens reads the residual stream through the final norm and the table "
            "after every layer: the prediction takes shape as layers add to the stream.")
