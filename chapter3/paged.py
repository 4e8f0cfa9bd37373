"""Section 6 — A paged KV cache: keys and values in fixed-size blocks, found through a table.

As vLLM's PagedAttention keeps them (Kwon et al., 2023): a pool of blocks shared by every
sequence, a block table per sequence saying which blocks hold its positions, in order.
Attention reads the keys and values through the table and gets what the contiguous cache gives.
"""

from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch
import torch.nn.functional as F

from chapter3.flash import qkv_of
from chapter3.measure import size
from chapter3.roofline import kv_bytes_per_position
from token_by_token import charts, controls
from token_by_token.locks import FORWARD_LOCK
from token_by_token.memo import Slot
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted, show
from token_by_token.trace import traced

TITLE = "A paged KV cache — memory in blocks"
READS = IDS | {"paged_block", "paged_learners", "paged_length", "paged_prefix"}
WIDGETS = {"paged_block", "paged_learners", "paged_length", "paged_prefix"}

BLOCK_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
MOST_LEARNERS = 200  # the Learners slider's end


def blocks_needed(length, block_size):
    """Blocks a sequence of `length` positions takes. Only its last
    block can be part empty: at most block_size − 1 slots wasted."""
    return -(-length // block_size)  # the ceiling of length / block_size


def write_paged(pool, table, keys):
    """Store a sequence's keys (or values), [kv_heads, positions,
    head_dim], in the pool: position i goes to block table[i // size],
    slot i % size. pool: [blocks, kv_heads, size, head_dim]."""
    size = pool.shape[2]
    positions = torch.arange(keys.shape[1])
    blocks = torch.tensor(table)[positions // size]
    pool[blocks, :, positions % size] = keys.transpose(0, 1)


def read_paged(pool, table, length):
    """A sequence's keys (or values) read back through its block table:
    its blocks in the table's order, the unused end of the last cut
    off. [kv_heads, length, head_dim], as a contiguous cache holds them."""
    blocks = pool[torch.tensor(table)]  # [its blocks, kv_heads, size, head_dim]
    return blocks.transpose(0, 1).flatten(1, 2)[:, :length]


def paged_attention(q, k_pool, v_pool, table, length):
    """A new token's attention, its keys and values read through the
    block table. q: [heads, 1, head_dim]; each key/value head serves
    a group of query heads. Nothing to mask: the new token may read
    every position before it. float32."""
    k = read_paged(k_pool, table, length).float()
    v = read_paged(v_pool, table, length).float()
    group = len(q) // len(k)  # query heads per key/value head
    k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
    scores = q.float() @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    return torch.softmax(scores, dim=-1) @ v


def contiguous_bytes(sequences, cap, per_position):
    """Memory when each sequence reserves room for the longest it may
    become: one plain tensor per sequence must (it can't grow in place)."""
    return sequences * cap * per_position


def paged_bytes(lengths, block_size, per_position, shared=0):
    """Memory in blocks: each sequence holds the blocks it fills. The
    whole blocks of a common prefix (`shared` positions: a system
    prompt) are stored once; every sequence's table points to them."""
    common = shared // block_size
    own = sum(blocks_needed(n, block_size) - common for n in lengths)
    return (common + own) * block_size * per_position


LESSONS = [blocks_needed, write_paged, read_paged, paged_attention, contiguous_bytes,
           paged_bytes]


# --- what the page computes (not lessons) ------------------------------------------------

@dataclass(frozen=True)
class Pages:
    """The learner's cache (first layer) in blocks, and attention read through them."""
    block: int
    table: list[int]          # the learner's block table
    pool_blocks: int          # blocks in the pool
    gap: float                # max |paged − contiguous|
    gap_library: float        # max |paged − torch's scaled_dot_product_attention|
    largest: float
    traces: dict


@dataclass(frozen=True)
class Paged:
    pages: Pages
    learners: int
    length: int
    prefix: int
    memory: dict              # allocation -> bytes
    traces: dict

    @property
    def block(self) -> int:
        return self.pages.block


PAGES: Slot[Pages] = Slot("chapter3.paged")


def free_list(pool_blocks: int) -> list[int]:
    """The pool's free blocks in the order it hands them out: shuffled, as they are once
    other sequences have come and gone (a fixed seed: the same order on every run)."""
    return torch.randperm(pool_blocks, generator=torch.Generator().manual_seed(0)).tolist()


def pages_of(model, ids: tuple[int, ...], cache, block: int, memo) -> Pages:
    """The first layer's keys and values of the learner's KV cache written into a pool of
    blocks, and the last token's attention read through the table (kept per ids and block
    size: the class-size sliders run no module of the model)."""
    key = (ids, block)
    if (found := memo.get(PAGES, key)) is not None:
        return found
    n, traces = len(ids), {}
    layer = cache.layers[0]  # the library's cache, layer 0
    keys, values = layer.keys[0], layer.values[0]  # [kv_heads, positions, head_dim]
    needed = blocks_needed(n, block)
    pool_blocks = 2 * needed + 2
    table = free_list(pool_blocks)[:needed]
    q = qkv_of(model, ids, memo)[0][:, -1:]  # the last token's query, layer 0
    k_pool = keys.new_zeros(pool_blocks, keys.shape[0], block, keys.shape[2])
    v_pool = torch.zeros_like(k_pool)
    with FORWARD_LOCK, torch.inference_mode():
        _, traces["write_paged"] = traced(write_paged, k_pool, table, keys)
        write_paged(v_pool, table, values)
        out, traces["paged_attention"] = traced(paged_attention, q, k_pool, v_pool, table, n)
        _, traces["read_paged"] = traced(read_paged, k_pool, table, n)
        group = len(q) // len(keys)
        whole_k, whole_v = (t.float().repeat_interleave(group, 0) for t in (keys, values))
        weights = torch.softmax(q.float() @ whole_k.transpose(-2, -1) * q.shape[-1] ** -0.5,
                                dim=-1)
        contiguous = weights @ whole_v
        library = F.scaled_dot_product_attention(q.float(), whole_k, whole_v)
    return memo.put(PAGES, key, Pages(
        block, table, pool_blocks, float((out - contiguous).abs().max()),
        float((out - library).abs().max()), float(contiguous.abs().max()), traces))


def paged_of(model, pages: Pages, learners: int, length: int, prefix: int,
             cap: int) -> Paged:
    """The memory sums for a class of `learners` with `length` tokens each, `prefix` of them
    shared, against reserving the cap for each."""
    per = kv_bytes_per_position(model)
    lengths = [length] * learners
    contiguous, t_contiguous = traced(contiguous_bytes, learners, cap, per)
    shared, t_paged = traced(paged_bytes, lengths, pages.block, per, prefix)
    memory = {f"contiguous, room for {cap:,} each": contiguous,
              f"blocks of {pages.block}": paged_bytes(lengths, pages.block, per),
              f"blocks of {pages.block}, the first {prefix:,} positions shared": shared}
    traces = {**pages.traces, "contiguous_bytes": t_contiguous, "paged_bytes": t_paged}
    return Paged(pages, learners, length, prefix, memory, traces)


def render(loaded, view) -> str:
    part: Paged = view.paged
    pages = part.pages
    tokenizer, ids, n, f = loaded.tokenizer, view.ids, len(view.ids), view.facts
    per = kv_bytes_per_position(loaded.model)
    cap = loaded.max_tokens
    st.markdown(
        "A KV cache grows by one position per token, and nobody knows in advance how long a "
        "sequence will get. Keep it as one tensor per sequence and it must either reserve room "
        f"for the longest it may become (this app's cap: {cap:,} tokens) or be copied into a "
        "larger tensor as it grows (the library's `DynamicCache` does that: each step "
        "concatenates the new keys to the old ones, a new tensor). Operating systems solved "
        "the same problem for memory long ago, with pages: cut memory into fixed-size blocks, "
        "and give each program a table of which blocks are its own, in order. A **paged KV "
        "cache** does the same for keys and values: a **pool** of blocks of B positions, and "
        "per sequence a **block table**. That is vLLM's **PagedAttention** (Kwon et al., 2023)."
    )
    controls.paged_block_slider(BLOCK_SIZES)
    lesson(blocks_needed, view.trace(write_paged), view.trace(read_paged))
    rows = [{"table entry": i, "pool block": b,
             "positions": f"{i * part.block}–{min((i + 1) * part.block, n) - 1}",
             "tokens": " ".join(show(tokenizer, t)
                                for t in ids[i * part.block:(i + 1) * part.block])}
            for i, b in enumerate(part.pages.table)]
    st.markdown(
        f"Your {counted(n, 'token')} in blocks of {part.block}: "
        f"{counted(len(part.pages.table), 'block')}, taken from a pool of {part.pages.pool_blocks} "
        "whose free blocks come in no particular order (other sequences took and returned "
        "blocks before yours). The keys and values are your KV cache's, the first layer's, as "
        "the library keeps them:"
    )
    small_table(pd.DataFrame(rows), most=6)
    lesson(view.trace(paged_attention))
    st.markdown(
        f"Your last token's query (first layer, {f.heads} heads) against the keys and values "
        "read through the table: the largest difference from the same attention on the "
        f"contiguous cache is **{pages.gap:.2g}** (values up to {pages.largest:.3g}): the "
        "same numbers, from other addresses. From PyTorch's `scaled_dot_product_attention` "
        f"on the contiguous cache: {pages.gap_library:.2g}. This lesson gathers the blocks "
        "into a copy first; vLLM's kernel reads each block where it lies, through the table."
        + f.first_layer_window(n)
    )
    st.subheader("A class of learners: memory")
    controls.class_sliders(MOST_LEARNERS, cap)
    lesson(view.trace(contiguous_bytes), view.trace(paged_bytes))
    unit, scale = (("GB", 1e9) if max(part.memory.values()) >= 1e9 else ("MB", 1e6))
    bars = pd.DataFrame({"allocation": list(part.memory),
                         unit: [b / scale for b in part.memory.values()],
                         "size": [size(b) for b in part.memory.values()]})
    st.vega_lite_chart(bars, charts.fast_spec(charts.memory_bars, bars), width="stretch")
    small_table(bars)
    contiguous, paged, shared = part.memory.values()
    waste = part.learners * (blocks_needed(part.length, part.block) * part.block - part.length)
    st.markdown(
        f"{counted(part.learners, 'learner')} with {counted(part.length, 'token')} each, at "
        f"{per:,} bytes per position: reserving the cap takes **{size(contiguous)}**; "
        f"blocks of {part.block} take **{size(paged)}** ({paged / contiguous:.0%}), "
        f"of which {size(waste * per)} are the unfilled ends of last blocks"
        + (f"; sharing the whole blocks of the first {part.prefix:,} positions, "
           f"**{size(shared)}**." if part.prefix >= part.block else
           f". A shared prefix saves whole blocks only: set it to at least {part.block}.")
        + " Smaller blocks waste less at the end but make longer tables and more, smaller "
        "reads; vLLM's default block size is 16 (its `CacheConfig.DEFAULT_BLOCK_SIZE`)."
    )
    return (f"A paged KV cache keeps positions in blocks of {part.block}, found through a "
            f"block table: the same attention (difference {part.pages.gap:.2g}), and for "
            f"{part.learners} learners {paged / contiguous:.0%} of the memory of reserving the "
            "cap.")
