"""Section 3 — Filters and softmax: from the last row of scores to probabilities."""

import pandas as pd
import streamlit as st
import torch
from transformers import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from token_by_token import charts
from token_by_token.controls import table_alternative
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.state import SAMPLE
from token_by_token.tokens import markdown_literal, show

TITLE = "Filters and softmax — scores become probabilities"
READS = IDS | SAMPLE | {"table_filters"}
WIDGETS = {"table_filters"}


def warpers(temperature, top_k, top_p, min_p):
    """The filters generate() applies, in generate()'s order.

    Each one rewrites the scores; a removed token gets -inf.
    """
    chain = [TemperatureLogitsWarper(float(temperature))]
    if top_k > 0:
        chain.append(TopKLogitsWarper(int(top_k)))
    if top_p < 1.0:
        chain.append(TopPLogitsWarper(float(top_p)))
    if min_p > 0.0:
        chain.append(MinPLogitsWarper(float(min_p)))
    return chain


def probabilities(last_logits, chain):
    """Filters, then softmax: one probability per vocabulary entry."""
    scores = last_logits[None]  # the warpers work on a batch of rows
    for warper in chain:
        scores = warper(None, scores)  # (input_ids, scores)
    return torch.softmax(scores, dim=-1)[0]  # exp(-inf) = 0


class Watched:
    """A warper that also notes which tokens it let through, for the survivor table: the
    page runs `probabilities` once, with watched warpers, and reads the notes afterwards."""

    def __init__(self, warper):
        self.warper, self.kept = warper, None

    @property
    def shown_as(self):  # the live values beside the lesson show the warper itself
        return self.warper

    def __call__(self, input_ids, scores):
        scores = self.warper(input_ids, scores)
        self.kept = scores[0] > float("-inf")  # (a removed token is -inf; 4× faster than
        # torch.isfinite over 151,936 scores, measured)
        return scores


def survivors(original, watched: list[Watched]) -> pd.DataFrame:
    """After each filter in turn: how many tokens remain, and how much of the original
    probability (`original`: softmax at temperature 1, no filter) they carry. `watched` has
    been through `probabilities`."""
    rows = [("no filter", len(original), 1.0)]
    for w in watched:
        rows.append((describe(w.warper), int(w.kept.sum()), float(original[w.kept].sum())))
    return pd.DataFrame(rows, columns=["after", "tokens left", "original probability kept"])


NAMES = {TemperatureLogitsWarper: "temperature", TopKLogitsWarper: "top_k",
         TopPLogitsWarper: "top_p", MinPLogitsWarper: "min_p"}


def describe(warper) -> str:
    """A warper as the setting it applies, e.g. "top_k = 20"."""
    name = NAMES[type(warper)]
    return f"{name} = {getattr(warper, name):g}"


def bars_table(tokenizer, original, probs, next_id, count: int = 12) -> pd.DataFrame:
    """The top candidates by original probability (plus the sampled token): each token's
    probability before (`original`: softmax at temperature 1, no filter) and after the
    filters."""
    top = original.topk(count).indices.tolist()
    if next_id not in top:
        top.append(next_id)
    return pd.DataFrame({
        "token": [f"{show(tokenizer, i)}  ({i})" for i in top],
        "original": original[top].tolist(),
        "after filters": probs[top].tolist(),
        "sampled": [i == next_id for i in top],
    })


RULES = {
    "Temperature": "Divide every logit by T before softmax. T < 1 sharpens the distribution "
                   "(the favourite gets more), T > 1 flattens it (long shots get more), "
                   "T = 1 changes nothing. No token is removed.",
    "Top-K": "Keep only the K highest-scoring tokens; every other token gets -inf. K = 1 is "
             "greedy decoding, except that tokens tied with the K-th score stay too (in "
             "bfloat16, exact ties happen). 0 switches the filter off.",
    "Top-P (nucleus)": "Sort the tokens by probability and keep the smallest set whose "
                       "probabilities add up to at least P; the rest get -inf. The set grows "
                       "when the model is unsure and shrinks when it is confident. P = 1 "
                       "switches it off; P = 0 keeps exactly one token, the last of its sort: "
                       "the favourite, or, when several tie for first, one of them, not "
                       "necessarily the one `argmax` names (Top-K = 1 and Min-P = 1 keep all "
                       "the tied ones).",
    "Min-P": "Keep the tokens whose probability is at least min_p × the favourite's "
             "probability. Like Top-P it adapts to the model's confidence. 0 switches it "
             "off; 1 keeps only the favourite (and exact ties).",
}


# the lesson functions this section shows
LESSONS = [warpers, probabilities]


def render(loaded, view) -> str:
    tokenizer = loaded.tokenizer
    last, chain, probs, next_id = view.forward.last, view.chain, view.probs, view.next_id
    st.markdown(
        "To choose the next token we need probabilities: non-negative numbers that add up "
        "to 1. **Softmax** makes them from the last row of logits: `exp` every score, then "
        "divide by the total. Before softmax, **filters** reshape the scores and cut the "
        "long tail, so that a random choice can't pick a token the model thinks absurd."
    )
    lesson(view.trace(warpers), view.trace(probabilities))
    st.caption("These are the transformers library's own warpers, in the order its "
               "`generate()` applies them: Temperature → Top-K → Top-P → Min-P.")

    greedy = int(last.argmax())
    st.markdown(
        f"**Greedy decoding**, the baseline: always take the highest score. Here that is "
        f"`argmax(logits[-1]) = {greedy}`, the token "
        f"“{markdown_literal(show(tokenizer, greedy))}”. Greedy is deterministic and "
        "often dull or repetitive; sampling with filters is how chat models add variety."
    )
    for tab, rule in zip(st.tabs(list(RULES)), RULES.values(), strict=True):
        tab.markdown(rule)

    table = survivors(view.forward.original, chain)
    left = int(table["tokens left"].iloc[-1])
    st.markdown(
        f"With your settings ({', '.join(table['after'].iloc[1:])}), **{left:,} of "
        f"{len(last):,} tokens** can still be chosen. Move Temperature to 0.1, or Top-K to 1, "
        "in the sidebar and watch the bars."
    )
    bars = bars_table(tokenizer, view.forward.original, probs, next_id)
    st.vega_lite_chart(bars, charts.fast_spec(charts.probability_bars, bars), width="stretch")
    st.caption("Grey: the model's own probabilities (softmax at temperature 1, no filter). "
               "Blue: after your filters. The outlined bar is the token sampled in Section 4.")
    small_table(table, {"original probability kept": "{:.1%}"})
    table_alternative("The chart as a table", "table_filters", lambda: bars)
    return ("Temperature reshapes the scores, Top-K, Top-P and Min-P remove the unlikely "
            "tail, softmax turns what is left into probabilities that add up to 1.")
