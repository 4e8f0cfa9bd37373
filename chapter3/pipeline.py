"""Chapter 3's pipeline: the learner's ids and their KV cache, and the view every section's
render reads.

The ids are the learner's sequence (token_by_token/sequence.py), the same every chapter reads.
Their KV cache is the learner's one cache (token_by_token/kvcache.py): the one another
chapter's forward kept, else read here once, PREFILL_CHUNK positions per forward, and kept
for every chapter. Each section's part (its measurements, its runs of the model, its traced
lessons) is computed when its render first reads it, by the section module's own functions,
and kept in the learner's memo per what it depends on; what was measured about this machine
is kept for the whole process (chapter3/measure.py). The shared model is never changed:
sections 4 and 5 run twins of it (chapter3/twin.py).
"""

from functools import cached_property

import torch
from transformers import DynamicCache

from chapter3 import batching, flash, measure, paged, quantize, roofline, speculative
from chapter3.facts import Facts
from token_by_token import kvcache
from token_by_token.kvcache import PREFILL_CHUNK
from token_by_token.locks import FORWARD_LOCK
from token_by_token.memo import Memo, Slot, memo_of
from token_by_token.sequence import sequence
from token_by_token.trace import Trace


def learner_cache(model, ids: list[int], memo: Memo) -> DynamicCache:
    """The learner's KV cache of `ids`: the one kept for them if it holds these ids (Chapter
    1's forward keeps one), else read now, PREFILL_CHUNK positions per forward (only the
    last position's scores: the cache is what is kept), and kept as the learner's one cache.
    This chapter's cache keeps every position of every layer: it crops and copies it, and
    its sections read the first layer's keys and values whole. Chapter 1's cache of a model
    with sliding-window layers keeps only their window: then this one is read anew."""
    key = tuple(ids)
    if (cache := kvcache.cache_of(memo, key)) is not None and kvcache.croppable(cache):
        return cache
    with FORWARD_LOCK, torch.inference_mode():
        cache = kvcache.cache_of(memo, key)  # read while this one waited?
        if cache is not None and kvcache.croppable(cache):
            return cache
        kvcache.keep(memo, None, None)  # a failed read must leave no stale cache behind
        cache = kvcache.keeping_every_position()
        for start in range(0, len(ids), PREFILL_CHUNK):
            model(torch.tensor([ids[start:start + PREFILL_CHUNK]]), cache=cache,
                  logits_to_keep=1)
        kvcache.keep(memo, key, cache)
    return cache


SECTION_OF = {module.__name__: name for module, name in [
    (roofline, "roofline"), (batching, "batching"), (flash, "tiled"),
    (quantize, "quantization"), (speculative, "speculation"), (paged, "paged")]}


class View:
    """Everything Chapter 3 shows, derived from the learner's choices: what every section's
    render(loaded, view) reads. Each section's part is computed when its render first reads
    it (measuring what is not measured yet), once per view, and kept in the learner's memo
    per what it depends on. The choices are read as their widgets allow them
    (controls.fit moves the learner's value there before a widget is drawn)."""

    def __init__(self, loaded, choices: dict, memo: Memo):
        self.loaded, self.memo = loaded, memo
        self.model, self.model_id = loaded.model, loaded.model_id
        self.ids = sequence(loaded, choices).ids
        self.facts = Facts.of(loaded.model)
        self.machine = measure.machine()
        self.version = measure.version()
        cap, layers = loaded.max_tokens, self.facts.layers
        self.batch_length = within(choices["batch_length"], 1, cap)
        self.flash_block = choices["flash_block"] if choices["flash_block"] in flash.BLOCKS \
            else 4
        self.quant_scheme = choices["quant_scheme"] if choices["quant_scheme"] in \
            quantize.SCHEMES else quantize.SCHEMES[0]
        self.spec_draft = choices["spec_draft"] if choices["spec_draft"] in \
            speculative.DRAFTS else speculative.DRAFTS[0]
        depth = choices["spec_layers"]
        self.spec_layers = depth if isinstance(depth, int) and 1 <= depth <= max(layers - 1, 1) \
            else max(layers // 2, 1)
        self.spec_k = within(choices["spec_k"], 1, speculative.MOST_K)
        self.spec_temperature = round(float(choices["spec_temperature"]), 2)
        self.seed = int(choices["seed"])
        self.paged_block = choices["paged_block"] if choices["paged_block"] in \
            paged.BLOCK_SIZES else 16
        self.paged_learners = within(choices["paged_learners"], 1, paged.MOST_LEARNERS)
        self.paged_length = within(choices["paged_length"], 1, cap)
        self.paged_prefix = within(choices["paged_prefix"], 0, cap)

    @property
    def ready(self) -> bool:
        """True when the learner's KV cache holds these ids already (nothing to read)."""
        return kvcache.cache_of(self.memo, tuple(self.ids)) is not None

    @property
    def cache(self) -> DynamicCache:
        """The learner's KV cache of the ids (read here if no chapter has: see
        learner_cache). Not kept by the view: the learner's memo holds their one cache."""
        return learner_cache(self.model, self.ids, self.memo)

    @cached_property
    def roofline(self) -> "roofline.Roofline":
        return roofline.roofline_of(self.model, self.model_id, tuple(self.ids), self.cache,
                                    self.loaded.max_tokens, self.memo)

    @cached_property
    def batching(self) -> "batching.Batching":
        return batching.batching_of(self.model, self.model_id, tuple(self.ids),
                                    self.batch_length, self.machine.memory)

    @cached_property
    def tiled(self) -> "flash.Tiled":
        keys = self.cache.layers[0].keys[0]  # layer 0's keys [kv heads, positions, head_dim]
        return flash.tiled_of(self.model, tuple(self.ids), self.flash_block, keys, self.memo)

    @cached_property
    def quantization(self) -> "quantize.Quantization":
        return quantize.quantization_of(self.model, self.model_id, tuple(self.ids),
                                        self.quant_scheme, self.memo)

    @cached_property
    def speculation(self) -> "speculative.Run":
        return speculative.speculation_of(
            self.model, self.model_id, tuple(self.ids), self.cache, self.spec_draft,
            self.spec_layers, self.spec_k, self.spec_temperature, self.seed, self.memo)

    @cached_property
    def paged(self) -> "paged.Paged":
        pages = paged.pages_of(self.model, tuple(self.ids), self.cache, self.paged_block,
                               self.memo)
        return paged.paged_of(self.model, pages, self.paged_learners, self.paged_length,
                              self.paged_prefix, self.loaded.max_tokens)

    def trace(self, function) -> Trace | object:
        """The traced call of a lesson function on this page (from its section's part), or
        the function itself if the page did not call it."""
        part = SECTION_OF.get(function.__module__)
        traces = getattr(self, part).traces if part else {}
        return traces.get(function.__name__, function)

    def again(self, section: str) -> None:
        """on_click of section 5's Run again: this learner's run is forgotten, and their
        view with it (the Measure again buttons forget process-wide measurements instead:
        measure.version() then makes every learner's view anew)."""
        if section == "speculative":
            self.memo.put(speculative.RUN, None, None)
            self.memo.put(VIEW, None, None)


def within(value, low: int, high: int) -> int:
    return min(max(int(value), low), high)


CHOICES = ("text", "chat", "thinking", "generated", "batch_length", "flash_block",
           "quant_scheme", "spec_draft", "spec_layers", "spec_k", "spec_temperature", "seed",
           "paged_block", "paged_learners", "paged_length", "paged_prefix")
VIEW: Slot[View] = Slot("chapter3.view")


def view(loaded, state) -> View:
    """Everything the page shows, from the learner's choices in `state` (a mapping)."""
    memo = memo_of(state).for_model(loaded.model_id)
    choices = {key: list(v) if isinstance(v := state.get(key), list) else v for key in CHOICES}
    key = (*(tuple(v) if isinstance(v, list) else v for v in choices.values()),
           measure.version())
    if (same := memo.get(VIEW, key)) is not None:
        return same
    return memo.put(VIEW, key, View(loaded, choices, memo))
