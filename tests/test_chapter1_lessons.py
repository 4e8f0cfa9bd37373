"""The lesson functions reproduce transformers' generate() exactly, and the KV cache is exact."""

import copy

import pytest
import torch
from conftest import DTYPE
from transformers import AutoModelForCausalLM

from chapter1.autoregression import step
from chapter1.filters import Watched, probabilities, survivors, warpers
from chapter1.logits import TOP, logits
from chapter1.pipeline import PREFILL_CHUNK, advance, generate
from chapter1.sampling import random_stream, sample
from chapter1.tokenizer import tokenize
from token_by_token import model as models
from token_by_token.memo import Memo

TEXT = "The quick brown fox jumps over the lazy"


@pytest.fixture(scope="module")
def peaked(peaked_dir):
    """A tiny model with large random weights: peaked distributions, so filters really bite.
    Loaded in the tests' dtype (a module's fixture runs before the autouse setting it)."""
    with pytest.MonkeyPatch.context() as setting:
        setting.setenv("TOKEN_BY_TOKEN_DTYPE", DTYPE)
        return models._load(str(peaked_dir))


def reference(loaded, n, text=TEXT, **sampling):
    ids = tokenize(loaded.tokenizer, text)
    out = loaded.model.generate(torch.tensor([ids]), max_new_tokens=n, eos_token_id=None,
                                pad_token_id=0, **sampling)
    return out[0].tolist()


@pytest.mark.parametrize("text", ["Return the number of items", "def add(a, b):"])
def test_greedy_stepping_reproduces_generate(peaked, text):
    theirs = reference(peaked, 20, text, do_sample=False)
    # top_k=1 keeps exact ties (next test) and draws among them, where argmax takes the
    # first: the two agree up to the first exact tie of the two best logits
    top2 = logits(peaked.model, theirs)[-21:-1].topk(2).values
    ties = (top2[:, 0] == top2[:, 1]).nonzero().flatten().tolist()
    n = ties[0] if ties else 20
    assert n >= 2, f"a tie at step {n}: pick another text"
    ours = generate(peaked.tokenizer, peaked.model, text, n, 1.0, 1, 1.0, 0.0)
    assert ours == theirs[: len(ours)]


def test_top_k_1_keeps_exact_ties_where_argmax_takes_the_first(peaked):
    """bfloat16 logits tie more often than one would think; generate() behaves the same."""
    model = copy.deepcopy(peaked.model).to(torch.bfloat16)  # whatever the tests' dtype
    ids = tokenize(peaked.tokenizer, TEXT)
    for _ in range(200):  # greedy steps until the two best logits tie exactly (the step
        last = logits(model, ids)[-1]  # depends on the threads' sums: 3 or 84 here, measured)
        top2 = last.topk(2)
        if top2.values[0] == top2.values[1]:
            break
        ids.append(int(top2.indices[0]))
    else:
        pytest.fail("no exact tie in 200 greedy steps")
    probs = probabilities(last, warpers(1.0, 1, 1.0, 0.0))
    tied = set(torch.nonzero(last == top2.values[0]).flatten().tolist())
    assert len(tied) >= 2 and set(torch.nonzero(probs).flatten().tolist()) == tied


SETTINGS = [(0.7, 20, 0.8, 0.0), (1.0, 0, 1.0, 0.1), (1.5, 50, 0.95, 0.05),
            (0.5, 5, 0.5, 0.2), (2.0, 0, 0.9, 0.0)]


@pytest.mark.parametrize("temperature, top_k, top_p, min_p", SETTINGS)
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_sampled_stepping_reproduces_generate(peaked, seed, temperature, top_k, top_p, min_p):
    torch.manual_seed(seed)
    ours = generate(peaked.tokenizer, peaked.model, TEXT, 20, temperature, top_k, top_p, min_p)
    torch.manual_seed(seed)
    theirs = reference(peaked, 20, do_sample=True, temperature=temperature, top_k=top_k,
                       top_p=top_p, min_p=min_p)
    assert ours == theirs


@pytest.mark.parametrize("temperature, top_k, top_p, min_p", SETTINGS)
def test_the_filters_really_bite_on_this_model(peaked, temperature, top_k, top_p, min_p):
    ids = tokenize(peaked.tokenizer, TEXT)
    last = logits(peaked.model, ids)[-1]
    chain = warpers(temperature, top_k, top_p, min_p)
    watched = [Watched(w) for w in chain]
    probs = probabilities(last, watched)
    assert torch.equal(probs, probabilities(last, chain))  # watching changes nothing
    left = survivors(torch.softmax(last, dim=-1), watched)["tokens left"]
    assert left.iloc[-1] < len(last) and left.iloc[-1] >= 1
    assert probs[~watched[-1].kept].sum() == 0  # what the last filter removed can't be drawn
    assert left.is_monotonic_decreasing  # a filter only ever removes


def test_chunked_prefill_equals_one_forward_in_float32(tiny_dir):
    """The page reads a long text PREFILL_CHUNK positions at a time through the KV cache."""
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    ids = [10 + (7 * i) % 500 for i in range(2 * PREFILL_CHUNK + 5)]  # three chunks
    forward = advance(model, ids, Memo())
    full = logits(model, ids)
    top = full.topk(TOP, dim=-1)
    assert forward.cache.get_seq_length() == len(ids) and not forward.stepped
    assert torch.allclose(forward.first, full[0], atol=1e-4)
    assert torch.allclose(forward.last, full[-1], atol=1e-4)
    candidates = forward.candidates
    assert torch.allclose(candidates.logits, top.values, atol=1e-4)
    assert torch.allclose(candidates.probs, torch.softmax(full, -1).topk(TOP, -1).values,
                          atol=1e-5)
    assert (candidates.ids == top.indices).float().mean() > 0.99  # near-ties may swap


def test_cached_step_equals_full_recompute_in_float32(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    from transformers import AutoTokenizer, DynamicCache
    ids = tokenize(AutoTokenizer.from_pretrained(tiny_dir), TEXT)
    cache = DynamicCache(config=model.config)
    last = logits(model, ids, cache)[-1]
    for next_id in [5, 99, 1000, 7, 42, 2045]:
        ids, last = step(model, cache, ids, next_id)
        full = logits(model, ids)[-1]
        assert torch.allclose(last, full, atol=1e-4), (last - full).abs().max()
    assert cache.get_seq_length() == len(ids)


@pytest.mark.parametrize("temperature, top_k, top_p, min_p", [
    (0.05, 1, 0.0, 1.0),   # every filter at its strictest
    (2.0, 0, 1.0, 0.0),    # every filter off, hottest temperature
    (0.05, 100, 1.0, 0.0), (2.0, 1, 0.0, 0.0), (1.0, 0, 0.0, 0.0), (1.0, 0, 1.0, 1.0),
])
def test_extreme_settings_give_a_valid_distribution(peaked, temperature, top_k, top_p, min_p):
    last = logits(peaked.model, tokenize(peaked.tokenizer, TEXT))[-1]
    probs = probabilities(last, warpers(temperature, top_k, top_p, min_p))
    assert not probs.isnan().any()
    assert abs(float(probs.sum()) - 1.0) < 1e-5
    assert (probs > 0).sum() >= 1
    next_id = sample(probs, random_stream(42, 9, 0))
    assert probs[next_id] > 0


def test_a_sample_is_a_pure_function_of_probs_seed_position_and_draw(peaked):
    last = logits(peaked.model, tokenize(peaked.tokenizer, TEXT))[-1]
    probs = probabilities(last, warpers(1.5, 0, 1.0, 0.0))
    draws = [sample(probs, random_stream(42, 9, draw)) for draw in range(20)]
    assert draws == [sample(probs, random_stream(42, 9, draw)) for draw in range(20)]
    assert len(set(draws)) > 1  # resampling really draws again


def test_filtered_tokens_are_never_sampled(peaked):
    last = logits(peaked.model, tokenize(peaked.tokenizer, TEXT))[-1]
    probs = probabilities(last, warpers(1.0, 3, 1.0, 0.0))
    allowed = set(torch.nonzero(probs).flatten().tolist())
    assert len(allowed) == 3
    assert {sample(probs, random_stream(s, 9, 0)) for s in range(200)} <= allowed
