"""The numbers Chapter 3 states about the model, read from its config and its weights (never
written by hand: the page runs on any model Chapter 1 runs)."""

from dataclasses import dataclass
from functools import cache

import torch

from chapter2.attention import sliding_window


@dataclass(frozen=True)
class Facts:
    layers: int               # decoder layers
    heads: int                # query heads per layer
    kv_heads: int             # key/value heads per layer (fewer: grouped-query attention)
    head_dim: int             # numbers per head
    bytes_per_number: int     # of the keys and values the KV cache keeps (the attention's dtype)
    dtype: torch.dtype        # the model's weights
    tied: bool                # the output layer is the embedding table
    windows: tuple            # each layer's sliding window (None: it reads every position)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @classmethod
    @cache
    def of(cls, model) -> "Facts":
        config, attn = model.config, model.model.layers[0].self_attn
        output, table = model.get_output_embeddings(), model.get_input_embeddings()
        return cls(len(model.model.layers), config.num_attention_heads,
                   config.num_key_value_heads, attn.head_dim,
                   next(attn.parameters()).element_size(), table.weight.dtype,
                   output is not None and output.weight is table.weight,
                   tuple(sliding_window(layer) for layer in model.model.layers))

    def windowed(self) -> str:
        """A sentence on the sliding-window layers, if the model has any (else "")."""
        sliding = [w for w in self.windows if w is not None]
        if not sliding:
            return ""
        sizes = " or ".join(f"{w:,}" for w in sorted(set(sliding)))
        return (f"{len(sliding)} of its {self.layers} layers attend through a sliding window "
                f"of {sizes} positions: a server keeps only that many in their cache. This "
                "chapter's KV cache keeps every position of every layer (the mask still hides "
                "what the window hides), and its figures count every one.")

    def first_layer_window(self, n: int) -> str:
        """A sentence for the lessons on the first layer's attention at n positions, if that
        layer's window is shorter (else "")."""
        w = self.windows[0]
        if w is None or w >= n:
            return ""
        return (f" The first layer of this model reads only the last {w:,} positions: its own "
                "mask hides every key further back. The ways compared here all read every "
                "earlier key: they agree with one another, not with that layer past "
                f"{w:,} positions.")


def refusal(model) -> str | None:
    """None when Chapter 3 can run on `model`; else, in the learner's terms and from the
    model's own modules and config, what it is and what the chapter needs that it lacks: its
    sections reach into `model.model.layers` (the first layer's q, k, v; the matrices
    quantized; the first layers as a draft). Sliding-window layers are no obstacle: the
    chapter's KV caches keep every position (kvcache.keeping_every_position)."""
    if getattr(getattr(model, "model", None), "layers", None) is not None:
        return None
    kind = f"`{type(model).__name__}` (`model_type` {getattr(model.config, 'model_type', '?')})"
    return (f"**Chapter 3 can't run on this model, {kind}:** its modules are laid out "
            "otherwise (no `model.layers`: GPT-2's `transformer.h`, for one). Chapter 1 works "
            "on it in full. To measure a model here, pick one whose layers are `model.layers` "
            "(for example `Qwen/Qwen3-0.6B`, or the built-in pocket model).")
