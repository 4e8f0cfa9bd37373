"""The numbers Chapter 2 states about the model, read from its weights and config (never typed
in): its shape, its parameters per part, the dtype it computes in."""

from dataclasses import dataclass

import torch

from chapter2.attention import rope_theta


def parameters(model) -> dict[str, int]:
    """Parameter counts per part of the model, from its weights."""
    parts = {"embeddings": 0, "attention": 0, "MLP": 0, "RMSNorm": 0, "output layer": 0}
    seen = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue  # a tied output layer is the embedding table: counted once
        seen.add(id(p))
        part = ("embeddings" if "embed_tokens" in name else "output layer" if "lm_head" in name
                else "attention" if "self_attn" in name and "norm" not in name
                else "MLP" if ".mlp." in name else "RMSNorm")
        parts[part] += p.numel()
    return parts


@dataclass(frozen=True)
class Facts:
    """The numbers the chapter states about the model, read from its weights and config."""
    layers: int
    hidden: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    theta: float
    eps: float
    bytes_per_number: int
    dtype: torch.dtype        # what the weights (and so the model's arithmetic) are in
    attention: str            # the attention the model runs: "sdpa" (fused) or "eager"

    @classmethod
    def of(cls, model) -> "Facts":
        table, attn = model.model.embed_tokens.weight, model.model.layers[0].self_attn
        return cls(len(model.model.layers), table.shape[1], table.shape[0],
                   attn.q_proj.out_features // attn.head_dim,
                   attn.k_proj.out_features // attn.head_dim, attn.head_dim,
                   model.model.layers[0].mlp.gate_proj.out_features, rope_theta(model.config),
                   model.model.norm.variance_epsilon, table.element_size(), table.dtype,
                   getattr(model.config, "_attn_implementation", None) or "eager")

    @property
    def kv_bytes_per_token(self) -> int:
        """Keys and values of one position in every layer of the KV cache."""
        return self.layers * 2 * self.kv_heads * self.head_dim * self.bytes_per_number
