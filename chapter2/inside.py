"""Chapter 2's view of the learner's ids: the model opened up, every value checked.

One forward of the library's model per change of ids (`look_inside`) keeps the residual
stream, what every layer reads: [layers + 1, positions, hidden]. The same ids then go through
the lesson functions by hand, layer by layer, and only the differences are kept. Picking a
layer (`open_layer`) runs that layer's lesson functions on the stream the library computed,
each call traced for the page, and the library's own modules of that layer on the same input,
under temporary hooks, to check every intermediate: no model forward, and the shared model is
never changed.
"""

import time
from dataclasses import dataclass

import pandas as pd
import torch
from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb, eager_attention_forward

from chapter2.attention import (
    angles,
    attend,
    causal_mask,
    merge_heads,
    project,
    qk_norm,
    rope_angles,
    rope_theta,
    rotate,
    scores,
    share_kv,
    softmax,
)
from chapter2.embeddings import embed
from chapter2.lens import residual_stream
from chapter2.mlp import mlp
from chapter2.rebuild import decoder_layer, unembed
from chapter2.rmsnorm import norm, rms_norm
from token_by_token.capture import capture
from token_by_token.memo import Memo, Slot
from token_by_token.model import FORWARD_LOCK
from token_by_token.trace import Trace, traced

CHUNK = 64  # positions scored at a time: never a [1,024 × vocabulary] table in memory


@dataclass(frozen=True)
class Inside:
    """What one forward of the learner's ids leaves for Chapter 2 (kept in their session)."""
    ids: tuple[int, ...]
    stream: torch.Tensor       # [layers + 1, positions, hidden]: what each layer reads (library)
    embedded: Trace            # embed(model, ids), traced
    embed_gap: float           # max |embed() − the library's embedding output|
    layer_gaps: list[float]    # per layer: max |by hand − library| of the stream after it
    logit_gaps: torch.Tensor   # [positions]: max |by hand − library| of the logits
    top_hand: torch.Tensor     # [positions]: the top-1 id by hand
    top_library: torch.Tensor  # [positions]: the top-1 id of the library's logits
    margins: torch.Tensor      # [positions]: the library's top-1 minus top-2 logit
    seconds: float

    @property
    def agree(self) -> int:
        return int((self.top_hand == self.top_library).sum())


INSIDE: Slot[Inside] = Slot("chapter2.inside")


def look_inside(model, ids: list[int], memo: Memo) -> Inside:
    """The learner's forward for Chapter 2: reused while the ids are unchanged."""
    key = tuple(ids)
    if (same := memo.get(INSIDE, key)) is not None:
        return same
    memo.put(INSIDE, None, None)
    start = time.perf_counter()
    with FORWARD_LOCK, torch.inference_mode():
        stream = residual_stream(model, ids)  # the library's forward, once
        x, embedded = traced(embed, model, ids)
        embed_gap = gap(x, stream[0])
        cos, sin = angles(model, len(ids))
        layer_gaps = []
        for i, layer in enumerate(model.model.layers):  # the same ids, by hand
            x = decoder_layer(layer, x, cos, sin)
            layer_gaps.append(gap(x, stream[i + 1]))
        hand, library = norm(model.model.norm, x), model.model.norm(stream[-1])
        scored = [compare_logits(model, hand[c: c + CHUNK], library[c: c + CHUNK])
                  for c in range(0, len(ids), CHUNK)]
    logit_gaps, top_hand, top_library, margins = (torch.cat(part)
                                                  for part in zip(*scored, strict=True))
    return memo.put(INSIDE, key, Inside(
        key, stream, embedded, embed_gap, layer_gaps, logit_gaps, top_hand, top_library, margins,
        time.perf_counter() - start))


def compare_logits(model, hand, library):
    """Logits by hand (`unembed`) and by the library's own output layer, for some positions:
    per position the largest difference, both top-1 ids, and the library's top-2 margin."""
    mine, theirs = unembed(model, hand).float(), model.lm_head(library).float()
    top2 = theirs.topk(2, dim=-1).values
    return ((mine - theirs).abs().amax(-1), mine.argmax(-1), theirs.argmax(-1),
            top2[:, 0] - top2[:, 1])


def gap(mine: torch.Tensor, theirs: torch.Tensor) -> float:
    """The largest absolute difference between two tensors of the same values."""
    return float((mine.float() - theirs.float()).abs().max())


def largest(t: torch.Tensor) -> float:
    """The largest absolute value: what a difference is to be compared with."""
    return float(t.float().abs().max())


@dataclass(frozen=True)
class Opened:
    """One layer opened with the lesson functions, on what that layer read in the forward."""
    layer: int
    traces: dict[str, Trace]     # lesson function name -> its traced call on this layer
    checks: dict[str, tuple]     # what -> (shape, max |lesson − library|, max |library|)
    weights: torch.Tensor        # [query heads, positions, positions] float16
    rms: torch.Tensor            # [positions]: each position's root-mean-square before the norm
    cos: torch.Tensor            # [positions, head_dim]: RoPE's cosines
    sin: torch.Tensor


OPENED: Slot[Opened] = Slot("chapter2.opened")


def open_layer(model, inside: Inside, layer: int, memo: Memo) -> Opened:
    """Layer `layer` step by step with the lesson functions, each call traced, each result
    checked against the library's module on the same input (reused per ids and layer)."""
    key = (inside.ids, layer)
    if (same := memo.get(OPENED, key)) is not None:
        return same
    block, x = model.model.layers[layer], inside.stream[layer]
    n, t = len(inside.ids), {}

    def run(function, *args):
        result, t[function.__name__] = traced(function, *args)
        return result

    with torch.inference_mode():
        ln = block.input_layernorm
        xn = run(rms_norm, x, ln.weight, ln.variance_epsilon)
        cos, sin = run(rope_angles, torch.arange(n), block.self_attn.head_dim,
                       rope_theta(model.config))
        q0, k0, v0 = run(project, block, xn)
        q1, k1 = run(qk_norm, block, q0, k0)
        q2, k2 = run(rotate, q1, cos, sin), rotate(k1, cos, sin)
        k, v = run(share_kv, k2, len(q2)), share_kv(v0, len(q2))
        weights = run(softmax, run(causal_mask, run(scores, q2, k)))
        out = run(attend, weights, v)
        attended = block.self_attn.o_proj(merge_heads(out))
        mid = x + attended
        after = run(mlp, block, norm(block.post_attention_layernorm, mid))
        mine = {"input RMSNorm": xn, "q_proj": q0, "k_proj": k0, "v_proj": v0,
                "QK-norm (q)": q1, "QK-norm (k)": k1, "RoPE (q)": q2, "RoPE (k)": k2,
                "attention weights": weights, "attention output (o_proj)": attended,
                "MLP": after, "layer output": mid + after}
        checks = check_layer(model, block, x, mine)
        rms = x.float().pow(2).mean(-1).sqrt()
    return memo.put(OPENED, key, Opened(layer, t, checks, weights.to(torch.float16), rms,
                                        cos, sin))


def check_layer(model, block, x, mine: dict) -> dict[str, tuple]:
    """Run the library's own modules of `block` on `x` under temporary hooks, and compare
    each of the lesson's intermediates with the library's: what -> (shape, max |difference|,
    max |library's value|).
    RoPE and the attention weights, which are functions there, not modules, come from the
    library's own functions on the library's own q and k."""
    attn, n = block.self_attn, len(x)
    modules = {"input RMSNorm": block.input_layernorm, "q_proj": attn.q_proj,
               "k_proj": attn.k_proj, "v_proj": attn.v_proj, "q_norm": attn.q_norm,
               "k_norm": attn.k_norm, "self_attn": attn, "MLP": block.mlp}
    future = torch.full((n, n), float("-inf")).triu(1).to(x.dtype)[None, None]
    with FORWARD_LOCK, capture(modules) as seen, torch.inference_mode():
        cos, sin = model.model.rotary_emb(x[None], torch.arange(n)[None])
        output = block(x[None], attention_mask=future, position_embeddings=(cos, sin))

    def heads(name):  # [1, positions, heads × head_dim] -> [heads, positions, head_dim]
        return seen.output(name).view(n, -1, attn.head_dim).transpose(0, 1)

    q, k = heads("q_norm"), heads("k_norm")
    q_rot, k_rot = apply_rotary_pos_emb(q[None], k[None], cos, sin)
    _, weights = eager_attention_forward(attn, q_rot, k_rot, heads("v_proj")[None], future,
                                         attn.scaling)
    theirs = {
        "input RMSNorm": seen.output("input RMSNorm")[0], "q_proj": heads("q_proj"),
        "k_proj": heads("k_proj"), "v_proj": heads("v_proj"), "QK-norm (q)": q,
        "QK-norm (k)": k, "RoPE (q)": q_rot[0], "RoPE (k)": k_rot[0],
        "attention weights": weights[0],
        "attention output (o_proj)": seen.output("self_attn")[0][0],
        "MLP": seen.output("MLP")[0], "layer output": output[0],
    }
    return {what: (tuple(mine[what].shape), gap(mine[what], value), largest(value))
            for what, value in theirs.items()}


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

    @classmethod
    def of(cls, model) -> "Facts":
        table, attn = model.model.embed_tokens.weight, model.model.layers[0].self_attn
        return cls(len(model.model.layers), table.shape[1], table.shape[0],
                   attn.q_proj.out_features // attn.head_dim,
                   attn.k_proj.out_features // attn.head_dim, attn.head_dim,
                   model.model.layers[0].mlp.gate_proj.out_features, rope_theta(model.config),
                   model.model.norm.variance_epsilon, table.element_size())

    @property
    def kv_bytes_per_token(self) -> int:
        """Keys and values of one position in every layer of the KV cache."""
        return self.layers * 2 * self.kv_heads * self.head_dim * self.bytes_per_number


@dataclass(frozen=True)
class View:
    """Everything Chapter 2 shows: what every section's render(loaded, view) reads."""
    ids: list[int]
    facts: Facts
    inside: Inside
    opened: Opened
    head: int
    position: int
    window: int = 16  # query positions the attention heatmaps show

    def trace(self, function) -> Trace | object:
        """The traced call of a lesson function on this page, or the function itself."""
        if function.__name__ == "embed":
            return self.inside.embedded
        return self.opened.traces.get(function.__name__, function)


def checks_table(opened: Opened, names: list[str]) -> pd.DataFrame:
    """The lesson's values against the library's, as a table for the page."""
    rows = []
    for name in names:
        shape, difference, size = opened.checks[name]
        rows.append({"value": name, "shape": " × ".join(map(str, shape)),
                     "max |lesson − library|": difference, "max |library|": size})
    return pd.DataFrame(rows)
