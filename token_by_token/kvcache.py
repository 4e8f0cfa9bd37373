"""The learner's KV cache: one per learner, for the ids their last forward read.

Whichever chapter runs the model on the learner's ids keeps the cache here, keyed by those
ids; the others read it instead of keeping a second one (at 1,024 tokens on the Qwen3-0.6B
shape: 117 MB). A forward that changes the cache (a step appends a position, a crop removes
some) clears the slot first and puts the cache back under its new ids: the key is always the
ids the cache holds. Forwards hold model.FORWARD_LOCK, so a reader under that lock never sees
a cache half-changed.
"""

import copy

from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from token_by_token.memo import Memo, Slot

KV: Slot[DynamicCache] = Slot("kv cache")


def cache_of(memo: Memo, ids) -> DynamicCache | None:
    """The learner's KV cache if it holds exactly `ids`, else None."""
    return memo.get(KV, tuple(ids))


def keep(memo: Memo, ids, cache: DynamicCache | None) -> None:
    """`cache` holds `ids` now (None, ids None: it is being changed)."""
    memo.put(KV, None if ids is None else tuple(ids), cache)


def croppable(cache: DynamicCache) -> bool:
    """Can `cache.crop` give back the cache of fewer positions exactly? Not when a layer
    keeps a sliding window (Gemma 3, Mistral or Qwen3 configured with one): it has dropped
    its earliest positions, or will once it is full."""
    return not any(cache.is_sliding)


def shareable(cache: DynamicCache) -> bool:
    """Can `sharing` copy this cache? Its layers keep keys and values in tensors that a
    step replaces (full or sliding-window layers), not state that it writes into."""
    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer)
               for layer in cache.layers)


def sharing(cache: DynamicCache) -> DynamicCache:
    """A cache holding the same tensors as `cache`, to step on without changing it: a step
    makes each layer's keys and values anew (torch.cat), and a crop takes a view; neither
    writes into the tensors they had."""
    twin = copy.copy(cache)
    twin.layers = [copy.copy(layer) for layer in cache.layers]
    return twin


def keeping_every_position() -> DynamicCache:
    """A KV cache in which every layer keeps every position, a sliding-window layer's too
    (transformers makes a layer of each kind as it is first written). The model's mask still
    hides from a sliding layer's queries what its window hides: the same logits as the
    model's own cache (tests/test_architectures.py checks Mistral, Gemma 3 and a sliding
    Qwen3 past their window), and `crop` can cut it back to any length exactly."""
    return DynamicCache()


# Positions per forward when a chapter reads a whole text into the cache (chunked prefill):
# the same keys and values as one forward, without a [1,024 × vocabulary] table of logits in
# memory at once. Chapter 1's prefill reads this many at a time too (its PREFILL_CHUNK).
PREFILL_CHUNK = 64
