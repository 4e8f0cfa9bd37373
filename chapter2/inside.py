"""Chapter 2's view of the learner's ids: the model opened up, every value checked.

One forward of the library's model per change of ids (`look_inside`) keeps the residual
stream, what every layer reads: [layers + 1, positions, hidden]. While it runs, temporary
hooks open each layer as soon as the library has run it (`opening`): the lesson functions run
on the same input, each call traced for the page, and every intermediate is compared with what
the library's module returned; only the traces and the differences are kept. Then the same ids
go through the lesson functions by hand, layer after layer, and the logits are compared.
Picking a layer runs no forward: only that layer's attention weights are recomputed
(`pattern_of`; the library's fast attention never writes them down). The shared model is never
changed.
"""

import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pandas as pd
import torch
from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb, eager_attention_forward

from chapter1.pipeline import FORWARD
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
    split_heads,
)
from chapter2.embeddings import embed
from chapter2.kvcache import last_step_cached
from chapter2.lens import residual_stream
from chapter2.mlp import mlp
from chapter2.rebuild import decoder_layer, unembed
from chapter2.rmsnorm import norm, rms_norm
from token_by_token.capture import capture
from token_by_token.memo import Memo, Slot
from token_by_token.model import FORWARD_LOCK
from token_by_token.precision import Difference, difference, why
from token_by_token.trace import Trace, traced

CHUNK = 64  # positions scored at a time: never a [1,024 × vocabulary] table in memory
HALFWAY = 256  # positions whose stream halfway through each layer is kept (the logit lens)
ROWS = 64  # query rows a Pattern keeps: the most the page draws (the "Attention rows" slider)


@dataclass(frozen=True)
class Opened:
    """One layer opened with the lesson functions, on what that layer read in the library's
    forward: their traced calls and, for each intermediate, the library's value beside it."""
    layer: int
    traces: dict[str, Trace]     # lesson function name -> its traced call on this layer
    checks: dict[str, tuple]     # what -> (shape, max |lesson − library| (a Difference: it
                                 # knows the dtype and the scale it is judged at), max |library|)
    rms: torch.Tensor            # [positions]: each position's root-mean-square before the norm
    updates: torch.Tensor        # [2, positions]: the size (norm) of attention's and the
                                 # MLP's update to the stream at each position
    last: torch.Tensor           # [2, hidden]: both updates at the last position
    sink: float                  # the share of attention on position 0, averaged over the
                                 # heads and the positions after it (the "attention sink")
    halfway: torch.Tensor        # [≤ HALFWAY, hidden]: x after attention, before the MLP, at
                                 # the last positions (what the second RMSNorm reads)


@dataclass(frozen=True)
class Cached:
    """The KV cache that the library's forward of the learner's ids built (its shapes, not
    its tensors), and one cached step of the last token compared with that forward."""
    keys: list[tuple[int, ...]]    # per layer: the keys' shape [batch, kv heads, positions, d]
    values: list[tuple[int, ...]]  # per layer: the values' shape
    nbytes: int                    # keys and values of every layer
    borrowed: bool                 # True: Chapter 1's cache of the same ids was read
    step: Trace                    # last_step_cached(), traced
    gap: Difference                # max |cached step − whole forward| of the last logits
    same_top: bool                 # both give the same top-1 token
    seconds: float                 # the cached step's time


def cached_of(model, ids, output, chapter1) -> Cached:
    """What a KV cache of `ids` holds, then the last token once more through it (one forward
    of one token); `output` is the library's output for all of `ids`. The cache is Chapter
    1's when the learner's Chapter 1 forward has these ids (`chapter1`; its last position is
    computed again by the step, as a Generate step would), else the forward's own."""
    cache = output.cache if chapter1 is None else chapter1.cache
    keys = [tuple(layer.keys.shape) for layer in cache.layers]
    values = [tuple(layer.values.shape) for layer in cache.layers]
    nbytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    whole = output.logits[0, -1].float()  # the forward's own last row
    start = time.perf_counter()
    again, step = traced(last_step_cached, model, cache, list(ids))
    seconds = time.perf_counter() - start
    return Cached(keys, values, nbytes, chapter1 is not None, step,
                  difference(again, whole, output.logits.dtype),
                  int(again.argmax()) == int(whole.argmax()), seconds)


@dataclass(frozen=True)
class Inside:
    """What one forward of the learner's ids leaves for Chapter 2 (kept in their session)."""
    ids: tuple[int, ...]
    stream: torch.Tensor       # [layers + 1, positions, hidden]: what each layer reads (library)
    layers: list[Opened]       # every layer, opened while the library ran it
    embedded: Trace            # embed(model, ids), traced
    embed_gap: Difference      # max |embed() − the library's embedding output|
    layer_gaps: list[Difference]  # per layer: max |chained by hand − library| of the stream
    logit_gaps: torch.Tensor   # [positions]: max |by hand − library| of the logits
    logit_scales: torch.Tensor  # [positions]: max |library logit|, what a gap is judged at
    top_hand: torch.Tensor     # [positions]: the top-1 id by hand
    top_library: torch.Tensor  # [positions]: the top-1 id of the library's logits
    margins: torch.Tensor      # [positions]: the library's top-1 minus top-2 logit
    cached: Cached             # the forward's KV cache (shapes) and one cached step
    seconds: float

    @property
    def agree(self) -> int:
        return int((self.top_hand == self.top_library).sum())

    def logit_gap(self, position: int | None = None) -> Difference:
        """The largest logit difference at a position (None: the worst one), judged at that
        position's largest logit, in the model's dtype (that of the stream)."""
        if position is None:
            position = int(self.logit_gaps.argmax())
        return Difference(float(self.logit_gaps[position]), float(self.logit_scales[position]),
                          self.stream.dtype)

    @property
    def halfway_from(self) -> int:
        """The first position whose halfway stream is kept (Opened.halfway)."""
        return len(self.ids) - len(self.layers[0].halfway)


INSIDE: Slot[Inside] = Slot("chapter2.inside")


def look_inside(model, ids: list[int], memo: Memo) -> Inside:
    """The learner's forward for Chapter 2, reused while the ids are unchanged: the library's
    forward, each layer opened by the lesson functions as the library runs it (`opening`),
    then the same ids by hand through every layer (`decoder_layer`), compared."""
    key = tuple(ids)
    if (same := memo.get(INSIDE, key)) is not None:
        return same
    memo.put(INSIDE, None, None)
    start = time.perf_counter()
    # Chapter 1's forward of the same ids keeps a KV cache already: then this forward keeps
    # none (at 1,024 tokens on the Qwen3-0.6B shape, 117 MB less at the peak)
    chapter1 = memo.get(FORWARD, key)
    with FORWARD_LOCK, torch.inference_mode():
        with opening(model) as layers, capture({"model": model}) as whole:
            stream = residual_stream(model, ids, use_cache=chapter1 is None)  # the forward
        cached = cached_of(model, ids, whole.output("model"), chapter1)
        del whole  # the cache's tensors go now
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
    logit_gaps, logit_scales, top_hand, top_library, margins = (
        torch.cat(part) for part in zip(*scored, strict=True))
    return memo.put(INSIDE, key, Inside(
        key, stream, layers, embedded, embed_gap, layer_gaps, logit_gaps, logit_scales,
        top_hand, top_library, margins, cached, time.perf_counter() - start))


def parts(block) -> dict:
    """The library's modules of one decoder layer whose outputs the page checks."""
    attn = block.self_attn
    return {"input RMSNorm": block.input_layernorm, "q_proj": attn.q_proj,
            "k_proj": attn.k_proj, "v_proj": attn.v_proj, "q_norm": attn.q_norm,
            "k_norm": attn.k_norm, "self_attn": attn, "MLP": block.mlp}


@contextmanager
def opening(model):
    """While the library runs its forward inside this block, open each decoder layer right
    after the library ran it: temporary hooks record what its modules returned, and
    open_block() runs the lesson functions on the same input and compares. Yields the list
    of Opened layers (filled in as the forward goes); every hook is removed at the end."""
    opened, blocks = [], list(model.model.layers)
    named = {f"{i} {name}": module for i, block in enumerate(blocks)
             for name, module in parts(block).items()}
    with capture(named) as seen, ExitStack() as hooks:
        def after(i):
            def hook(block, args, kwargs, output):
                names = [f"{i} {name}" for name in parts(block)]
                theirs = {name: seen.output(f"{i} {name}") for name in parts(block)}
                for name in names:
                    seen.calls[name].clear()
                x = (args[0] if args else kwargs["hidden_states"])[0]
                opened.append(open_block(block, i, x, output[0], theirs,
                                         kwargs["position_embeddings"], model.config))
                for name in names:  # open_block's own calls were recorded too
                    seen.calls[name].clear()
            return hook
        for i, block in enumerate(blocks):
            hooks.callback(block.register_forward_hook(after(i), with_kwargs=True).remove)
        yield opened


def open_block(block, layer: int, x, output, theirs: dict, rope, config) -> Opened:
    """Layer `layer` step by step with the lesson functions on its input x, each call traced,
    each intermediate compared with what the library's module returned for the same x."""
    n, t = len(x), {}

    def run(function, *args):
        result, t[function.__name__] = traced(function, *args)
        return result

    ln = block.input_layernorm
    xn = run(rms_norm, x, ln.weight, ln.variance_epsilon)
    cos, sin = run(rope_angles, torch.arange(n), block.self_attn.head_dim, rope_theta(config))
    q0, k0, v0 = run(project, block, xn)
    q1, k1 = run(qk_norm, block, q0, k0)
    q2, k2 = run(rotate, q1, cos, sin), rotate(k1, cos, sin)
    k, v = run(share_kv, k2, len(q2)), share_kv(v0, len(q2))
    weights = run(softmax, run(causal_mask, run(scores, q2, k)))
    attended = block.self_attn.o_proj(merge_heads(run(attend, weights, v)))
    mid = x + attended
    after = run(mlp, block, norm(block.post_attention_layernorm, mid))

    def heads(t):  # [1, positions, heads × head_dim] -> [heads, positions, head_dim]
        return t.view(n, -1, block.self_attn.head_dim).transpose(0, 1)

    q_rot, k_rot = apply_rotary_pos_emb(heads(theirs["q_norm"])[None],
                                        heads(theirs["k_norm"])[None], *rope)
    pairs = {
        "input RMSNorm": (xn, theirs["input RMSNorm"][0]),
        "q_proj": (q0, heads(theirs["q_proj"])), "k_proj": (k0, heads(theirs["k_proj"])),
        "v_proj": (v0, heads(theirs["v_proj"])), "QK-norm (q)": (q1, heads(theirs["q_norm"])),
        "QK-norm (k)": (k1, heads(theirs["k_norm"])),
        "RoPE (q)": (q2, q_rot[0]), "RoPE (k)": (k2, k_rot[0]),
        "attention output (o_proj)": (attended, theirs["self_attn"][0][0]),
        "MLP": (after, theirs["MLP"][0]), "layer output": (mid + after, output),
    }
    checks = {what: (tuple(mine.shape), gap(mine, lib), largest(lib))
              for what, (mine, lib) in pairs.items()}
    checks["attention weights"] = check_window(block.self_attn, q2[:, -ROWS:], k2)
    updates = torch.stack([attended, after]).float()  # [2, positions, hidden]
    sink = float(weights[:, 1:, 0].mean()) if n > 1 else 1.0
    halfway = (x + theirs["self_attn"][0][0])[-HALFWAY:].clone()
    return Opened(layer, t, checks, x.float().pow(2).mean(-1).sqrt(),
                  torch.linalg.vector_norm(updates, dim=-1), updates[:, -1].clone(), sink,
                  halfway)


@dataclass(frozen=True)
class Pattern:
    """One layer's attention weights for a window of query rows, by the lesson functions.
    Never the whole [heads, positions, positions] table: at 1,024 positions that is 64 MB per
    layer, for rows the page doesn't draw."""
    layer: int
    rows: range            # the query positions kept: up to ROWS, ending at the picked one
    weights: torch.Tensor  # [query heads, len(rows), rows.stop] float32: keys 0..rows.stop−1

    def row(self, head: int, position: int) -> torch.Tensor:
        """One query position's weights over the positions it may read (and those it can't)."""
        return self.weights[head, position - self.rows.start]


PATTERN: Slot[Pattern] = Slot("chapter2.pattern")


def pattern_of(model, inside: Inside, layer: int, position: int, memo: Memo) -> Pattern:
    """The picked layer's attention weights for the ROWS query positions ending at `position`
    (kept per ids, layer and rows), by the lesson functions on what the layer read. The
    model's fast attention never writes them down. (They were checked against the library's
    eager attention on the last ROWS rows when the layer was opened: `check_window`.)

    The keys are those in Chapter 1's KV cache when its forward has these ids (the cache holds
    every layer's keys, normed and turned); else they are computed here."""
    rows = range(max(position + 1 - ROWS, 0), position + 1)
    key = (inside.ids, layer, rows)
    if (same := memo.get(PATTERN, key)) is not None:
        return same
    block, end = model.model.layers[layer], rows.stop
    attn, d = block.self_attn, block.self_attn.head_dim
    chapter1 = memo.get(FORWARD, inside.ids)
    start = 0 if chapter1 is None else rows.start  # the first position projected here
    with FORWARD_LOCK, torch.inference_mode():
        cos, sin = rope_angles(torch.arange(start, end), d, rope_theta(model.config))
        xn = norm(block.input_layernorm, inside.stream[layer, start:end])
        queries = slice(rows.start - start, None)  # the query rows among them
        q = rotate(norm(attn.q_norm, split_heads(linear32(attn.q_proj, xn[queries]), d)),
                   cos[queries], sin[queries])
        if chapter1 is not None:
            k = chapter1.cache.layers[layer].keys[0, :, :end]
        else:
            k = rotate(norm(attn.k_norm, split_heads(linear32(attn.k_proj, xn), d)), cos, sin)
        weights = window_weights(q, k)
    return memo.put(PATTERN, key, Pattern(layer, rows, weights))


def window_weights(q, k):
    """Attention weights of the last len(q[0]) query positions over every key, with the scores
    in float32 from the layer's own q and k, as its fused attention takes them: on the CPU it
    sums q·k in float32 and never rounds the scores to bfloat16."""
    q, k = q.float(), k.float()
    return softmax(causal_mask(scores(q, share_kv(k, len(q)))))


def check_window(attn, q, k) -> tuple:
    """window_weights() against the library's eager attention (`eager_attention_forward`) on
    the same q and k: the scores, the mask and the softmax are what this checks (q and k are
    checked step by step, Opened.checks)."""
    mine = window_weights(q, k)
    rows, n = mine.shape[-2:]
    q, k = q.float(), k.float()
    mask = torch.full((rows, n), float("-inf")).triu(n - rows + 1)
    # (the weights don't depend on the values: one number of k per position stands in for
    # v, so the values' mix, unused, costs nothing)
    _, theirs = eager_attention_forward(attn, q[None], k[None], k[None, ..., :1],
                                        mask[None, None], attn.scaling)
    return tuple(mine.shape), gap(mine, theirs[0]), largest(theirs[0])


def linear32(linear, x):
    """linear(x) computed in float32 and rounded back to x's dtype. For a bfloat16 model
    these are the numbers of its bfloat16 matmul, which sums in float32 and rounds once (the
    order of the sums differs: the last bit of about 1 value in 10,000, measured), in a
    quarter of the time on a CPU without bfloat16 arithmetic."""
    bias = None if linear.bias is None else linear.bias.float()
    return torch.nn.functional.linear(x.float(), linear.weight.float(), bias).to(x.dtype)


def compare_logits(model, hand, library):
    """Logits by hand (`unembed`) and by the library's own output layer, for some positions:
    per position the largest difference and the largest |library logit| (what it is judged
    at), both top-1 ids, and the library's top-2 margin."""
    mine, theirs = unembed(model, hand).float(), model.lm_head(library).float()
    top2 = theirs.topk(2, dim=-1).values
    return ((mine - theirs).abs().amax(-1), theirs.abs().amax(-1), mine.argmax(-1),
            theirs.argmax(-1), top2[:, 0] - top2[:, 1])


def gap(mine: torch.Tensor, theirs: torch.Tensor) -> Difference:
    """The largest absolute difference between two tensors of the same values, judged in the
    steps of the dtype the library computed `theirs` in."""
    return difference(mine, theirs, theirs.dtype)


def largest(t: torch.Tensor) -> float:
    """The largest absolute value: what a difference is to be compared with."""
    return float(t.float().abs().max())



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


@dataclass(frozen=True)
class View:
    """Everything Chapter 2 shows: what every section's render(loaded, view) reads."""
    ids: list[int]
    facts: Facts
    inside: Inside
    opened: Opened      # the picked layer
    pattern: Pattern | None  # the picked layer's attention weights (sections 3 and 6)
    head: int
    position: int
    window: int = 16    # query positions the attention heatmaps show (≤ ROWS)
    halfway: bool = False  # the logit lens also reads halfway through each layer

    def trace(self, function) -> Trace | object:
        """The traced call of a lesson function on this page, or the function itself."""
        if function.__name__ == "embed":
            return self.inside.embedded
        return self.opened.traces.get(function.__name__, function)

    def checks_table(self, names: list[str]) -> pd.DataFrame:
        """The lesson's values against the library's, as a table for the page: each largest
        difference also in the steps of its dtype at the largest |library| value."""
        checks, rows = self.opened.checks, []
        for name in names:
            shape, difference, size = checks[name]
            rows.append({"value": name, "shape": " × ".join(map(str, shape)),
                         "max |lesson − library|": float(difference), "max |library|": size,
                         "in steps of its dtype": difference.said()})
        return pd.DataFrame(rows)

    def rounding(self, names: list[str]) -> str:
        """What the page says under a checks table: nothing differs, or why it may."""
        worst = max((self.opened.checks[name][1] for name in names), key=lambda d: d.steps)
        if worst == 0:
            return "Every value in this table equals the library's, bit for bit."
        return "Why any difference at all: " + why(worst.dtype, worst.scale)
