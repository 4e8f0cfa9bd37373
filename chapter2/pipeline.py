"""Chapter 2's pipeline: the learner's ids, the model opened up on them, every value checked,
and the view every section's render reads.

One forward of the library's model per change of ids (`look_inside`) keeps the residual
stream, what every layer reads: [layers + 1, positions, hidden]; while it runs, each layer is
opened by the lesson functions and checked against the library's modules (chapter2/checks.py).
Then the same ids go through the lesson functions by hand, layer after layer, and the logits
are compared. Picking a layer runs no forward: only that layer's attention weights are
recomputed (section 6's `pattern_of`). The shared model is never changed.
"""

import time
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
import torch
from transformers import DynamicCache

from chapter2 import lens, stream
from chapter2.attention import angles
from chapter2.checks import Opened, compare_logits, gap, opening
from chapter2.embeddings import embed
from chapter2.facts import Facts
from chapter2.kvcache import last_step_cached
from chapter2.lens import residual_stream
from chapter2.patterns import Pattern, pattern_of
from chapter2.rebuild import decoder_layer
from chapter2.rmsnorm import norm
from token_by_token import kvcache, progress
from token_by_token.capture import capture
from token_by_token.memo import Memo, Slot, memo_of
from token_by_token.model import FORWARD_LOCK
from token_by_token.precision import Difference, difference, why
from token_by_token.sequence import sequence
from token_by_token.trace import Trace, traced

CHUNK = 64  # positions scored at a time: never a [1,024 × vocabulary] table in memory
OPENING = "Opening the model on your text: layers checked, then run by hand"


@dataclass(frozen=True)
class Cached:
    """The KV cache that the library's forward of the learner's ids built (its shapes, not
    its tensors), and one cached step of the last token compared with that forward."""
    keys: list[tuple[int, ...]]    # per layer: the keys' shape [batch, kv heads, positions, d]
    values: list[tuple[int, ...]]  # per layer: the values' shape
    nbytes: int                    # keys and values of every layer
    step: Trace                    # last_step_cached(), traced
    gap: Difference                # max |cached step − whole forward| of the last logits
    same_top: bool                 # both give the same top-1 token
    seconds: float                 # the cached step's time


def cached_of(model, ids, output, cache) -> Cached:
    """What the learner's KV cache of `ids` holds, then the last token once more through it
    (one forward of one token; its last position is computed again, as a Generate step
    would); `output` is the library's output for all of `ids`."""
    keys = [tuple(layer.keys.shape) for layer in cache.layers]
    values = [tuple(layer.values.shape) for layer in cache.layers]
    nbytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    whole = output.logits[0, -1].float()  # the forward's own last row
    if any(cache.is_sliding) and len(ids) > 1:
        # a sliding window's cache can't be cut back: the positions before the last are
        # read into a cache of the step's own (the learner's is left as it is)
        cache = DynamicCache(config=model.config)
        model(torch.tensor([list(ids[:-1])]), cache=cache, logits_to_keep=1)
    start = time.perf_counter()
    again, step = traced(last_step_cached, model, cache, list(ids))
    seconds = time.perf_counter() - start
    return Cached(keys, values, nbytes, step,
                  difference(again, whole, output.logits.dtype),
                  int(again.argmax()) == int(whole.argmax()), seconds)


@dataclass(frozen=True)
class Inside:
    """What one forward of the learner's ids leaves for Chapter 2 (kept in their session)."""
    ids: tuple[int, ...]
    stream: torch.Tensor       # [layers + 1, positions, hidden]: what each layer reads (library)
    layers: list[Opened]       # every layer, opened while the library ran it
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
    with FORWARD_LOCK, torch.inference_mode():
        # the learner's KV cache of these ids (Chapter 1's forward keeps one): then this
        # forward keeps none (at 1,024 tokens on the Qwen3-0.6B shape, 117 MB less)
        cache = kvcache.cache_of(memo, key)
        steps = 2 * len(model.model.layers)  # each layer opened, then run by hand
        with opening(model, lambda i: progress.report(i, steps, OPENING)) as layers, \
                capture({"model": model}) as whole:
            stream = residual_stream(model, ids, use_cache=cache is None)  # the forward
        output = whole.output("model")
        if cache is None:  # this forward's cache is the learner's now
            cache = output.cache
            kvcache.keep(memo, key, cache)
        cached = cached_of(model, ids, output, cache)
        del whole, output  # the forward's tensors go now
        x = embed(model, ids)
        cos, sin = angles(model, len(ids))
        layer_gaps = []
        for i, layer in enumerate(model.model.layers):  # the same ids, by hand
            progress.report(len(layers) + i, steps, OPENING)
            x = decoder_layer(layer, x, cos, sin)
            layer_gaps.append(gap(x, stream[i + 1]))
        hand, library = norm(model.model.norm, x), model.model.norm(stream[-1])
        scored = [compare_logits(model, hand[c: c + CHUNK], library[c: c + CHUNK])
                  for c in range(0, len(ids), CHUNK)]
    logit_gaps, logit_scales, top_hand, top_library, margins = (
        torch.cat(part) for part in zip(*scored, strict=True))
    return memo.put(INSIDE, key, Inside(
        key, stream, layers, layer_gaps, logit_gaps, logit_scales,
        top_hand, top_library, margins, cached, time.perf_counter() - start))


class View:
    """Everything Chapter 2 shows, derived from the learner's choices: what every section's
    render(loaded, view) reads. What needs the model is computed when a section first reads
    it, once per view (and kept in the learner's memo per ids, layer or position)."""

    def __init__(self, loaded, choices: dict, memo: Memo):
        self.loaded, self.memo = loaded, memo
        self.ids = sequence(loaded, choices).ids
        self.facts = Facts.of(loaded.model)
        self.layer = choices["layer"] if 0 <= (choices["layer"] or 0) < self.facts.layers else 0
        self.head = choices["head"] if 0 <= (choices["head"] or 0) < self.facts.heads else 0
        position = choices["position"]
        self.position = position if position is not None and 0 <= position < len(self.ids) \
            else len(self.ids) - 1
        self.window, self.halfway = choices["window"], choices["halfway"]

    @property
    def ready(self) -> bool:
        """True when the model has been opened on these ids already (no forward to wait)."""
        return self.memo.get(INSIDE, tuple(self.ids)) is not None

    @cached_property
    def inside(self) -> Inside:
        return look_inside(self.loaded.model, self.ids, self.memo)

    @cached_property
    def embedded(self) -> tuple[Trace, Difference]:
        """Section 1's lesson on the ids, and its largest difference from the library's
        embedding layer: no forward needed, so section 1 is drawn before the model opens."""
        model = self.loaded.model
        with torch.inference_mode():
            x, trace = traced(embed, model, self.ids)
            return trace, gap(x, model.model.embed_tokens(torch.tensor(self.ids)))

    @property
    def opened(self) -> Opened:
        return self.inside.layers[self.layer]  # the picked layer

    @cached_property
    def pattern(self) -> Pattern:
        """The picked layer's attention weights, for the query rows ending at the token."""
        return pattern_of(self.loaded.model, self.inside, self.layer, self.position,
                          self.memo)

    @cached_property
    def lens(self) -> "lens.Grid":
        """Section 7's grid: the logit lens at the columns ending at the token."""
        return lens.grid_of(self.loaded, self.inside, self.position, self.halfway, self.memo)

    @cached_property
    def pushes(self) -> "stream.Pushes":
        """Section 8's pushes of every update on the predicted token."""
        return stream.pushes_of(self.loaded.model, self.inside, self.facts.eps, self.memo)

    def trace(self, function) -> Trace | object:
        """The traced call of a lesson function on this page, or the function itself."""
        if function.__name__ == "embed":
            return self.embedded[0]
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


CHOICES = ("text", "chat", "thinking", "generated", "layer", "head", "position", "window",
           "halfway")
VIEW: Slot[View] = Slot("chapter2.view")


def view(loaded, state) -> View:
    """Everything the page shows, from the learner's choices in `state` (a mapping)."""
    memo = memo_of(state).for_model(loaded.model_id)
    choices = {key: list(v) if isinstance(v := state.get(key), list) else v for key in CHOICES}
    key = tuple(tuple(v) if isinstance(v, list) else v for v in choices.values())
    if (same := memo.get(VIEW, key)) is not None:
        return same
    return memo.put(VIEW, key, View(loaded, choices, memo))
