"""Section 4 — Sampling: a weighted random choice picks the next token id."""

import math

import pandas as pd
import streamlit as st
import torch

from token_by_token import charts
from token_by_token.sections import lesson
from token_by_token.sequence import IDS
from token_by_token.state import SAMPLE
from token_by_token.tokens import TAIL, counted, markdown_literal, show, tail_chips
from token_by_token.trace import describe_ids, traced

TITLE = "Sampling — a weighted random choice"
READS = IDS | SAMPLE


def sample(probs, generator=None):
    """A weighted random choice: id i comes out with probability probs[i].

    `generator` is the random stream (None: torch's global one).
    """
    next_id = torch.multinomial(probs, num_samples=1, generator=generator)
    return next_id.item()


def random_stream(seed, position, draw):
    """Same seed, same text: every draw gets its own reproducible stream,
    fixed by the seed, the position being predicted and the resample count."""
    return torch.Generator().manual_seed(hash((seed, position, draw)) % 2**63)


def entropy(probs):
    """How unsure a distribution is, in bits: −Σ p · log₂ p.

    0 bits: one token is certain. 2 ** entropy is the effective number
    of choices: a fair pick among that many tokens is as unsure. Works
    on one row of probabilities or on many (one value per row).
    """
    terms = probs * probs.log2()  # p = 0 gives 0 · -inf = nan: counts 0
    return -terms.nan_to_num(0.0).sum(dim=-1)


def surprisal(p):
    """How surprising an outcome of probability p is, in bits: −log₂ p.

    A coin's side: 1 bit. A token at 1 %: 6.6 bits.
    """
    return -math.log2(p)


def many_draws(probs, n, generator=None):
    """n weighted random choices at once, like sample() n times.

    Returns how often each id came out, as a share of the n draws.
    """
    drawn = torch.multinomial(probs, n, replacement=True, generator=generator)
    return torch.bincount(drawn, minlength=len(probs)) / n


def total_variation(p, q):
    """How far apart two distributions are: half of Σ |p − q|.

    0: the same; 1: nothing in common.
    """
    return float((p - q).abs().sum() / 2)


DRAWS = 1_000  # how many draws section 4 makes at once


# the lesson functions this section shows
LESSONS = [random_stream, sample, entropy, surprisal, many_draws, total_variation]


def render(loaded, view) -> str:
    tokenizer = loaded.tokenizer
    ids, probs, next_id = view.ids, view.probs, view.next_id
    seed, draw = view.seed, view.resamples
    st.markdown(
        "Now pick one token. Not always the most likely one (that is greedy decoding): draw "
        "at random, with each token's chance equal to its probability. A token at 30% "
        "comes out about 3 times in 10; a token the filters removed has probability 0 and "
        "never comes out. `torch.multinomial` makes that draw."
    )
    lesson(view.trace(sample), view.trace(random_stream))
    token = show(tokenizer, next_id)
    st.markdown(
        f"With seed **{seed}** and resample count **{draw}**, the draw for position "
        f"{len(ids)} gave id **{next_id}**, “{markdown_literal(token)}”, which had "
        f"probability **{float(probs[next_id]):.1%}**. Press **Resample** in the sidebar for "
        "another draw from the same probabilities, or change the seed."
    )
    full = view.stop == "cap"
    st.markdown("The new token sequence, with the sampled token last" + (
        f" (drawn, but never appended: the sequence is at this app's context cap of "
        f"{loaded.max_tokens:,} tokens):" if full else ":"))
    after = [*ids, next_id]
    tail_chips(tokenizer, after, highlight=len(ids))
    grown = "never appended: at the cap" if full else counted(len(ids) + 1, "id")
    # the list whole while the chips show every id; past that, its ends (as value comments)
    listed = f"ids = {after}" if len(after) <= TAIL else f"# ids: {describe_ids(after)}"
    st.code(f"next_id = {next_id}  # {token!r}\nids = ids + [next_id]  # {grown}\n{listed}",
            language="python", wrap_lines=True)
    render_uncertainty(tokenizer, view)
    render_draws(tokenizer, view)
    return ("Sampling is `torch.multinomial(probs, 1)`: a weighted random choice. The seed "
            "makes it reproducible; the filters decide what can be chosen at all.")


def render_uncertainty(tokenizer, view) -> None:
    """How sure the model is about the next token, before and after the filters, and how
    surprising the drawn token is."""
    st.subheader("How sure is the model?")
    before = view.forward.original  # temperature 1, no filters
    bits = {"Before the filters": view.forward.original_bits, "after the filters": view.bits}
    lesson(view.trace(entropy), view.trace(surprisal))
    p_before, p_after = float(before[view.next_id]), float(view.probs[view.next_id])
    rank = int((before > before[view.next_id]).sum()) + 1
    st.markdown(
        "**Entropy** measures how unsure a distribution is; 2 to its power is the **effective "
        "number of choices**. " + "; ".join(
            f"{when}: **{b:.2f} bits**, like a fair pick among **{2 ** b:,.1f}** tokens"
            for when, b in bits.items()) + ". "
        f"The drawn token “{markdown_literal(show(tokenizer, view.next_id))}” is the model's "
        f"number **{rank:,}** (before the filters): probability {p_before:.2%} before the "
        f"filters, {p_after:.2%} after, a **surprisal** of {surprisal(p_after):.2f} bits "
        "(−log₂ p, the probability it was drawn with)."
    )


def render_draws(tokenizer, view) -> None:
    """DRAWS draws from the same probabilities: their shares against the probabilities."""
    st.subheader(f"{DRAWS:,} draws")
    shares, trace = traced(many_draws, view.probs, DRAWS,
                           random_stream(view.seed, len(view.ids), view.resamples))
    distance, distance_trace = traced(total_variation, shares, view.probs)
    lesson(trace, distance_trace)
    top = torch.topk(view.probs, 12).indices.tolist()  # (a full argsort: 8 ms, measured)
    table = pd.DataFrame({
        "token": [f"{show(tokenizer, i)} ({i})" for i in top],
        "probability": view.probs[top].tolist(),
        f"share of {DRAWS:,} draws": shares[top].tolist(),
        "sampled": [i == view.next_id for i in top],
    })
    st.vega_lite_chart(table, charts.fast_spec(charts.probability_bars, table),
                       width="stretch")
    st.markdown(
        f"Drawn {DRAWS:,} times, each token comes out about as often as its probability "
        f"says: the total-variation distance between the shares and the probabilities is "
        f"**{distance:.3f}** (0 would be a perfect match; it shrinks like 1/√n as n grows). "
        "This is what sampling means: not the likeliest token, but each token as often as "
        "its probability."
    )
