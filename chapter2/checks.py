"""Chapter 2's checks against the library: every value a lesson function computes, compared
with what the library's own module computed on the same input.

While the library runs its forward, temporary hooks open each layer as soon as the library has
run it (`opening`): the lesson functions run on that layer's input, each call traced for the
page, and every intermediate is compared with the module's output (`open_block`); only the
traces and the differences are kept (an `Opened` layer). Nothing about the shared model
changes.
"""

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from transformers.masking_utils import and_masks, causal_mask_function, sliding_window_overlay
from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb, eager_attention_forward

from chapter2.attention import (
    attend,
    causal_mask,
    merge_heads,
    project,
    qk_norm,
    rope_angles,
    rope_speeds,
    rotate,
    scores,
    share_kv,
    sliding_window,
    softmax,
)
from chapter2.lens import HALFWAY
from chapter2.mlp import mlp
from chapter2.patterns import ROWS, window_weights
from chapter2.rebuild import unembed
from chapter2.rmsnorm import norm, rms_norm
from token_by_token.capture import capture
from token_by_token.precision import Difference, difference
from token_by_token.trace import Trace, traced


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


def parts(block) -> dict:
    """The library's modules of one decoder layer whose outputs the page checks."""
    attn = block.self_attn
    found = {"input RMSNorm": block.input_layernorm, "q_proj": attn.q_proj,
             "k_proj": attn.k_proj, "v_proj": attn.v_proj, "self_attn": attn, "MLP": block.mlp}
    if hasattr(attn, "q_norm"):  # QK-norm (Qwen3)
        found.update(q_norm=attn.q_norm, k_norm=attn.k_norm)
    return found


@contextmanager
def opening(model, opened_one=lambda i: None):
    """While the library runs its forward inside this block, open each decoder layer right
    after the library ran it: temporary hooks record what its modules returned, and
    open_block() runs the lesson functions on the same input and compares. Yields the list
    of Opened layers (filled in as the forward goes; `opened_one(count)` after each); every
    hook is removed at the end."""
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
                opened_one(len(opened))
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
    speeds = run(rope_speeds, config, block.self_attn.head_dim)
    cos, sin = run(rope_angles, torch.arange(n), speeds)
    q0, k0, v0 = run(project, block, xn)
    q1, k1 = run(qk_norm, block, q0, k0)
    q2, k2 = run(rotate, q1, cos, sin), rotate(k1, cos, sin)
    k, v = run(share_kv, k2, len(q2)), share_kv(v0, len(q2))
    window = run(sliding_window, block)
    weights = run(softmax, run(causal_mask, run(scores, q2, k), window))
    attended = block.self_attn.o_proj(merge_heads(run(attend, weights, v)))
    mid = x + attended
    after = run(mlp, block, norm(block.post_attention_layernorm, mid))

    def heads(t):  # [1, positions, heads × head_dim] -> [heads, positions, head_dim]
        return t.view(n, -1, block.self_attn.head_dim).transpose(0, 1)

    normed = "q_norm" in theirs  # QK-norm: RoPE turns its output, else the projections'
    q_in, k_in = (theirs["q_norm"], theirs["k_norm"]) if normed else (theirs["q_proj"],
                                                                     theirs["k_proj"])
    q_rot, k_rot = apply_rotary_pos_emb(heads(q_in)[None], heads(k_in)[None], *rope)
    pairs = {
        "input RMSNorm": (xn, theirs["input RMSNorm"][0]),
        "q_proj": (q0, heads(theirs["q_proj"])), "k_proj": (k0, heads(theirs["k_proj"])),
        "v_proj": (v0, heads(theirs["v_proj"])),
        **({"QK-norm (q)": (q1, heads(theirs["q_norm"])),
            "QK-norm (k)": (k1, heads(theirs["k_norm"]))} if normed else {}),
        "RoPE (q)": (q2, q_rot[0]), "RoPE (k)": (k2, k_rot[0]),
        "attention output (o_proj)": (attended, theirs["self_attn"][0][0]),
        "MLP": (after, theirs["MLP"][0]), "layer output": (mid + after, output),
    }
    checks = {what: checked(mine, lib) for what, (mine, lib) in pairs.items()}
    checks["attention weights"] = check_window(block.self_attn, q2[:, -ROWS:], k2, window)
    updates = torch.stack([attended, after]).float()  # [2, positions, hidden]
    sink = float(weights[:, 1:, 0].mean()) if n > 1 else 1.0
    halfway = (x + theirs["self_attn"][0][0])[-HALFWAY:].clone()
    return Opened(layer, t, checks, x.float().pow(2).mean(-1).sqrt(),
                  torch.linalg.vector_norm(updates, dim=-1), updates[:, -1].clone(), sink,
                  halfway)


def library_mask(rows: int, n: int, window: int | None) -> torch.Tensor:
    """The library's own mask for the last `rows` queries over `n` keys, from its mask
    functions (transformers.masking_utils): 0 where a query may read a key, -inf elsewhere."""
    allowed = causal_mask_function if window is None else and_masks(
        causal_mask_function, sliding_window_overlay(window))
    i, j = torch.arange(n - rows, n)[:, None], torch.arange(n)[None, :]
    return torch.zeros(rows, n).masked_fill(~allowed(0, 0, i, j), float("-inf"))


def check_window(attn, q, k, window: int | None = None) -> tuple:
    """window_weights() against the library's eager attention (`eager_attention_forward`) on
    the same q and k, with the library's mask: the scores, the mask and the softmax are what
    this checks (q and k are checked step by step, Opened.checks)."""
    mine = window_weights(q, k, window)
    rows, n = mine.shape[-2:]
    q, k = q.float(), k.float()
    mask = library_mask(rows, n, window)
    # (the weights don't depend on the values: one number of k per position stands in for
    # v, so the values' mix, unused, costs nothing)
    _, theirs = eager_attention_forward(attn, q[None], k[None], k[None, ..., :1],
                                        mask[None, None], attn.scaling)
    return checked(mine, theirs[0])


def compare_logits(model, hand, library):
    """Logits by hand (`unembed`) and by the library's own output layer, for some positions:
    per position the largest difference and the largest |library logit| (what it is judged
    at), both top-1 ids, and the library's top-2 margin. One float32 table of [positions ×
    vocabulary] at a time: the difference is taken in place, the rest read in the model's
    dtype (exact: a float32 copy of bfloat16 numbers holds the same numbers)."""
    mine, theirs = unembed(model, hand), model.lm_head(library)
    top_mine, top_theirs = mine.argmax(-1), theirs.argmax(-1)
    low, high = torch.aminmax(theirs, dim=-1)
    top2 = theirs.topk(2, dim=-1).values.float()
    gaps = mine.float().sub_(theirs).abs_().amax(-1)  # (mine's own table if already float32)
    return (gaps, torch.maximum(low.abs(), high.abs()).float(), top_mine, top_theirs,
            top2[:, 0] - top2[:, 1])


def gap(mine: torch.Tensor, theirs: torch.Tensor) -> Difference:
    """The largest absolute difference between two tensors of the same values, judged in the
    steps of the dtype the library computed `theirs` in."""
    return difference(mine, theirs, theirs.dtype)


def checked(mine: torch.Tensor, theirs: torch.Tensor) -> tuple:
    """A check: the shape, the gap, and the largest |library value| it is judged at."""
    found = gap(mine, theirs)
    return tuple(mine.shape), found, found.scale

