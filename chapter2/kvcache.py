"""Section 9 — the KV cache, inside: what generation keeps so it never reads a token twice."""

import pandas as pd
import streamlit as st
import torch

from token_by_token.precision import name
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted, markdown_literal, show

TITLE = "The KV cache — what generation keeps"
READS = IDS


def last_step_cached(model, cache, ids):
    """The last position's scores again, from the cache of the others.

    The cache holds every position's keys and values, per layer. Drop
    the last position's (if it holds it), then feed only the last
    token: its query meets the cached keys, and nothing before it is
    recomputed.
    """
    if cache.get_seq_length() == len(ids):  # the last position is in
        cache.crop(-1)  # forget the last position's keys and values
    with torch.inference_mode():
        out = model(torch.tensor([ids[-1:]]), cache=cache)
    return out.logits[0, -1].float()


# the lesson functions this section shows
LESSONS = [last_step_cached]


def render(loaded, view) -> str:
    tokenizer, f, cached, n = loaded.tokenizer, view.facts, view.inside.cached, len(view.ids)
    shape = " × ".join(map(str, cached.keys[0]))
    st.markdown(
        "To generate, the model runs once per new token. In every layer, that token's query "
        "must meet the keys of all earlier positions and mix their values, and those do not "
        "change when a token is appended (the causal mask: no position reads a later one). So "
        "the library keeps them: the **KV cache**, one key and one value tensor per layer. "
        + f"The cache the model keeps for your {counted(n, 'token')} (one per learner: "
        "Chapter 1's Generate steps append to the same one), read from the cache itself:"
    )
    small_table(pd.DataFrame({
        "layer": range(len(cached.keys)),
        "keys [batch, KV heads, positions, head_dim]": [" × ".join(map(str, s))
                                                         for s in cached.keys],
        "values": [" × ".join(map(str, s)) for s in cached.values],
    }), most=6)
    sliding = [i for i, s in enumerate(cached.keys) if s[2] < n]
    if sliding:
        st.markdown(
            f"{counted(len(sliding), 'layer')} of this model attend through a sliding window: "
            "their cache keeps only the last positions a query may still read (fewer than "
            f"your {n:,}), so it can't be cut back to an earlier length: a step that changes "
            "an earlier token reads the text again.")
    st.markdown(
        f"{counted(len(cached.keys), 'layer')} × 2 tensors of {shape}: **{cached.nbytes:,} "
        f"bytes**, {f.kv_bytes_per_token:,} per token. Only the {f.kv_heads} key/value heads "
        f"are kept, not the {f.heads} query heads (section 3): queries are used once, by the "
        "position that made them."
    )
    per_layer = 2 * f.hidden * (f.heads + f.kv_heads) * f.head_dim  # q, k, v, o projections
    st.markdown("**Prefill versus one step.** What one layer computes:")
    small_table(pd.DataFrame({
        "": ["positions run through the projections and the MLP",
             "attention scores per head (the query × key pairs the mask lets through)",
             "keys and values read from the cache", "keys and values appended to it"],
        f"prefill of your {n:,} tokens": [n, n * (n + 1) // 2, 0, n],
        "one decode step (the next token)": [1, n + 1, n, 1],
    }))
    st.caption(f"Per position and layer, the projections alone are {per_layer:,} "
               f"multiply-adds and the MLP {3 * f.hidden * f.intermediate:,}: a step does them "
               f"once, a recomputation of the whole text and the new token {n + 1:,} times.")
    last = view.ids[-1]
    st.markdown(
        "Does a step through the cache give what a recomputation of everything gives? Here "
        f"the last token, “{markdown_literal(show(tokenizer, last))}” (id {last}), goes "
        "through the model once more, alone, with the cache of the positions before it:"
    )
    lesson(cached.step)
    verdict = "the same top-1 token" if cached.same_top else "a different top-1 (a near-tie)"
    st.markdown(
        f"Largest difference from the whole forward's last row of logits: **{cached.gap:.3g}** "
        f"({'the same numbers' if cached.gap == 0 else cached.gap.said()}; {verdict}), in "
        f"{cached.seconds * 1000:.0f} ms. The two runs "
        "add up their numbers in a different order (one query against a cache, or all queries "
        f"at once), so in {name(cached.gap.dtype)} they can differ in the last bits; the "
        "computation is the same."
    )
    same = ("the same logits" if cached.gap == 0 else
            f"the logits of recomputing everything, within {cached.gap.said()}")
    return ("The KV cache keeps every layer's keys and values, [1, KV heads, positions, "
            f"head_dim]; a decode step runs one position and reads the rest from it, with {same}.")
