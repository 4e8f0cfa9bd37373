"""Section 4 — The MLP: after attention, each position is transformed on its own."""

import streamlit as st
import torch
import torch.nn.functional as F

from chapter2.architecture import family
from chapter2.facts import parameters
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS

TITLE = "The MLP — each position on its own"
READS = IDS | {"layer"}


def mlp(layer, x):
    """SwiGLU: a gated, widened transformation of each position.

    gate and up widen x (hidden -> intermediate numbers); silu(gate)
    scales each up coordinate (silu ≥ -0.28: it can also flip a sign);
    down narrows it back to hidden. Row i only sees row i.
    """
    gate = layer.mlp.gate_proj(x)  # [positions, intermediate]
    up = layer.mlp.up_proj(x)  # [positions, intermediate]
    return layer.mlp.down_proj(F.silu(gate) * up)  # [positions, hidden]


# the lesson functions this section shows
LESSONS = [mlp]


def render(loaded, view) -> str:
    f, opened = view.facts, view.opened
    per_layer = 3 * f.hidden * f.intermediate
    xs = torch.linspace(-4.0, 0.0, 40_001)
    lowest = int(F.silu(xs).argmin())  # where silu is lowest, found on a fine grid
    st.markdown(
        "After attention has mixed information across positions, the **MLP** (multi-layer "
        "perceptron) transforms each position's vector on its own: widen it, multiply two "
        f"widened copies coordinate by coordinate, narrow it back. {family(loaded.model)} uses "
        "**SwiGLU** (its config's hidden_act is silu): of "
        "the two widening projections, one goes through `silu` (x · sigmoid(x)) and scales "
        "the other. The field calls it the **gate**, but it is not a 0-to-1 switch: silu is "
        "near 0 for large negative inputs, about x itself for large positive ones, and "
        f"dips to {float(F.silu(xs[lowest])):.3f} (at x = {float(xs[lowest]):.3f}), so it "
        f"can also flip a sign. Shapes in this model: {f.hidden:,} → {f.intermediate:,} → "
        f"{f.hidden:,}."
    )
    lesson(view.trace(mlp), note=f"Values from layer {opened.layer} on your text.")
    parts = parameters(loaded.model)
    rank = sorted(parts, key=parts.get, reverse=True).index("MLP")
    st.markdown(
        f"Three matrices of {f.hidden:,} × {f.intermediate:,}: **{per_layer:,} parameters** "
        f"per layer, {parts['MLP']:,} in all {f.layers} layers: "
        + ("the largest part of the model." if rank == 0 else
           f"the {['', 'second', 'third', 'fourth'][rank]} largest part of the model "
           f"(after {' and '.join(sorted(parts, key=parts.get, reverse=True)[:rank])}).")
    )
    small_table(view.checks_table(["MLP"]))
    attended = opened.checks["attention output (o_proj)"][1]
    st.caption(("The lesson's MLP reads x plus the lesson's attention output, the library's "
                "reads x plus its own; the two attention outputs differ by "
                f"{attended.said()} (section 3), and the MLP carries that on. "
                if attended else "") + view.rounding(["MLP"]))
    layer = sum(p.numel() for p in loaded.model.model.layers[opened.layer].parameters())
    return ("The MLP is down(silu(gate(x)) × up(x)): a widened, gated transformation of each "
            f"position alone, with {per_layer / layer:.0%} of a layer's parameters.")
