"""Section 3 — Attention by blocks: FlashAttention's online softmax.

softmax(q·kᵀ/√d + mask)·v, computed without ever holding the [positions × positions] table of
scores: keys and values arrive a block at a time, and each query keeps a running maximum, a
running sum and an output mixed so far, rescaled whenever a block raises the maximum.
"""

import inspect
import math
import sys
from dataclasses import dataclass, replace
from functools import cache

import pandas as pd
import streamlit as st
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend
from transformers.models.qwen3.modeling_qwen3 import repeat_kv

from chapter3.measure import size
from token_by_token import controls
from token_by_token.locks import FORWARD_LOCK
from token_by_token.memo import Slot
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted
from token_by_token.trace import Trace, traced

TITLE = "Attention by blocks — no positions × positions table"
READS = IDS | {"flash_block"}
WIDGETS = {"flash_block"}

BLOCKS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # the block sizes offered
MOST_BLOCKS = 128  # more blocks than this (a tiny block, a long text): a larger block is used
SHOWN = 3  # blocks of positions the traced call of the lesson reads


def block_scores(q, k_block, start):
    """Every query's scores against one block of keys, the future masked.

    The block holds the keys of positions start, start + 1, …; query i
    may read key j only if j <= i.
    """
    x = q @ k_block.transpose(-2, -1) * q.shape[-1] ** -0.5
    keys = torch.arange(start, start + k_block.shape[-2])
    future = keys[None, :] > torch.arange(q.shape[-2])[:, None]
    return x.masked_fill(future, float("-inf"))


def attention_tiled(q, k, v, block):
    """softmax(q·kᵀ/√d, causal)·v, reading keys and values block by block.

    Per query: m, the largest score so far; s, the sum of exp(score − m);
    o, the values mixed with those weights. A block that raises m
    rescales s and o by exp(m_old − m_new). No positions × positions
    table is made. q, k, v: [heads, positions, head_dim], float32 out.
    """
    q, k, v = q.float(), k.float(), v.float()
    m = torch.full((*q.shape[:2], 1), float("-inf"))  # running max
    s = torch.zeros(*q.shape[:2], 1)  # running sum
    o = torch.zeros_like(q)  # output so far (not yet divided by s)
    for start in range(0, k.shape[1], block):
        x = block_scores(q, k[:, start:start + block], start)
        m_new = torch.maximum(m, x.amax(-1, keepdim=True))
        p, rescale = torch.exp(x - m_new), torch.exp(m - m_new)
        s = s * rescale + p.sum(-1, keepdim=True)
        o = o * rescale + p @ v[:, start:start + block]
        m = m_new
    return o / s


def attention_plain(q, k, v):
    """The same attention the plain way: softmax(q·kᵀ/√d + mask)·v,
    the whole positions × positions table of scores at once (the
    mask: −∞ above the diagonal, where a key is in the query's future).
    float32."""
    q, k, v = q.float(), k.float(), v.float()
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    mask = torch.full(scores.shape[-2:], float("-inf")).triu(1)
    scores += mask  # in place: no second [heads, n, n] table
    return torch.softmax(scores, dim=-1) @ v


LESSONS = [block_scores, attention_tiled, attention_plain]


# --- what the page computes (not lessons) ------------------------------------------------

def first_layer_qkv(model, ids):
    """q, k, v of the first layer for `ids`, by the library's own modules: its input is the
    embeddings, so no forward of the model is needed. QK-norm where the model has it, RoPE by
    the apply_rotary_pos_emb of the model's own module (Phi-3's may turn part of each head
    only), k and v shared out to the query heads by its
    repeat_kv: [heads, positions, head_dim] each, in the model's dtype."""
    if hasattr(model, "transformer"):  # GPT-2: learned positions, no RoPE
        return gpt2_first_layer_qkv(model, ids)
    layer, x = model.model.layers[0], model.model.embed_tokens(torch.tensor([ids]))
    attn, h, config = layer.self_attn, layer.input_layernorm(x), model.config
    shape = (1, len(ids), -1, attn.head_dim)
    if hasattr(attn, "qkv_proj"):  # Phi-3: one fused projection, q then k then v
        q_size, kv = (n * attn.head_dim for n in (config.num_attention_heads,
                                                  config.num_key_value_heads))
        q, k, v = (t.view(shape) for t in attn.qkv_proj(h).split([q_size, kv, kv], -1))
    else:
        q, k, v = (linear(h).view(shape) for linear in (attn.q_proj, attn.k_proj, attn.v_proj))
    if hasattr(attn, "q_norm"):  # Qwen3, Gemma 3: each head's q and k normalised before RoPE
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    rotary, positions = model.model.rotary_emb, torch.arange(len(ids))[None]
    by_kind = "layer_type" in inspect.signature(rotary.forward).parameters  # Gemma 3
    cos, sin = rotary(x, positions, *([config.layer_types[0]] if by_kind else []))
    q, k = sys.modules[type(attn).__module__].apply_rotary_pos_emb(q, k, cos, sin)
    groups = q.shape[1] // k.shape[1]
    return q[0], repeat_kv(k, groups)[0], repeat_kv(v, groups)[0]


def gpt2_first_layer_qkv(model, ids):
    """first_layer_qkv() for GPT-2: the embeddings plus the learned position embeddings,
    its first norm, then q, k, v side by side out of one projection (`c_attn`), one key and
    value head per query head."""
    base, positions = model.transformer, torch.arange(len(ids))
    layer = base.h[0]
    h = layer.ln_1(base.wte(torch.tensor([ids])) + base.wpe(positions))
    q, k, v = (t.view(1, len(ids), -1, layer.attn.head_dim).transpose(1, 2)[0]
               for t in layer.attn.c_attn(h).split(base.embed_dim, dim=-1))
    return q, k, v


@cache
def library_algorithm() -> str | None:
    """Which of PyTorch's attention algorithms its scaled_dot_product_attention (the model's
    attention) picks on this machine for a causal bfloat16 call, as torch itself says
    (`torch._fused_sdp_choice`): e.g. FLASH_ATTENTION. None if torch can't say."""
    try:
        q = torch.randn(1, 2, 8, 16, dtype=torch.bfloat16)
        return SDPBackend(torch._fused_sdp_choice(q, q, q, is_causal=True)).name
    except (AttributeError, RuntimeError, ValueError):
        return None


def effective_block(block: int, n: int) -> int:
    """The learner's block, or a larger one when it would make more than MOST_BLOCKS."""
    return max(block, 2 ** math.ceil(math.log2(max(n / MOST_BLOCKS, 1))))


@dataclass(frozen=True)
class Tiled:
    block: int               # the block size used
    asked: int               # the block size the learner picked
    n: int
    heads: int
    head_dim: int
    gap_plain: float         # max |tiled − plain|
    gap_library: float       # max |tiled − torch's scaled_dot_product_attention|
    largest: float           # max |plain|
    gap_cache: float         # max |k − the keys of layer 0 in the learner's KV cache|
    steps: pd.DataFrame      # the last query's running max and sum, block by block (head 0)
    shown: Trace             # attention_tiled traced on the first SHOWN blocks
    shown_positions: int
    algorithm: str | None    # the algorithm PyTorch's attention picks here (library_algorithm)

    @property
    def traces(self) -> dict:
        return {"attention_tiled": self.shown}


QKV: Slot[tuple] = Slot("chapter3.flash.qkv")  # per ids: the first layer's q, k, v
TILED: Slot[Tiled] = Slot("chapter3.flash.tiled")  # per ids and block


def qkv_of(model, ids: tuple[int, ...], memo) -> tuple:
    """first_layer_qkv(), kept per ids in the learner's memo (sections 3 and 6 read it)."""
    if (found := memo.get(QKV, ids)) is None:
        with FORWARD_LOCK, torch.inference_mode():
            found = memo.put(QKV, ids, first_layer_qkv(model, list(ids)))
    return found


def running(q, k, block: int) -> pd.DataFrame:
    """The last query's m and s after each block, for head 0 (the loop of attention_tiled,
    followed for one row): what the page's table shows."""
    row = q[0, -1].float() @ k[0].float().T * q.shape[-1] ** -0.5  # it may read every key
    m, s, rows = float("-inf"), 0.0, []
    for start in range(0, len(row), block):
        x = row[start:start + block]
        m_new = max(m, float(x.max()))
        rescale = math.exp(m - m_new) if m != float("-inf") else 0.0
        s = s * rescale + float(torch.exp(x - m_new).sum())
        rows.append({"block": len(rows), "positions": f"{start}–{start + len(x) - 1}",
                     "largest score in the block": float(x.max()), "running max m": m_new,
                     "rescale exp(m_old − m_new)": rescale, "running sum s": s})
        m = m_new
    return pd.DataFrame(rows)


def tiled_of(model, ids: tuple[int, ...], asked: int, cached_keys, memo) -> Tiled:
    """attention_tiled() on the first layer's q, k, v of the learner's ids, in blocks of
    `asked` (or the larger block effective_block() gives), against the plain way and PyTorch's
    own attention (kept per ids and block: the block slider runs no module of the model).
    `cached_keys`: layer 0's keys in the learner's KV cache [kv heads, positions, head_dim],
    which k must be."""
    block = effective_block(asked, len(ids))
    if (tiled := memo.get(TILED, (ids, block))) is None:
        q, k, v = qkv_of(model, ids, memo)
        with FORWARD_LOCK, torch.inference_mode():
            out, plain = attention_tiled(q, k, v, block), attention_plain(q, k, v)
            library = F.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                     is_causal=True)
            shown = min(len(ids), SHOWN * block)
            _, trace = traced(attention_tiled, q[:, :shown], k[:, :shown], v[:, :shown], block)
        tiled = memo.put(TILED, (ids, block), Tiled(
            block, asked, len(ids), q.shape[0], q.shape[-1],
            float((out - plain).abs().max()), float((out - library).abs().max()),
            float(plain.abs().max()),
            float((k[:: q.shape[0] // len(cached_keys)] - cached_keys).abs().max()),
            running(q, k, block), trace, shown, library_algorithm()))
    return replace(tiled, asked=asked)  # blocks of 1 and 4 may both use 8


def render(loaded, view) -> str:
    t: Tiled = view.tiled
    n, heads = t.n, t.heads
    st.markdown(
        "Chapter 2 computed attention the plain way: a table of scores, one per query and key "
        f"(your {counted(n, 'token')}: {n:,} × {n:,} per head), then softmax along each row, "
        "then the values mixed by those weights. The table grows with the square of the "
        "length. Yet each query only needs a weighted average of the values, and an average "
        "can be kept as it goes: read the keys and values a **block** at a time, and keep per "
        "query a running maximum `m`, a running sum `s` of exp(score − m) and the output mixed "
        "so far. When a block brings a larger score, the earlier sum and output were "
        "weighed against a too-small maximum: multiply them by exp(m_old − m_new) and go on. "
        "That is the **online softmax**, the heart of **FlashAttention** (Dao et al., 2022). "
        "(Why a maximum at all? exp of a large score overflows; subtracting the largest score "
        "first keeps every exp at most 1, and softmax does not change when all the scores "
        "of a row move by the same amount.)"
    )
    controls.flash_block_slider(BLOCKS)
    if t.block != t.asked:
        st.caption(f"Blocks of {t.asked} would make {math.ceil(n / t.asked):,} blocks for your "
                   f"{counted(n, 'token')}: the page uses blocks of {t.block} (at most "
                   f"{MOST_BLOCKS} blocks, to keep this quick).")
    lesson(block_scores, view.trace(attention_tiled), attention_plain,
           note=f"The values are from a call on the first {counted(t.shown_positions, 'position')}"
                f" ({math.ceil(t.shown_positions / t.block)} blocks of {t.block}); the page "
                f"ran the same function on all {n:,} for the check below.")
    st.markdown(
        f"On your text, the first layer's q, k and v ({heads} query heads × {n:,} positions × "
        f"{t.head_dim}), computed from your embeddings by the library's own modules "
        "(`first_layer_qkv` in this chapter's code; its keys are your KV cache's first layer's, "
        + ("bit for bit" if t.gap_cache == 0 else f"to {t.gap_cache:.2g}")
        + f"), in blocks of **{t.block}** ({counted(math.ceil(n / t.block), 'block')}): "
        "the largest difference "
        f"from the plain way is **{t.gap_plain:.2g}** (the outputs reach {t.largest:.3g}), and "
        f"from PyTorch's own `scaled_dot_product_attention` **{t.gap_library:.2g}**: float32 "
        "sums taken in another order. The same attention."
        + view.facts.first_layer_window(n)
    )
    st.markdown("The loop for your last token, query head 0, block by block:")
    small_table(t.steps, most=7)
    st.caption("Once a block has passed, it is never read again: m and s are all the past "
               "that is kept.")
    st.subheader("The memory it never allocates")
    full = heads * n * n * 4
    tiles = heads * n * min(t.block, n) * 4
    cap = loaded.max_tokens
    st.markdown(
        f"The plain way holds every score of a layer at once: {heads} heads × {n:,} × {n:,} "
        f"float32 numbers, **{size(full)}** for your text, "
        f"**{size(heads * cap * cap * 4)}** at this app's cap of {cap:,} tokens. By "
        f"blocks of {t.block}, at most {heads} × {n:,} × {min(t.block, n)} scores exist at a "
        f"time, **{size(tiles)}**, plus m and s: two numbers per query and head."
    )
    machine = view.machine
    st.markdown(
        "Why GPUs need it more than this CPU does: a GPU's arithmetic is so fast that reading "
        "its main memory (HBM) is the bottleneck, and its fast on-chip memory is small (on an "
        "A100, 192 KB for each of its 108 streaming multiprocessors, says the FlashAttention "
        "paper). FlashAttention keeps each block there and never writes the table to HBM. A "
        "CPU has megabytes of cache ("
        + (", ".join(machine.caches) if machine.caches else "none listed here")
        + " on this machine) and far less arithmetic to feed, so the plain table hurts less."
        + (f" PyTorch blocks it anyway: on this machine its `scaled_dot_product_attention`, "
           f"which the model calls, picks its `{algorithm}` algorithm (asked with "
           "`torch._fused_sdp_choice`)." if (algorithm := t.algorithm) else "")
    )
    return (f"Attention by blocks of {t.block}, with a running max and sum per query, equals "
            f"softmax attention (largest difference {t.gap_plain:.2g}) without the "
            "positions × positions table of scores.")
