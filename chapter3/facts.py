"""The numbers Chapter 3 states about the model, read from its config and its weights (never
written by hand: the page runs on any model Chapter 1 runs)."""

from dataclasses import dataclass
from functools import cache

import torch
from transformers import DynamicCache


@dataclass(frozen=True)
class Facts:
    layers: int               # decoder layers
    heads: int                # query heads per layer
    kv_heads: int             # key/value heads per layer (fewer: grouped-query attention)
    head_dim: int             # numbers per head
    bytes_per_number: int     # of the keys and values the KV cache keeps (the k_proj's dtype)
    dtype: torch.dtype        # the model's weights
    tied: bool                # the output layer is the embedding table

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @classmethod
    @cache
    def of(cls, model) -> "Facts":
        attn = model.model.layers[0].self_attn
        head_dim = attn.head_dim
        output, table = model.get_output_embeddings(), model.get_input_embeddings()
        return cls(len(model.model.layers), attn.q_proj.out_features // head_dim,
                   attn.k_proj.out_features // head_dim, head_dim,
                   attn.k_proj.weight.element_size(), table.weight.dtype,
                   output is not None and output.weight is table.weight)


def refusal(model) -> str | None:
    """None when Chapter 3 can run on `model`; else, in the learner's terms and from the
    model's own modules and config, what it is and what the chapter needs that it lacks: its
    sections reach into `model.model.layers` (separate q, k and v projections: the first
    layer's q, k, v, the matrices quantized) and read, crop and copy a KV cache that keeps
    every position (a sliding-window layer forgets the earliest ones)."""
    kind = f"`{type(model).__name__}` (`model_type` {getattr(model.config, 'model_type', '?')})"
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        lacks = ("its modules are laid out otherwise (no `model.layers`: GPT-2's "
                 "`transformer.h`, for one)")
    elif not all(hasattr(layers[0].self_attn, p) for p in ("q_proj", "k_proj", "v_proj")):
        lacks = "q, k and v come out of one fused projection (`qkv_proj`)"
    elif sliding := sum(DynamicCache(config=model.config).is_sliding):
        lacks = (f"{sliding} of its {len(layers)} layers attend through a sliding window of "
                 f"{model.config.sliding_window} positions: their KV cache forgets the "
                 "earliest positions, and this chapter reads, crops and copies a cache that "
                 "keeps every one")
    else:
        return None
    return (f"**Chapter 3 can't run on this model, {kind}:** {lacks}. Chapter 1 works on it "
            "in full. To measure a model here, pick one whose layers keep every position "
            "and project q, k and v apart (for example `Qwen/Qwen3-0.6B`, or the built-in "
            "pocket model).")
