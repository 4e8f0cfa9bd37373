"""Section 4 — The MLP: after attention, each position is transformed on its own."""

import streamlit as st
import torch.nn.functional as F

from token_by_token.sections import lesson

TITLE = "The MLP — each position on its own"


def mlp(layer, x):
    """SwiGLU: a gated, widened transformation of each position.

    gate and up widen x (hidden -> intermediate numbers); silu(gate)
    decides how much of each up coordinate passes; down narrows it
    back to hidden. Positions don't mix here: row i only sees row i.
    """
    gate = layer.mlp.gate_proj(x)  # [positions, intermediate]
    up = layer.mlp.up_proj(x)  # [positions, intermediate]
    return layer.mlp.down_proj(F.silu(gate) * up)  # [positions, hidden]


def render(loaded, view) -> str:
    from chapter2.inside import parameters  # (inside imports these lessons)
    f, opened = view.facts, view.opened
    per_layer = 3 * f.hidden * f.intermediate
    st.markdown(
        "After attention has mixed information across positions, the **MLP** (multi-layer "
        "perceptron) transforms each position's vector on its own: widen it, let a gate "
        "decide what passes, narrow it back. Qwen3 uses **SwiGLU**: two widening "
        "projections, one of them through `silu` (x · sigmoid(x)) acting as the gate of the "
        f"other. Shapes in this model: {f.hidden:,} → {f.intermediate:,} → {f.hidden:,}."
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
    st.dataframe(view.checks_table(["MLP"]), hide_index=True)
    return ("The MLP is down(silu(gate(x)) × up(x)): a widened, gated transformation of each "
            "position alone, where most of a layer's parameters sit.")
