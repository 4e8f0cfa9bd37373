"""Section 6 — Attention patterns: where each head of the picked layer looks."""

import numpy as np
import pandas as pd
import streamlit as st

from chapter2.attention import kv_head_of
from token_by_token import charts
from token_by_token.tokens import counted, markdown_literal, show

TITLE = "Attention patterns — where each head looks"


def window_of(position: int, size: int) -> range:
    """The query positions shown: the `size` positions that end at the picked one."""
    return range(max(position - size + 1, 0), position + 1)


def pattern_table(tokenizer, ids, pattern, heads, rows: range) -> pd.DataFrame:
    """Cells of the heatmap: for each head, each query row, and each key that row may see
    within the window (and the first position, where attention often rests)."""
    keys = np.array(sorted({0, *rows}))
    labels = np.array([f"{p}: {show(tokenizer, ids[p])}" for p in keys], dtype=object)
    first = rows.start - pattern.rows.start
    block = pattern.weights[:, first: first + len(rows)][list(heads)][..., keys]  # [h, rows, keys]
    h, q, k = (len(heads), len(rows), len(keys))
    query, key = np.tile(np.repeat(np.arange(rows.start, rows.stop), k), h), np.tile(keys, h * q)
    return pd.DataFrame({
        "head": np.repeat(np.array(list(heads)), q * k),
        "query": query, "key": key,
        "query token": labels[np.searchsorted(keys, query)],
        "key token": labels[np.searchsorted(keys, key)],
        "weight": block.flatten().numpy(),
    })


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
    )
    group = f.heads // f.kv_heads
    st.subheader("All heads of the layer")
    st.markdown(
        f"{counted(f.heads, 'query head')}, in {counted(f.kv_heads, 'group')} of {group} "
        "that share one key/value head (grouped-query attention): heads in the same group "
        "compare their queries with the same keys."
    )
    everything = pattern_table(tokenizer, ids, pattern, range(f.heads), rows)
    kv_heads = {h: kv_head_of(h, loaded.model.config) for h in range(f.heads)}
    everything["KV head"] = everything["head"].map(kv_heads)
    st.vega_lite_chart(everything, charts.fast_spec(charts.attention_small_multiples,
                                                    everything, columns=group))
    with st.expander("The same as a table: the three keys each position reads most"):
        st.dataframe(top_keys(tokenizer, ids, pattern, head, rows), hide_index=True)
    return ("Attention weights form a lower-triangular table per head; heads of one group "
            f"share keys; in layer {opened.layer}, {opened.sink:.0%} of the weight rests on the "
            "first token.")
