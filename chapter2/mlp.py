"""The MLP: after attention, each position is transformed on its own."""

import torch.nn.functional as F


def mlp(layer, x):
    """SwiGLU: a gated, widened transformation of each position.

    gate and up widen x (hidden -> intermediate numbers); silu(gate)
    decides how much of each up coordinate passes; down narrows it
    back to hidden. Positions don't mix here: row i only sees row i.
    """
    gate = layer.mlp.gate_proj(x)  # [positions, intermediate]
    up = layer.mlp.up_proj(x)  # [positions, intermediate]
    return layer.mlp.down_proj(F.silu(gate) * up)  # [positions, hidden]
