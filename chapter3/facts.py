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
        config, layers = model.config, layers_of(model)
        output, table = model.get_output_embeddings(), model.get_input_embeddings()
        return cls(len(layers), config.num_attention_heads,
                   getattr(config, "num_key_value_heads", config.num_attention_heads),
                   head_dim(model), next(attention_of(layers[0]).parameters()).element_size(),
                   table.weight.dtype, output is not None and output.weight is table.weight,
                   windows(model))

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


def windows(model) -> tuple:
    """Each layer's sliding window (None: it reads every position), as the library's own
    cache for the model lays its layers out."""
    size = getattr(model.config, "sliding_window", None)
    return tuple(size if sliding else None
                 for sliding in DynamicCache(config=model.config).is_sliding)


def layers_of(model) -> torch.nn.ModuleList:
    """The decoder layers: `model.model.layers` (the Llama family, Phi-3, Gemma 3) or GPT-2's
    `model.transformer.h` (`base_model`: the model without its output layer)."""
    base = model.base_model
    return base.layers if hasattr(base, "layers") else base.h


def attention_of(layer) -> torch.nn.Module:
    """A decoder layer's attention: `self_attn` (GPT-2: `attn`)."""
    return layer.self_attn if hasattr(layer, "self_attn") else layer.attn


def head_dim(model) -> int:
    """Numbers per attention head, as the first layer's attention has them."""
    return attention_of(layers_of(model)[0]).head_dim


def refusal(model) -> str | None:
    """None when Chapter 3 can run on `model`; else, in the learner's terms, what it is and
    what the chapter needs that it lacks: its sections reach into the decoder layers (the
    first layer's q, k, v; the matrices quantized; the first layers as a draft), found as
    `model.model.layers` or GPT-2's `model.transformer.h`. Sliding-window layers are no
    obstacle: the chapter's KV caches keep every position (kvcache.keeping_every_position)."""
    try:
        head_dim(model)
        return None
    except (AttributeError, IndexError, TypeError):
        pass
    kind = f"`{type(model).__name__}` (`model_type` {getattr(model.config, 'model_type', '?')})"
    return (f"**Chapter 3 can't run on this model, {kind}:** its decoder layers are neither "
            "`model.layers` (the Llama family, Phi-3, Gemma 3) nor GPT-2's `transformer.h`, "
            "each with an attention that says its `head_dim`. Chapter 1 works on it in full. "
            "To measure a model here, pick one of those (for example `Qwen/Qwen3-0.6B`, or the "
            "built-in pocket model).")
