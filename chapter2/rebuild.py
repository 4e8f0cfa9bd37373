"""Section 5 — the whole model rebuilt from the lesson functions and its own weights."""

import pandas as pd
import streamlit as st
import torch

from chapter2.attention import angles, attention
from chapter2.embeddings import embed, tied
from chapter2.facts import parameters
from chapter2.mlp import mlp
from chapter2.rmsnorm import norm
from token_by_token import precision
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted, show

TITLE = "The residual stream and the whole model"
READS = IDS | {"layer"}


def decoder_layer(layer, x, cos, sin):
    """One layer: two edits added to the residual stream x.

    Attention lets each position read earlier ones; the MLP then works
    on each position alone. Each reads a normalised copy of x and adds
    its result to x, so x flows through every layer unchanged except
    for what layers add to it.
    """
    x = x + attention(layer, norm(layer.input_layernorm, x), cos, sin)
    x = x + mlp(layer, norm(layer.post_attention_layernorm, x))
    return x


def unembed(model, x):
    """Scores for every vocabulary entry: x @ tableᵀ, [positions, vocab].

    With tied embeddings the table is the embedding table itself: the
    score of token t is the dot product of x with t's own row.
    """
    if tied(model):
        table = model.model.embed_tokens.weight  # [vocab, hidden]
    else:
        table = model.lm_head.weight
    return x @ table.T


def forward_by_hand(model, ids):
    """The model's forward, step by step: token ids in, logits out.

    Embed, run every layer on the residual stream, normalise it once
    more, score it against the vocabulary: float32 [positions, vocab],
    model(ids).logits with eager attention, bit for bit (the default,
    fused attention rounds in other places: equal to the last bits).
    """
    with torch.inference_mode():
        x = embed(model, ids)  # [positions, hidden]
        cos, sin = angles(model, len(ids))
        for layer in model.model.layers:
            x = decoder_layer(layer, x, cos, sin)
        x = norm(model.model.norm, x)
        return unembed(model, x).float()  # [positions, vocab]


# the lesson functions this section shows
LESSONS = [decoder_layer, unembed, forward_by_hand]


def render(loaded, view) -> str:
    tokenizer, f, seen, n = loaded.tokenizer, view.facts, view.inside, len(view.ids)
    st.markdown(
        "Now put the pieces together. Each layer reads a normalised copy of the residual "
        "stream `x` and **adds** its result to `x`: attention first, then the MLP. Nothing "
        "overwrites `x`, so what the embeddings put there flows to the end, plus what every "
        f"layer added. The same function runs for each of the {f.layers} layers, with that "
        "layer's weights. After the last one: the final RMSNorm, and the scores against the "
        "vocabulary, with the embedding table itself when the weights are tied."
    )
    lesson(decoder_layer, unembed, forward_by_hand)
    st.caption("The page ran exactly these functions on your ids (in chunks of positions for "
               "the last product, to keep memory low) and compared every layer with the "
               "library's forward.")
    small_table(view.checks_table(["layer output"]))
    st.caption(view.rounding(["layer output"]))
    st.subheader("Your logits, by hand and by the library")
    agree, worst, dtype, kind = seen.agree, seen.logit_gap(), f.dtype, f.attention
    st.markdown(
        f"The top-1 next token by hand equals the library's at **{agree:,} of "
        f"{counted(n, 'position')}**; the largest difference of any logit anywhere is "
        f"**{worst:.4g}**: {worst.said()}, the largest logit at that position. The model "
        f"computes in {precision.name(dtype)}: {precision.significant_bits(dtype)} "
        f"significant bits, about {precision.decimal_digits(dtype):.1f} decimal digits. "
        + ("The lesson functions round where the library's plain (eager) attention does, and "
           "give its logits bit for bit (tested); the model here runs its fused "
           f"{kind} attention, which adds in another order"
           + (" and keeps the scores and weights in float32" if dtype != torch.float32
              else "") + ", so the two differ in the last bits." if kind != "eager" else
           "The model runs the library's plain (eager) attention, which the lessons "
           "reproduce operation by operation.")
    )
    differ = (seen.top_hand != seen.top_library).nonzero().flatten().tolist()
    if differ:
        st.markdown(
            "Where the top-1 differs, the library's two best scores are "
            + ", ".join(f"{float(seen.margins[p]):.3g} apart (position {p})" for p in differ[:5])
            + ": near-ties, which a rounding difference can swap."
        )
    table = pd.DataFrame({
        "position": range(n),
        "token": [show(tokenizer, i) for i in view.ids],
        "top-1 by hand": [show(tokenizer, i) for i in seen.top_hand.tolist()],
        "top-1 by the library": [show(tokenizer, i) for i in seen.top_library.tolist()],
        "max |difference|": seen.logit_gaps.tolist(),
        "in steps of the dtype": [seen.logit_gap(p).said() for p in range(n)],
    })
    small_table(table, most=8)
    st.markdown("The residual stream after each layer, by hand against the library's "
                "forward (each layer fed the previous by-hand result, so a difference is "
                "carried on and can grow):")
    small_table(pd.DataFrame({"after layer": range(f.layers),
                              "max |by hand − library|": map(float, seen.layer_gaps),
                              "in steps of the dtype": [d.said() for d in seen.layer_gaps]}),
                {"max |by hand − library|": "{:.3g}"}, most=8)
    parts = parameters(loaded.model)
    total = sum(parts.values())
    st.markdown(
        "Where the parameters are, counted from the weights: "
        + ", ".join(f"{part} {count:,} ({count / total:.0%})" for part, count in parts.items()
                    if count)
        + f"; **{total:,} in all**. Opening the model on your text took {seen.seconds:.2f} s "
        "here: the library's forward with every layer opened by the lessons, one cached step "
        "(section 9), then the forward by hand."
    )
    return (f"The model is embed → {f.layers} × (x += attention(norm(x)); x += mlp(norm(x))) "
            "→ norm → × tableᵀ. Rebuilt from its weights, it gives the library's logits, to "
            f"the last bits of {precision.name(f.dtype)}.")
