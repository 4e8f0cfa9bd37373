"""Section 2 — RMSNorm: bring each vector to a standard size before a layer reads it."""

import streamlit as st
import torch

from token_by_token import precision
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted

TITLE = "RMSNorm — every vector to the same scale"
READS = IDS | {"position", "layer"}


def rms_norm(x, weight, eps):
    """Scale each vector to root-mean-square 1, then weigh each coordinate.

    rms = sqrt(mean(x²)) is a vector's typical magnitude; dividing by
    it (rsqrt is 1 / sqrt) puts every position on the same scale, and
    the learned `weight` stretches each coordinate. eps avoids a
    division by zero. As in the library, the division runs in float32;
    its result is rounded back to x's dtype before the weight multiplies.
    """
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def norm(module, x):
    """One of the model's RMSNorm layers, by hand: its weight, its eps."""
    return rms_norm(x, module.weight, module.variance_epsilon)


# the lesson functions this section shows
LESSONS = [rms_norm, norm]


def render(loaded, view) -> str:
    model, facts, opened = loaded.model, view.facts, view.opened
    kinds = {}
    for name, module in model.named_modules():
        if type(module).__name__.endswith("RMSNorm"):
            kind = name.rsplit(".", 1)[-1]
            kinds[kind] = kinds.get(kind, 0) + 1
    st.markdown(
        "A layer works best on inputs of a predictable size, but the residual stream grows "
        "as layers add to it. So before each layer reads `x`, **RMSNorm** divides each "
        "position's vector by its root-mean-square (its typical magnitude) and multiplies "
        "each coordinate by a learned weight. Unlike LayerNorm (GPT-2), it does not subtract "
        f"the mean, and has no bias. This model's eps is {facts.eps:g}."
    )
    lesson(view.trace(rms_norm), note=f"Values from layer {opened.layer}'s first RMSNorm "
                                       "(the one before attention) on your text.")
    rms = float(opened.rms[view.position])
    st.markdown(
        f"At position {view.position}, layer {opened.layer} reads a vector whose "
        f"root-mean-square is **{rms:.4g}**; after dividing, it is 1, and the weights then "
        "scale each coordinate. Where the model uses RMSNorm, counted from its modules: "
        + ", ".join(f"`{kind}` × {count}" for kind, count in kinds.items())
        + f" ({counted(sum(kinds.values()), 'RMSNorm')} in all: two per layer on the "
        + ("residual stream, two per layer on each head's queries and keys, QK-norm, and one "
           "after the last layer)." if "q_norm" in kinds else
           "residual stream and one after the last layer; this model has no QK-norm)."))
    small_table(view.checks_table(["input RMSNorm"]))
    st.caption(view.rounding(["input RMSNorm"]))
    where = ("all in float32" if facts.dtype == torch.float32 else "the division in float32, "
             f"the product with the weight in the model's {precision.name(facts.dtype)}")
    return (f"RMSNorm = x / sqrt(mean(x²) + eps) × weight, {where}: every position reaches "
            "each layer at the same scale.")
