"""Section 6 — Attention patterns: where each head of the picked layer looks."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
import torch

from chapter2.attention import (
    causal_mask,
    kv_head_of,
    qk_norm,
    rope_angles,
    rope_speeds,
    rotate,
    scores,
    share_kv,
    sliding_window,
    softmax,
    split_heads,
)
from chapter2.rmsnorm import norm
from token_by_token import charts, kvcache
from token_by_token.controls import table_alternative
from token_by_token.memo import Memo, Slot
from token_by_token.model import FORWARD_LOCK
from token_by_token.sequence import IDS
from token_by_token.tokens import counted, markdown_literal, show

TITLE = "Attention patterns — where each head looks"
READS = IDS | {"position", "layer", "head", "window", "table_patterns"}
WIDGETS = {"table_patterns"}
ROWS = 64  # query rows a Pattern keeps: the most the page draws (the "Attention rows" slider)


@dataclass(frozen=True)
class Pattern:
    """One layer's attention weights for a window of query rows, by the lesson functions.
    Never the whole [heads, positions, positions] table: at 1,024 positions that is 64 MB per
    layer, for rows the page doesn't draw."""
    layer: int
    rows: range            # the query positions kept: up to ROWS, ending at the picked one
    weights: torch.Tensor  # [query heads, len(rows), rows.stop] float32: keys 0..rows.stop−1

    def row(self, head: int, position: int) -> torch.Tensor:
        """One query position's weights over the positions it may read (and those it can't)."""
        return self.weights[head, position - self.rows.start]


PATTERN: Slot[Pattern] = Slot("chapter2.pattern")


def pattern_of(model, inside, layer: int, position: int, memo: Memo) -> Pattern:
    """The picked layer's attention weights for the ROWS query positions ending at `position`
    (kept per ids, layer and rows), by the lesson functions on what the layer read. The
    model's fast attention never writes them down. (They were checked against the library's
    eager attention on the last ROWS rows when the layer was opened: `check_window`.)

    The keys are read from the learner's KV cache when it holds these ids (it keeps every
    layer's keys, normed and turned: token_by_token/kvcache.py); else they are computed."""
    rows = range(max(position + 1 - ROWS, 0), position + 1)
    key = (inside.ids, layer, rows)
    if (same := memo.get(PATTERN, key)) is not None:
        return same
    block, end = model.model.layers[layer], rows.stop
    attn, d = block.self_attn, block.self_attn.head_dim
    cache = kvcache.cache_of(memo, inside.ids)
    if cache is not None and cache.layers[layer].is_sliding:
        cache = None  # a sliding-window layer's cache keeps only its window's keys
    start = 0 if cache is None else rows.start  # the first position projected here
    with FORWARD_LOCK, torch.inference_mode():
        speeds = rope_speeds(model.config, d)
        cos, sin = rope_angles(torch.arange(start, end), speeds)
        xn = norm(block.input_layernorm, inside.stream[layer, start:end])
        queries = slice(rows.start - start, None)  # the query rows among them
        q = split_heads(linear32(attn.q_proj, xn[queries]), d)
        if cache is not None:
            q = qk_norm(block, q, q)[0]  # (q only: the cache holds the keys, normed)
            k = cache.layers[layer].keys[0, :, :end]
        else:
            q, k = qk_norm(block, q, split_heads(linear32(attn.k_proj, xn), d))
            k = rotate(k, cos, sin)
        q = rotate(q, cos[queries], sin[queries])
        weights = window_weights(q, k, sliding_window(block))
    return memo.put(PATTERN, key, Pattern(layer, rows, weights))


def window_weights(q, k, window=None):
    """Attention weights of the last len(q[0]) query positions over every key, with the scores
    in float32 from the layer's own q and k, as its fused attention takes them: on the CPU it
    sums q·k in float32 and never rounds the scores to bfloat16. `window`: the layer's sliding
    window, if it has one."""
    q, k = q.float(), k.float()
    return softmax(causal_mask(scores(q, share_kv(k, len(q))), window))




def linear32(linear, x):
    """linear(x) computed in float32 and rounded back to x's dtype. For a bfloat16 model
    these are the numbers of its bfloat16 matmul, which sums in float32 and rounds once (the
    order of the sums differs: the last bit of about 1 value in 10,000, measured), in a
    quarter of the time on a CPU without bfloat16 arithmetic."""
    bias = None if linear.bias is None else linear.bias.float()
    return torch.nn.functional.linear(x.float(), linear.weight.float(), bias).to(x.dtype)


def window_of(position: int, size: int) -> range:
    """The query positions shown: the `size` positions that end at the picked one."""
    return range(max(position - size + 1, 0), position + 1)


def pattern_table(tokenizer, ids, pattern, heads, rows: range) -> pd.DataFrame:
    """Cells of the heatmap: for each head, each query row, and each key that row may see
    within the window (and the first position, where attention often rests). Compact for
    the browser: positions in int32, each token label once (categorical: every head's
    cells as a 64 KB message rather than 0.3 MB)."""
    keys = np.array(sorted({0, *rows}), dtype=np.int32)
    labels = [f"{p}: {show(tokenizer, ids[p])}" for p in keys]
    first = rows.start - pattern.rows.start
    block = pattern.weights[:, first: first + len(rows)][list(heads)][..., keys]  # [h, rows, keys]
    h, q, k = (len(heads), len(rows), len(keys))
    query = np.tile(np.repeat(np.arange(rows.start, rows.stop, dtype=np.int32), k), h)
    key = np.tile(keys, h * q)
    return pd.DataFrame({
        "head": np.repeat(np.array(list(heads), dtype=np.int32), q * k),
        "query": query, "key": key,
        "query token": pd.Categorical.from_codes(np.searchsorted(keys, query), labels),
        "key token": pd.Categorical.from_codes(np.searchsorted(keys, key), labels),
        "weight": block.flatten().numpy(),
    })


GAP = 8  # pixels between the heads' squares


def heads_picture(pattern, rows: range, config) -> np.ndarray:
    """Every head's heatmap of `rows` as one RGB picture [height, width, 3]: a row of squares
    per key/value head, its query heads left to right; each weight a square of a few pixels
    (charts.weight_colours). One picture, not a Vega-Lite chart of every cell: a layer's
    16 heads at 17 positions are 4,896 cells, which cost Chromium ~0.15 s to draw on each
    change of layer (measured); a picture, next to nothing."""
    heads = sorted(range(config.num_attention_heads), key=lambda h: (kv_head_of(h, config), h))
    keys = sorted({0, *rows})
    first = rows.start - pattern.rows.start
    block = pattern.weights[heads, first: first + len(rows)][..., keys]  # [h, rows, keys]
    cell = max(2, 96 // len(keys))
    squares = charts.weight_colours(block.numpy()).repeat(cell, 1).repeat(cell, 2)
    squares = np.pad(squares, ((0, 0), (0, GAP), (0, GAP), (0, 0)), constant_values=255)
    h, height, width, _ = squares.shape
    group = h // config.num_key_value_heads
    return (squares.reshape(h // group, group, height, width, 3).transpose(0, 2, 1, 3, 4)
            .reshape(h // group * height, group * width, 3))


def top_keys(tokenizer, ids, pattern, head: int, rows: range, k: int = 3) -> pd.DataFrame:
    """The table alternative: for each query position, the k keys it reads most."""
    out = []
    for row in rows:
        top = pattern.row(head, row)[: row + 1].topk(min(k, row + 1))
        out.append({"position": row, "token": show(tokenizer, ids[row]), **{
            f"#{n + 1}": f"{i}: {show(tokenizer, ids[i])} ({w:.0%})"
            for n, (w, i) in enumerate(zip(top.values.tolist(), top.indices.tolist(),
                                           strict=True))}})
    return pd.DataFrame(out)


# the lesson functions this section shows
LESSONS = []  # (it draws what section 3's lessons compute)


def render(loaded, view) -> str:
    tokenizer, f, opened, ids = loaded.tokenizer, view.facts, view.opened, view.ids
    pattern, head, position = view.pattern, view.head, view.position
    rows = window_of(position, view.window)
    st.markdown(
        f"Each row is a query position of layer {opened.layer}, each column a key position "
        f"it may read; colour is the attention weight (a row sums to 1). Above the diagonal "
        "is empty: the causal mask. The rows shown are the "
        f"{counted(len(rows), 'position')} ending at the token you picked (position "
        f"{position}); the columns are their keys, and position 0."
    )
    table = pattern_table(tokenizer, ids, pattern, [head], rows)
    st.vega_lite_chart(table, charts.fast_spec(charts.attention_heatmap, table,
                                               height={"step": 20}),
                       width="stretch")
    hidden = 1 - table.groupby("query")["weight"].sum()
    if len(hidden) and float(hidden.max()) > 0.005:
        st.caption(f"Keys outside the window (between position 0 and the window) take up "
                   f"to {float(hidden.max()):.0%} of a row's weight; they are not drawn.")
    st.markdown(
        f"**The first token.** Averaged over this layer's heads and over every position after "
        f"the first, **{opened.sink:.0%}** of the attention goes to position 0, "
        f"“{markdown_literal(show(tokenizer, ids[0]))}”. A trained model often parks "
        "attention there when nothing else is worth reading (an *attention sink*): softmax "
        "must put each row's weight somewhere, and the first token, which every position "
        "can see, becomes the place for it."
        + (f" (This layer's sliding window of {window:,} positions hides position 0 from "
           f"every query after position {window - 1:,}: there, its share is 0.)"
           if (window := sliding_window(loaded.model.model.layers[opened.layer])) else "")
    )
    group = f.heads // f.kv_heads
    st.subheader("All heads of the layer")
    st.markdown(
        f"{counted(f.heads, 'query head')}, in {counted(f.kv_heads, 'group')} of {group} "
        "that share one key/value head (grouped-query attention): heads in the same group "
        "compare their queries with the same keys."
    )
    picture = heads_picture(pattern, rows, loaded.model.config)
    st.image(picture, width=picture.shape[1], output_format="PNG",  # pixel for pixel
             caption=f"A row per key/value head, 0 to {f.kv_heads - 1}; in each, its "
             f"{counted(group, 'query head')} left to right (heads 0 to {group - 1} on the "
             "first row). Each square is the heatmap above for one head: the same rows, "
             "keys and colours.")
    table_alternative("The same as a table: the three keys each position reads most",
                      "table_patterns", lambda: top_keys(tokenizer, ids, pattern, head, rows))
    return ("Attention weights form a lower-triangular table per head; heads of one group "
            f"share keys; in layer {opened.layer}, {opened.sink:.0%} of the weight rests on the "
            "first token.")
