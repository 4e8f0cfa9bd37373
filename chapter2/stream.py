"""Section 8 — the residual stream: what each layer's attention and MLP add to it."""

from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch

from token_by_token import charts
from token_by_token.locks import FORWARD_LOCK
from token_by_token.memo import Slot
from token_by_token.precision import name
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import markdown_literal, show
from token_by_token.trace import traced

TITLE = "The residual stream — what each layer adds"
READS = IDS | {"position"}


def push(model, update, token_id, scale):
    """Roughly how much an update to x moves one token's score.

    The final RMSNorm divides x by its size (scale), then weighs each
    coordinate; a token's score is the dot product with its output
    row. Holding the division fixed (an approximation: the update
    changes the size too), the update adds about this much.
    """
    weight = model.model.norm.weight.float()
    row = model.lm_head.weight[token_id].float()  # tied: the embedding row
    return (update / scale * weight) @ row


@dataclass(frozen=True)
class Pushes:
    """Section 8's numbers at the last position: its top-1 token, the final norm's scale
    there, push() of every layer's two updates on that token (and the last one traced), the
    embedding's own push, and the library's logit of that token."""
    token: int
    scale: float
    pushes: list[list[float]]
    trace: object
    embedded: float
    logit: float


PUSHES: Slot[Pushes] = Slot("chapter2.pushes")


def pushes_of(model, seen, eps: float, memo) -> Pushes:
    """The pushes of the learner's ids (kept per ids: no control changes them)."""
    if (same := memo.get(PUSHES, seen.ids)) is not None:
        return same
    final = seen.stream[-1, -1].float()
    token = int(seen.top_library[-1])
    scale = float(final.pow(2).mean().add(eps).sqrt())
    with FORWARD_LOCK, torch.inference_mode():  # (passes over the vocabulary's table)
        pushes = [[float(push(model, u, token, scale)) for u in opened.last]
                  for opened in seen.layers]
        trace = traced(push, model, seen.layers[-1].last[1], token, scale)[1]
        embedded = float(push(model, seen.stream[0, -1].float(), token, scale))
        logit = float(model.lm_head(model.model.norm(seen.stream[-1, -1]))[token])
    return memo.put(PUSHES, seen.ids, Pushes(token, scale, pushes, trace, embedded, logit))


# the lesson functions this section shows
LESSONS = [push]


def render(loaded, view) -> str:
    tokenizer, f, seen, position = loaded.tokenizer, view.facts, view.inside, view.position
    sizes = torch.stack([opened.updates[:, position] for opened in seen.layers])  # [L, 2]
    st.markdown(
        "Every layer adds two updates to the stream: attention's and the MLP's. How large is "
        f"each, at position {position} “{markdown_literal(show(tokenizer, view.ids[position]))}"
        "” (pick another token in the sidebar)? The length (norm) of each update, layer by "
        "layer:"
    )
    table = pd.DataFrame({"layer": list(range(f.layers)) * 2,
                          "update": ["attention"] * f.layers + ["MLP"] * f.layers,
                          "value": sizes.T.flatten().tolist()})
    st.vega_lite_chart(table, charts.fast_spec(charts.layer_bars, table), width="stretch")
    token, scale, pushes, trace, embedded, logit = (
        view.pushes.token, view.pushes.scale, view.pushes.pushes, view.pushes.trace,
        view.pushes.embedded, view.pushes.logit)
    st.markdown(
        "Which layers push the prediction? At the last position the model's top-1 next token "
        f"is “{markdown_literal(show(tokenizer, token))}” (id {token}). Each update's push "
        "on its score:"
    )
    lesson(trace, note="Values for the last layer's MLP update.")
    pushed = pd.DataFrame({"layer": range(f.layers),
                           "attention": [p[0] for p in pushes], "MLP": [p[1] for p in pushes]})
    small_table(pushed, {"attention": "{:+.3g}", "MLP": "{:+.3g}"}, most=8)
    best = pushed.melt("layer").sort_values("value").iloc[-1]
    st.caption(f"The largest push comes from layer {int(best['layer'])}'s {best['variable']} "
               f"({best['value']:+.3g}). Approximate: the final norm's division is held fixed.")
    total = embedded + sum(map(sum, pushes))
    st.markdown(
        f"The stream at the end is the embedding plus every update, so with the final norm's "
        f"division fixed at its end value ({scale:.4g}) the pushes add up: the embedding's own "
        f"push **{embedded:+.3g}** and the {2 * f.layers} updates' give **{total:.4g}**; the "
        f"library's logit of “{markdown_literal(show(tokenizer, token))}” is **{logit:.4g}** "
        f"(the updates here are the lessons' and the library rounds each addition to "
        f"{name(f.dtype)}: the last digits differ). What is approximate is each "
        "share: without an update the stream would also have another size, so its push is "
        "not exactly what the score would lose without it."
    )
    return ("x only ever grows by addition: each layer's attention and MLP add an update, and "
            "with the final norm's division held fixed, the embedding's push and the updates' "
            "add up to the token's logit.")
