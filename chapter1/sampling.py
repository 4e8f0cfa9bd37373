"""Section 4 — Sampling: a weighted random choice picks the next token id."""

import streamlit as st
import torch

from token_by_token.sections import lesson
from token_by_token.tokens import counted, markdown_literal, show, tail_chips

TITLE = "Sampling — a weighted random choice"


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
    tail_chips(tokenizer, [*ids, next_id], highlight=len(ids))
    grown = "never appended: at the cap" if full else counted(len(ids) + 1, "id")
    st.code(f"next_id = {next_id}  # {token!r}\nids = ids + [next_id]  # {grown}\n"
            f"ids = {[*ids, next_id]}", language="python", wrap_lines=True)
    return ("Sampling is `torch.multinomial(probs, 1)`: a weighted random choice. The seed "
            "makes it reproducible; the filters decide what can be chosen at all.")
