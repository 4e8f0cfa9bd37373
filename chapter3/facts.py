"""The numbers Chapter 3 states about the model, read from its config and its weights (never
written by hand: the page runs on any model Chapter 1 runs)."""

from dataclasses import dataclass
from functools import cache

import torch


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
