"""Attention: each position takes a weighted mix of what earlier positions carry.

The steps, in the order one layer runs them: project x into q, k, v per head; RMSNorm
each head's q and k (QK-norm); turn q and k by their positions' angles (RoPE); let each
query head read its group's key/value head (GQA); score q·kᵀ/√head_dim; mask the
future; softmax; mix the values; merge the heads; project back (o_proj).
"""

import math

import pandas as pd
import streamlit as st
import torch

from chapter2.rmsnorm import norm
from token_by_token.precision import name
from token_by_token.sections import lesson, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted, markdown_literal, show

TITLE = "Attention — each position reads the earlier ones"
READS = IDS | {"position", "layer", "head"}


def split_heads(t, head_dim):
    """[positions, heads * head_dim] -> [heads, positions, head_dim]."""
    return t.view(t.shape[0], -1, head_dim).transpose(0, 1)


def project(layer, x):
    """Three views of every position: a query, a key and a value.

    q asks "what am I looking for?", k answers "what do I hold?", v is
    what gets passed on. Each is cut into heads of head_dim numbers:
    every head attends on its own. x is [positions, hidden].
    """
    attn = layer.self_attn
    q = split_heads(attn.q_proj(x), attn.head_dim)  # [query heads, ...]
    k = split_heads(attn.k_proj(x), attn.head_dim)  # [kv heads, ...]
    v = split_heads(attn.v_proj(x), attn.head_dim)  # [kv heads, ...]
    return q, k, v


def qk_norm(layer, q, k):
    """RMSNorm on each head's query and key (QK-norm), where the model has it.

    Every head's head_dim numbers get root-mean-square 1, then learned
    gains: a score's size is set by those gains, not by how large x
    grew. Qwen3 has it; Llama, Mistral and Qwen2 don't: q and k pass.
    """
    attn = layer.self_attn
    if not hasattr(attn, "q_norm"):
        return q, k  # this model has no QK-norm: the step is skipped
    return norm(attn.q_norm, q), norm(attn.k_norm, k)


def rope_theta(config) -> float:
    """RoPE's base: the larger, the slower the slowest pairs turn.

    transformers 5 keeps it in config.rope_parameters; older configs
    have config.rope_theta; 10,000 is the original paper's value.
    """
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_theta", getattr(config, "rope_theta", 10_000.0))


def rope_speeds(config, head_dim):
    """Radians per position by which each pair of q's and k's numbers turns.

    Pair i turns at 1 / theta^(2i / head_dim): the first pairs spin
    fast, the last barely move. Llama 3 rescales the slowest pairs for
    long contexts (rope_type llama3): llama3_speeds.
    """
    pairs = torch.arange(0, head_dim, 2).float() / head_dim
    speeds = 1.0 / rope_theta(config) ** pairs
    params = getattr(config, "rope_parameters", None) or {}
    if params.get("rope_type") == "llama3":
        speeds = llama3_speeds(speeds, params)
    return speeds


def llama3_speeds(speeds, params):
    """Llama 3's long contexts: the slow pairs turn `factor` times slower.

    A pair takes 2π / speed positions to turn once (its wavelength).
    Longer than the training context / low_freq_factor: divided by
    factor; shorter than context / high_freq_factor: kept; between:
    a smooth mix of the two, so that far positions stay apart.
    """
    context = params["original_max_position_embeddings"]
    factor = params["factor"]
    low, high = params["low_freq_factor"], params["high_freq_factor"]
    wavelengths = 2 * math.pi / speeds
    mix = (context / wavelengths - low) / (high - low)  # 0 slow .. 1 fast
    mixed = (1 - mix) * speeds / factor + mix * speeds
    slow = wavelengths > context / low
    fast = wavelengths < context / high
    kept = torch.where(fast, speeds, mixed)
    return torch.where(slow, speeds / factor, kept)


def rope_angles(positions, speeds):
    """cos and sin of the angle by which each position turns each pair.

    Pair i turns by position × speeds[i] radians; it is made of
    coordinates i and i + head_dim/2. Both [positions, head_dim].
    """
    angles = torch.as_tensor(positions).float()[:, None] * speeds
    angles = torch.cat([angles, angles], dim=-1)  # both halves of a pair
    return angles.cos(), angles.sin()


def rotate_half(x):
    """[a, b] -> [-b, a]: each pair (a_i, b_i) turned by 90 degrees."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def rotate(x, cos, sin):
    """Turn each pair of q's or k's numbers by its position's angle (RoPE).

    After turning, the product q·k depends on how far apart two
    positions are, not where they are: that is how attention sees
    word order.
    """
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def kv_head_of(query_head, config):
    """The key/value head that a query head reads (grouped-query attention).

    Query heads come in groups of num_attention_heads //
    num_key_value_heads; a group shares one key and one value head.
    """
    group = config.num_attention_heads // config.num_key_value_heads
    return query_head // group


def share_kv(t, query_heads):
    """Repeat each key/value head for every query head of its group.

    Fewer k and v heads than q heads (GQA): a smaller KV cache. After
    this step, head h of q meets head kv_head_of(h) of k and v.
    """
    return t.repeat_interleave(query_heads // t.shape[0], dim=0)


def scores(q, k):
    """How well each query matches each key: q·kᵀ / √head_dim.

    Row i, column j: how much position i wants what position j holds.
    Dividing by √head_dim keeps the scores in a range softmax likes.
    """
    return q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5


def causal_mask(scores, window=None):
    """No peeking ahead: scores above the diagonal become -inf.

    Position i may read positions 0..i only; softmax turns -inf into
    exactly 0. With a sliding window, only the last `window` of them
    (i itself included). The queries are the last rows of the
    positions: all of them usually, fewer when only the latest ones.
    """
    queries, n = scores.shape[-2:]
    i = torch.arange(n - queries, n)[:, None]  # each query's position
    j = torch.arange(n)[None, :]  # each key's position
    hidden = j > i if window is None else (j > i) | (j <= i - window)
    return scores.masked_fill(hidden, float("-inf"))


def sliding_window(layer):
    """How many positions a layer's query may read, itself included.

    None: all the earlier ones. A sliding-window layer reads only the
    last `sliding_window` (Mistral: every layer; Qwen2 and Qwen3: the
    layers their config says), and its KV cache keeps no more.
    """
    attn = layer.self_attn
    if hasattr(attn, "sliding_window"):  # Qwen2, Qwen3: per layer
        return attn.sliding_window
    return getattr(attn.config, "sliding_window", None)


def softmax(scores):
    """Each row of scores -> weights that are >= 0 and sum to 1.

    Computed in float32, as the library does, even for a bfloat16
    model.
    """
    return torch.softmax(scores, dim=-1, dtype=torch.float32)


def attend(weights, v):
    """Each position's output: the values mixed by its weights.

    [heads, positions, positions] @ [heads, positions, head_dim].
    """
    return weights.to(v.dtype) @ v


def merge_heads(out):
    """[heads, positions, head_dim] -> [positions, heads * head_dim]."""
    return out.transpose(0, 1).reshape(out.shape[1], -1)


def qkv(layer, x, cos, sin):
    """q, k, v of one layer, ready to meet: normed, turned, shared.

    x is the layer's normalised input, [positions, hidden]; all three
    come out [query heads, positions, head_dim].
    """
    q, k, v = project(layer, x)
    q, k = qk_norm(layer, q, k)
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    k, v = share_kv(k, len(q)), share_kv(v, len(q))
    return q, k, v


def attention(layer, x, cos, sin):
    """One layer's attention, by hand: [positions, hidden] in and out.

    Every position mixes the values of the positions it may see, one
    mix per head; o_proj turns the heads' results back into hidden.
    """
    q, k, v = qkv(layer, x, cos, sin)
    weights = softmax(causal_mask(scores(q, k), sliding_window(layer)))
    out = attend(weights, v)  # [heads, positions, head_dim]
    return layer.self_attn.o_proj(merge_heads(out))


def angles(model, n):
    """cos and sin for positions 0..n-1, with the model's head_dim and RoPE."""
    head_dim = model.model.layers[0].self_attn.head_dim
    speeds = rope_speeds(model.config, head_dim)
    return rope_angles(torch.arange(n), speeds)


def attention_weights(model, ids, layer):
    """Who looks at whom in one layer: [query heads, positions, positions].

    Row i of head h: how position i spreads its attention over
    positions 0..i (zero above the diagonal; each row sums to 1). The
    model's fast attention never writes these down, so they are
    recomputed from what that layer reads in the model's own forward.
    """
    block = model.model.layers[layer]
    layer %= len(model.model.layers)  # -1: the last layer
    with torch.inference_mode():
        out = model(torch.tensor([ids]), output_hidden_states=True)
        x = out.hidden_states[layer][0]  # what the layer reads
        x = norm(block.input_layernorm, x)
        q, k, _ = qkv(block, x, *angles(model, len(ids)))
        return softmax(causal_mask(scores(q, k), sliding_window(block)))


LESSONS = [split_heads, project, qk_norm, rope_theta, rope_speeds, llama3_speeds,
           rope_angles, rotate_half, rotate, kv_head_of, share_kv, scores, causal_mask,
           sliding_window, softmax, attend, merge_heads, qkv, attention, angles,
           attention_weights]  # the lesson functions this section shows


def render(loaded, view) -> str:
    tokenizer, f, opened, config = loaded.tokenizer, view.facts, view.opened, loaded.model.config
    layer, head, position = opened.layer, view.head, view.position
    st.markdown(
        "Attention is the only step where positions exchange information. Each position "
        "makes a **query** (what am I looking for?), a **key** (what do I hold?) and a "
        "**value** (what do I pass on?), in several **heads** that work side by side. A "
        "position's output is a mix of the values of the positions it may see, weighted by "
        "how well its query matches their keys: softmax(QKᵀ/√d)V. Layer "
        f"{layer} of {f.layers}, step by step:"
    )
    st.subheader("Projections: q, k, v")
    q_width, kv_width = f.heads * f.head_dim, f.kv_heads * f.head_dim
    st.markdown(
        f"`q_proj` maps each position's {f.hidden:,} numbers to **{f.heads} query heads × "
        f"{f.head_dim} = {q_width:,}**; `k_proj` and `v_proj` to **{f.kv_heads} key/value "
        f"heads × {f.head_dim} = {kv_width:,}**."
        + (f" Heads × head_dim is not the hidden size ({f.hidden:,}): the two are chosen "
           "independently, and `o_proj` maps the heads back." if q_width != f.hidden else "")
    )
    attn = loaded.model.model.layers[layer].self_attn
    if attn.q_proj.bias is not None:
        st.markdown(
            f"In this model **q, k and v carry biases**: each projection adds a learned "
            f"vector after the product (`q_proj.bias`, {attn.q_proj.bias.numel():,} numbers; "
            f"`k_proj.bias` and `v_proj.bias`, {attn.k_proj.bias.numel():,} each). "
            "`nn.Linear` adds them itself: the lesson's calls are the same.")
    lesson(view.trace(project), view.trace(split_heads))
    st.subheader("QK-norm")
    lesson(view.trace(qk_norm))
    if hasattr(attn, "q_norm"):
        render_qk_bound(attn, f, layer)
    else:
        st.markdown(
            "**This model has no QK-norm: the step is skipped**, and q and k go to RoPE as "
            "the projections made them (its attention has no `q_norm`, `k_norm`). Nothing "
            "then bounds a score but the sizes of x and of the projections' weights; Qwen3 "
            "added the norm to keep training stable.")
    st.subheader("RoPE: position as an angle")
    lesson(view.trace(rope_speeds), view.trace(rope_angles), view.trace(rotate),
           view.trace(rotate_half))
    render_rope(f, position, loaded.model.config)
    st.subheader("Grouped-query attention")
    group = f.heads // f.kv_heads
    st.markdown(
        f"{counted(f.heads, 'query head')} share {counted(f.kv_heads, 'key/value head')}, "
        f"in groups of {group}: "
        + "; ".join(f"query heads {h}–{h + group - 1} read KV head {kv_head_of(h, config)}"
                    if group > 1 else f"query head {h} reads KV head {h}"
                    for h in range(0, f.heads, group)[:4])
        + ("; …" if f.kv_heads > 4 else "") + ". "
        f"The KV cache keeps only the key/value heads: **{f.kv_bytes_per_token:,} bytes per "
        f"token** ({f.layers} layers × 2 × {f.kv_heads} heads × {f.head_dim} numbers × "
        f"{f.bytes_per_number} bytes), {group}× less than with one key/value head per query "
        "head."
    )
    lesson(view.trace(share_kv), view.trace(kv_head_of))
    st.subheader("Scores, the causal mask, softmax")
    lesson(view.trace(scores), view.trace(causal_mask), view.trace(sliding_window),
           view.trace(softmax))
    window = sliding_window(loaded.model.model.layers[layer])
    if window is not None:
        st.markdown(
            f"Layer {layer} attends through a **sliding window of {window:,} positions**: the "
            f"causal mask also hides every key more than {window - 1:,} positions back, so a "
            f"query reads at most {window:,} positions, itself included, and the KV cache "
            f"keeps no more than the last {window - 1:,} (plus the new one)."
            + (f" Your text has {len(view.ids):,} positions: the window already cuts."
               if len(view.ids) > window else
               f" Your text has {len(view.ids):,} positions: within the window, nothing is "
               "cut yet (type more to see it)."))
    render_weights(tokenizer, view, head, position)
    st.subheader("Mix the values, merge the heads, project back")
    lesson(view.trace(attend), view.trace(merge_heads))
    st.markdown("The same steps as one function, the one the whole model below calls:")
    lesson(qkv, attention)
    st.markdown("Each step above against the library's own modules on the same input:")
    checked = [c for c in ["q_proj", "k_proj", "v_proj", "QK-norm (q)", "QK-norm (k)",
                           "RoPE (q)", "RoPE (k)", "attention weights",
                           "attention output (o_proj)"] if c in opened.checks]
    small_table(view.checks_table(checked))
    rows = opened.checks["attention weights"][0][1]
    st.caption(f"The attention weights are compared on the last {counted(rows, 'query row')}, "
               "in float32 on both sides, from the layer's own q and k: the model's fused "
               "attention takes its scores in float32 too (the library's eager path, and the "
               "lesson's values above, round them to the model's dtype first). Section 6 "
               "computes its rows with the same function. " + _fused_note(f.attention, f.dtype))
    st.caption(view.rounding(checked))
    return ("Attention: project to q, k, v per head; normalise q and k; turn them by the "
            "position's angle; share each k/v head within its group; softmax(qkᵀ/√d) with "
            "the future masked; mix the values; o_proj.")


def _fused_note(kind: str, dtype) -> str:
    """Why the attention output may differ: the lesson rounds as the library's eager
    attention does; the model may run a fused kernel (`kind`: Facts.attention) instead."""
    if kind == "eager":
        return "The model runs the library's eager attention, the one the lesson reproduces."
    return (f"The output after `o_proj` compares the lesson, which rounds where the library's "
            f"eager attention does, with the {kind} attention the model runs, a fused kernel "
            "that adds in another order"
            + (" and keeps the scores and weights in float32 where eager rounds them to "
               f"{name(dtype)}." if dtype != torch.float32 else "."))


def render_qk_bound(attn, f, layer: int) -> None:
    """What QK-norm bounds, from this layer's learned gains: |q·k| / √d ≤ g_q · g_k · √d (a
    vector of rms 1 has length √d; each gain stretches one coordinate; RoPE turns, it doesn't
    stretch)."""
    g_q = float(attn.q_norm.weight.float().abs().max())
    g_k = float(attn.k_norm.weight.float().abs().max())
    st.markdown(
        f"QK-norm brings each head's {f.head_dim} query numbers and {f.head_dim} key numbers "
        "to root-mean-square 1, and then its learned gains (`q_norm.weight`, `k_norm.weight`) "
        f"stretch each coordinate. In layer {layer} the largest gains are **{g_q:.3g}** (q) "
        f"and **{g_k:.3g}** (k), so no score can pass about {g_q:.3g} × {g_k:.3g} × "
        f"√{f.head_dim} = **{g_q * g_k * f.head_dim ** 0.5:,.3g}**, however large `x` grew. "
        "The gains are learned, with no limit, and within that bound one score can still "
        "dominate its row (section 6 shows where each head's weight goes). Qwen3 adopted "
        "QK-norm to keep training stable."
    )


def render_rope(f, position: int, config) -> None:
    pairs = sorted({0, 1, f.head_dim // 4, f.head_dim // 2 - 1})
    all_speeds = rope_speeds(config, f.head_dim)
    speeds = [float(all_speeds[i]) for i in pairs]
    st.markdown(
        f"Pair i of each head's {f.head_dim} numbers turns by position × θ^(−2i/"
        f"{f.head_dim}) radians, with this model's θ = `rope_theta` = {f.theta:,.0f}. At "
        f"position {position}:"
    )
    params = getattr(config, "rope_parameters", None) or {}
    if params.get("rope_type") == "llama3":
        plain = 1.0 / rope_theta(config) ** (torch.arange(0, f.head_dim, 2).float() / f.head_dim)
        slowed = int((all_speeds < plain).sum())
        st.markdown(
            f"**RoPE frequencies rescaled for long contexts: factor {params['factor']:g}** "
            f"(Llama 3's `rope_type` llama3). The model was first trained on "
            f"{params['original_max_position_embeddings']:,} positions; to read further, the "
            f"pairs that turn too slowly to have made a full turn in that span are turned "
            f"{params['factor']:g} × slower still, those in between by a smooth mix: here "
            f"{slowed} of {f.head_dim // 2} pairs turn slower than θ alone says "
            "(`llama3_speeds`).")
        lesson(llama3_speeds)
    small_table(pd.DataFrame({
        "pair": pairs, "radians per position": speeds,
        "angle at this position (radians)": [position * s for s in speeds],
        "full turns": [position * s / (2 * math.pi) for s in speeds],
    }))


def render_weights(tokenizer, view, head: int, position: int) -> None:
    row = view.pattern.row(head, position)
    top = row.topk(min(5, position + 1))
    later = float(row[position + 1:].sum())  # the causal mask: exactly 0
    st.markdown(
        f"Query head {head} (pick another in the sidebar), at position {position} "
        f"“{markdown_literal(show(tokenizer, view.ids[position]))}”: its weights over "
        f"positions 0 to {position} sum to {float(row.sum()):.3f}; the later positions get "
        f"{later:g} in all. It reads most from:"
    )
    small_table(pd.DataFrame({
        "position": top.indices.tolist(),
        "token": [show(tokenizer, view.ids[int(i)]) for i in top.indices],
        "weight": top.values.tolist()}))
