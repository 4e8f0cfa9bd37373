"""The whole model rebuilt from the lesson functions and the model's own weights."""

import torch

from chapter2.attention import angles, attention
from chapter2.embeddings import embed, tied
from chapter2.mlp import mlp
from chapter2.rmsnorm import norm


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
    the same table model(ids).logits gives.
    """
    with torch.inference_mode():
        x = embed(model, ids)  # [positions, hidden]
        cos, sin = angles(model, len(ids))
        for layer in model.model.layers:
            x = decoder_layer(layer, x, cos, sin)
        x = norm(model.model.norm, x)
        return unembed(model, x).float()  # [positions, vocab]
