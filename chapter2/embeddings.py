"""Embeddings: each token id picks one row of a learned table."""

import torch


def embed(model, ids):
    """Token ids in, one vector per position out: [positions, hidden].

    The model keeps a table with one row per vocabulary entry, and a
    token id is a row number: embedding is a lookup. Qwen3 adds no
    position vector here; where a token sits enters later, inside
    attention (RoPE).
    """
    table = model.model.embed_tokens.weight  # [vocab, hidden]
    x = table[torch.tensor(ids)]  # [positions, hidden]
    return x


def tied(model) -> bool:
    """Does the model write its scores with the table it reads with?

    With tied embeddings the last step multiplies by this same table,
    transposed: one matrix, held once in memory, used twice.
    """
    return model.lm_head.weight is model.model.embed_tokens.weight


def nearest(model, token_id, k=8):
    """The k tokens whose rows point most nearly the same way.

    Cosine similarity: the dot product of two rows divided by their
    lengths, from 1 (same direction) to -1 (opposite). Returns
    (ids, similarities), the token itself left out.
    """
    table = model.model.embed_tokens.weight  # [vocab, hidden]
    dots = (table @ table[token_id]).float()  # one dot product per row
    lengths = torch.linalg.vector_norm(table, dim=-1, dtype=torch.float32)
    cosines = dots / (lengths * lengths[token_id]).clamp_min(1e-12)
    cosines[token_id] = float("-inf")  # not itself
    similarities, ids = cosines.topk(k)
    return ids, similarities
