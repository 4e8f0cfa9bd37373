"""Chapter 2's lesson functions reproduce the library's Qwen3, step by step and whole.

The models: a tiny Qwen3 with large random weights (--init-std 0.5: attention far from
uniform, 2 query heads per KV head) and the pocket model (3 query heads per KV head), each
loaded in float32 and in bfloat16 (the app's dtype). "eager" is a deep copy switched to
eager attention, the library's plain-torch reference; the shared model keeps sdpa.
"""

import copy
import time
from types import SimpleNamespace

import pytest
import tiny_model
import torch
from helpers import IDS, load, logits_of
from transformers import AutoModelForCausalLM
from transformers.models.qwen3 import modeling_qwen3 as qwen3

from chapter2 import attention as attn
from chapter2 import embeddings, kvcache, lens, mlp, rebuild, rmsnorm, stream
from chapter2.attention import attention_weights
from chapter2.lens import logit_lens
from chapter2.rebuild import forward_by_hand
from token_by_token import model as models
from token_by_token.capture import capture, forward_capturing

LESSON_MODULES = [embeddings, rmsnorm, attn, mlp, rebuild, lens, stream, kvcache]

@pytest.fixture(params=[
    ("peaked", torch.float32), ("pocket", torch.float32),
    ("peaked", torch.bfloat16), ("pocket", torch.bfloat16),
], ids=["peaked-f32", "pocket-f32", "peaked-bf16", "pocket-bf16"])
def pair(request, peaked_dir):
    """(model, its eager copy) for each model and dtype."""
    name, dtype = request.param
    path = peaked_dir if name == "peaked" else models.POCKET_DIR
    return load(path, dtype), load(path, dtype, eager=True)


@pytest.fixture(params=["peaked", "pocket"])
def pair32(request, peaked_dir):
    """(model, its eager copy) in float32."""
    path = peaked_dir if request.param == "peaked" else models.POCKET_DIR
    return load(path, torch.float32), load(path, torch.float32, eager=True)


def relative(ours, theirs):
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def some_ids(model, n):
    return [(37 * i + 11) % model.config.vocab_size for i in range(n)]


# --- the whole model -----------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 40, 1024])
def test_forward_by_hand_equals_the_model_in_float32(pair32, n):
    model, _ = pair32
    ids = some_ids(model, n)
    ours = forward_by_hand(model, ids)
    assert ours.dtype == torch.float32
    assert ours.shape == (n, model.config.vocab_size)
    assert relative(ours, logits_of(model, ids)) <= 1e-5


def test_forward_by_hand_is_the_eager_library_bit_for_bit(pair):
    """Same operations in the same order and dtypes: identical numbers, bf16 included
    (where sdpa, the model's default attention, rounds differently)."""
    model, eager = pair
    assert torch.equal(forward_by_hand(model, IDS), logits_of(eager, IDS))


def test_forward_by_hand_is_close_to_the_sdpa_model_in_bfloat16(peaked_dir):
    """In bf16 the model's default attention (sdpa) rounds differently from the eager one
    that forward_by_hand reproduces exactly: a few near-ties flip (measured: 0.5-2.5 % of
    positions on these random-weight models, logits within 2.5 % of their largest)."""
    for path in (peaked_dir, models.POCKET_DIR):
        model = load(path, torch.bfloat16)
        ids = some_ids(model, 200)
        ours, theirs = forward_by_hand(model, ids), logits_of(model, ids)
        assert relative(ours, theirs) < 0.05
        assert (ours.argmax(-1) == theirs.argmax(-1)).float().mean() >= 0.95


def test_forward_by_hand_calls_no_qwen3_module(pair):
    model, _ = pair
    kinds = (qwen3.Qwen3ForCausalLM, qwen3.Qwen3Model, qwen3.Qwen3DecoderLayer,
             qwen3.Qwen3Attention, qwen3.Qwen3MLP, qwen3.Qwen3RMSNorm,
             qwen3.Qwen3RotaryEmbedding)
    watched = {name: module for name, module in model.named_modules()
               if isinstance(module, kinds)}
    assert len(watched) > 5 * model.config.num_hidden_layers
    with capture(watched) as seen:
        forward_by_hand(model, IDS)
    assert {name: len(calls) for name, calls in seen.calls.items() if calls} == {}


# --- step by step, against the hooked library modules -------------------------------------

def library_calls(model, ids):
    """One library forward, recording the modules whose outputs the lessons reproduce."""
    watched = {"embed": model.model.embed_tokens, "rotary": model.model.rotary_emb,
               "final norm": model.model.norm}
    for i, layer in enumerate(model.model.layers):
        watched |= {
            f"{i}": layer, f"{i}.norm1": layer.input_layernorm,
            f"{i}.norm2": layer.post_attention_layernorm, f"{i}.attn": layer.self_attn,
            f"{i}.q_norm": layer.self_attn.q_norm, f"{i}.k_norm": layer.self_attn.k_norm,
            f"{i}.mlp": layer.mlp,
        }
    _, seen = forward_capturing(model, ids, watched)
    return seen


def test_embeddings_are_rows_of_the_table(pair):
    model, _ = pair
    seen = library_calls(model, IDS)
    assert torch.equal(embeddings.embed(model, IDS), seen.output("embed")[0])
    assert embeddings.embed(model, IDS[:1]).shape == (1, model.config.hidden_size)


def test_rms_norm_is_the_library_norm_bit_for_bit(pair):
    model, _ = pair
    seen = library_calls(model, IDS)
    with torch.inference_mode():
        for i, layer in enumerate(model.model.layers):
            for name, module in [("norm1", layer.input_layernorm),
                                 ("norm2", layer.post_attention_layernorm)]:
                x = seen.input(f"{i}.{name}")
                assert torch.equal(rmsnorm.norm(module, x), seen.output(f"{i}.{name}"))
        x = seen.input("final norm")
        ours = rmsnorm.rms_norm(x, model.model.norm.weight, model.config.rms_norm_eps)
        assert torch.equal(ours, seen.output("final norm"))


def test_q_and_k_per_head_after_qk_norm_and_rope(pair):
    model, _ = pair
    seen = library_calls(model, IDS)
    cos, sin = attn.angles(model, len(IDS))
    library_cos, library_sin = seen.output("rotary")
    assert torch.equal(cos.to(model.dtype), library_cos[0])
    assert torch.equal(sin.to(model.dtype), library_sin[0])
    heads, kv_heads = model.config.num_attention_heads, model.config.num_key_value_heads
    with torch.inference_mode():
        for i, layer in enumerate(model.model.layers):
            q, k, v = attn.project(layer, seen.input(f"{i}.attn")[0])
            assert q.shape == (heads, len(IDS), layer.self_attn.head_dim)
            assert k.shape == v.shape == (kv_heads, len(IDS), layer.self_attn.head_dim)
            # the library normalises [1, positions, heads, head_dim]: our [heads, ...]
            assert torch.equal(q, seen.input(f"{i}.q_norm")[0].transpose(0, 1))
            assert torch.equal(k, seen.input(f"{i}.k_norm")[0].transpose(0, 1))
            q, k = attn.qk_norm(layer, q, k)
            library_q = seen.output(f"{i}.q_norm").transpose(1, 2)
            library_k = seen.output(f"{i}.k_norm").transpose(1, 2)
            assert torch.equal(q, library_q[0]) and torch.equal(k, library_k[0])
            library_q, library_k = qwen3.apply_rotary_pos_emb(
                library_q, library_k, library_cos, library_sin)
            assert torch.equal(attn.rotate(q, cos, sin), library_q[0])
            assert torch.equal(attn.rotate(k, cos, sin), library_k[0])


def test_attention_mlp_and_layers_equal_the_library(pair):
    """Exactly equal to the eager library; within float32 rounding of the sdpa one."""
    model, eager = pair
    cos, sin = attn.angles(model, len(IDS))
    for reference, exact in [(eager, True), (model, False)]:
        seen = library_calls(reference, IDS)
        with torch.inference_mode():
            for i, layer in enumerate(model.model.layers):
                pairs = [
                    (attn.attention(layer, seen.input(f"{i}.attn")[0], cos, sin),
                     seen.output(f"{i}.attn")[0][0]),
                    (mlp.mlp(layer, seen.input(f"{i}.mlp")[0]), seen.output(f"{i}.mlp")[0]),
                    (rebuild.decoder_layer(layer, seen.input(f"{i}")[0], cos, sin),
                     seen.output(f"{i}")[0]),
                ]
                for ours, theirs in pairs:
                    if exact:
                        assert torch.equal(ours, theirs)
                    elif model.dtype == torch.float32:
                        assert relative(ours, theirs) <= 1e-5


def test_the_mlp_activation_is_silu(pair):
    model, _ = pair
    assert model.config.hidden_act == "silu"


# --- attention weights ----------------------------------------------------------------------

def eager_weights(eager, ids):
    with torch.inference_mode():
        return eager(torch.tensor([ids]), output_attentions=True).attentions


def test_attention_weights_equal_the_eager_library_in_float32(pair32):
    model, eager = pair32
    library = eager_weights(eager, IDS)
    for layer in (0, model.config.num_hidden_layers - 1):
        weights = attention_weights(model, IDS, layer)
        assert weights.dtype == torch.float32
        assert weights.shape == (model.config.num_attention_heads, len(IDS), len(IDS))
        assert (weights - library[layer][0]).abs().max() <= 1e-5
    assert torch.equal(attention_weights(model, IDS, -1), weights)  # -1: the last layer
    with pytest.raises(IndexError):
        attention_weights(model, IDS, model.config.num_hidden_layers)


def test_the_pages_pattern_window_equals_the_eager_library_in_float32(pair32):
    """pattern_of() (the page's: ROWS query rows, scores in float32) on a float32 model:
    the eager library's weights for those rows, in the first and last layer; and the page's
    own check of those rows (made when the layer was opened) says so."""
    from chapter2 import patterns, pipeline
    from token_by_token.memo import Memo
    model, eager = pair32
    ids = some_ids(model, patterns.ROWS + 20)  # the window starts at position 20
    library = eager_weights(eager, ids)
    seen = pipeline.look_inside(model, ids, Memo())
    for layer in (0, model.config.num_hidden_layers - 1):
        pattern = patterns.pattern_of(model, seen, layer, len(ids) - 1, Memo())
        assert pattern.rows == range(20, len(ids))
        rows = library[layer][0][:, pattern.rows]
        assert (pattern.weights - rows).abs().max() <= 1e-5
        assert seen.layers[layer].checks["attention weights"][1] <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear32_gives_the_modules_numbers(dtype):
    from chapter2.patterns import linear32
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 128, bias=True).to(dtype)
    x = torch.randn(64, 256).to(dtype)
    with torch.inference_mode():
        ours, theirs = linear32(linear, x), linear(x)
    assert ours.dtype == dtype
    # bf16: the same float32 sums in another order, rounded once: a last-bit difference
    # in a few values at most
    assert ((ours != theirs).float().mean() <= (0 if dtype == torch.float32 else 0.01))
    assert torch.allclose(ours.float(), theirs.float(), rtol=2 ** -7, atol=1e-6)


def test_attention_weights_are_causal_rows_that_sum_to_1(pair):
    model, eager = pair
    for n in (1, 40):
        weights = attention_weights(model, IDS[:n], model.config.num_hidden_layers - 1)
        assert weights.dtype == torch.float32
        assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:2]), atol=1e-5)
        assert (weights.triu(diagonal=1) == 0).all()
    # bf16: the eager library rounds its weights to bf16 (≤ 2⁻⁹ from ours) and its own
    # layers round differently from the sdpa forward we read the layer's input from
    library = eager_weights(eager, IDS)
    weights = attention_weights(model, IDS, 0)
    tolerance = 1e-5 if model.dtype == torch.float32 else 2.0 ** -8
    assert (weights - library[0][0].float()).abs().max() <= tolerance
    # attention far from uniform: some rows put most of their weight on one position
    assert weights.max() > 0.9 and weights[:, 10:].amax(-1).min() < 0.5


def test_attention_weights_at_1024_positions(peaked_dir):
    model = load(peaked_dir, torch.bfloat16)
    weights = attention_weights(model, some_ids(model, 1024), 1)
    assert weights.shape == (model.config.num_attention_heads, 1024, 1024)
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:2]), atol=1e-5)
    assert (weights.triu(diagonal=1) == 0).all()


def test_grouped_query_heads_match_the_library_repeat_kv(pair):
    model, _ = pair
    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    k = torch.randn(kv_heads, 5, 8)
    shared = attn.share_kv(k, heads)
    assert torch.equal(shared, qwen3.repeat_kv(k[None], heads // kv_heads)[0])
    for head in range(heads):
        assert torch.equal(shared[head], k[attn.kv_head_of(head, config)])
    assert {attn.kv_head_of(h, config) for h in range(heads)} == set(range(kv_heads))


def test_the_pocket_model_has_3_query_heads_per_kv_head():
    config = load(models.POCKET_DIR, torch.float32).config
    assert config.num_attention_heads // config.num_key_value_heads == 3


def test_causal_mask_and_softmax():
    scores = torch.randn(2, 4, 4, dtype=torch.bfloat16)
    weights = attn.softmax(attn.causal_mask(scores))
    assert weights.dtype == torch.float32
    assert (weights.triu(diagonal=1) == 0).all()
    assert torch.equal(weights[:, 0, 0], torch.ones(2))
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4))
    # fewer queries than keys: they are the last positions (a window, or one cached step)
    assert torch.equal(attn.causal_mask(scores[:, 2:]), attn.causal_mask(scores)[:, 2:])
    assert torch.equal(attn.causal_mask(scores[:, 3:]), scores[:, 3:])  # the newest sees all


def test_rope_turns_pairs_of_split_halves_and_keeps_lengths():
    speeds = 1.0 / 10_000.0 ** (torch.arange(0, 8, 2).float() / 8)
    cos, sin = attn.rope_angles(torch.arange(3), speeds)
    assert cos.shape == sin.shape == (3, 8)
    assert torch.equal(cos[0], torch.ones(8)) and torch.equal(sin[0], torch.zeros(8))
    assert torch.equal(cos[:, :4], cos[:, 4:])  # pair i = coordinates i and i + 4
    x = torch.randn(3, 8)
    turned = attn.rotate(x, cos, sin)
    pairs = lambda t: torch.stack([t[:, :4], t[:, 4:]], dim=-1).norm(dim=-1)  # noqa: E731
    assert torch.allclose(pairs(turned), pairs(x), atol=1e-6)
    # position 1 turns pair 0 by 1 radian
    a, b = x[1, 0], x[1, 4]
    assert torch.allclose(turned[1, [0, 4]], torch.stack(
        [a * torch.cos(torch.tensor(1.0)) - b * torch.sin(torch.tensor(1.0)),
         b * torch.cos(torch.tensor(1.0)) + a * torch.sin(torch.tensor(1.0))]), atol=1e-6)


def test_rope_theta_is_read_from_the_config():
    assert attn.rope_theta(load(models.POCKET_DIR, torch.float32).config) == 1_000_000.0
    assert attn.rope_theta(SimpleNamespace(rope_parameters={"rope_theta": 5.0})) == 5.0
    assert attn.rope_theta(SimpleNamespace(rope_parameters=None, rope_theta=7.0)) == 7.0
    assert attn.rope_theta(SimpleNamespace()) == 10_000.0


# --- embeddings -----------------------------------------------------------------------------

def test_tied_embeddings(pair):
    model, _ = pair
    assert embeddings.tied(model) is model.config.tie_word_embeddings is True


def test_the_logits_comparison_is_the_whole_table_formula_in_float32(pair):
    """compare_logits reads the tables in the model's dtype and takes the difference in place
    (for the peak memory): the same numbers as the plain formulas over float32 copies, with
    the hand's side far off the library's (so that a difference taken in bfloat16 would
    round)."""
    from chapter2.checks import compare_logits
    model, _ = pair
    library = model.model.embed_tokens.weight[IDS[:9]]
    hand = model.model.embed_tokens.weight[IDS[9:18]] * 3
    mine, theirs = rebuild.unembed(model, hand).float(), model.lm_head(library).float()
    top2 = theirs.topk(2, dim=-1).values
    expected = ((mine - theirs).abs().amax(-1), theirs.abs().amax(-1), mine.argmax(-1),
                theirs.argmax(-1), top2[:, 0] - top2[:, 1])
    found = compare_logits(model, hand, library)
    assert found[0].max() > 0
    for ours, plain in zip(found, expected, strict=True):
        assert ours.dtype == plain.dtype and torch.equal(ours, plain)


def test_nearest_tokens_by_cosine_similarity(pair):
    model, _ = pair
    table = model.model.embed_tokens.weight.float()
    token = IDS[3]
    ids, similarities = embeddings.nearest(model, token, 5)
    cosines = torch.nn.functional.cosine_similarity(table, table[token][None], dim=-1)
    cosines[token] = -2
    expected = cosines.topk(5)
    assert token not in ids.tolist()
    assert (similarities[:-1] >= similarities[1:]).all()
    tolerance = 1e-5 if model.dtype == torch.float32 else 1e-2  # bf16 dot products
    assert torch.allclose(similarities, expected.values, atol=tolerance)
    if model.dtype == torch.float32:
        assert ids.tolist() == expected.indices.tolist()


# --- the logit lens -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 40])
def test_logit_lens_reads_every_layer_through_the_final_norm(pair, n):
    model, _ = pair
    ids = IDS[:n]
    top1 = logit_lens(model, ids)
    assert top1.dtype == torch.int64
    assert top1.shape == (model.config.num_hidden_layers + 1, n)
    with torch.inference_mode():
        out = model(torch.tensor([ids]), output_hidden_states=True)
        # the library's last hidden state already went through the final norm
        for i, hidden in enumerate(out.hidden_states[:-1]):
            expected = model.lm_head(model.model.norm(hidden))[0].argmax(-1)
            assert torch.equal(top1[i], expected), i
    assert torch.equal(top1[-1], out.logits[0].argmax(-1))


def test_the_residual_stream_and_its_midpoints(pair):
    model, eager = pair
    xs = lens.residual_stream(model, IDS)
    mids = lens.mid_stream(model, IDS)
    layers = model.config.num_hidden_layers
    assert xs.shape == (layers + 1, len(IDS), model.config.hidden_size)
    assert mids.shape == (layers, len(IDS), model.config.hidden_size)
    with torch.inference_mode():
        out = model(torch.tensor([IDS]), output_hidden_states=True)
        assert torch.equal(xs[:-1], torch.cat(out.hidden_states[:-1]))
        assert torch.equal(rmsnorm.norm(model.model.norm, xs[-1]), out.hidden_states[-1][0])
        seen = library_calls(model, IDS)
        for i in range(layers):  # halfway: the layer's input plus its attention's output
            assert torch.equal(mids[i], seen.input(f"{i}")[0] + seen.output(f"{i}.attn")[0][0])


def test_mid_lens_reads_between_attention_and_mlp(pair):
    model, _ = pair
    top1 = lens.mid_lens(model, IDS)
    assert top1.dtype == torch.int64
    assert top1.shape == (model.config.num_hidden_layers, len(IDS))
    seen = library_calls(model, IDS)
    with torch.inference_mode():
        for i in range(model.config.num_hidden_layers):
            x = seen.input(f"{i}.norm2")  # the second norm reads the stream halfway
            expected = model.lm_head(model.model.norm(x))[0].argmax(-1)
            assert torch.equal(top1[i], expected), i


def test_lens_top_k_probabilities(pair):
    model, _ = pair
    xs = lens.residual_stream(model, IDS)
    probs, ids = lens.lens_top_k(model, xs[:, -3:], 4)
    assert probs.shape == ids.shape == (model.config.num_hidden_layers + 1, 3, 4)
    assert probs.dtype == torch.float32
    assert (probs[..., :-1] >= probs[..., 1:]).all() and (probs.sum(-1) <= 1 + 1e-5).all()
    top1 = logit_lens(model, IDS)[:, -3:]
    single = probs[..., 0] > probs[..., 1]  # no tie at the top
    assert torch.equal(ids[..., 0][single], top1[single])


def test_logit_lens_at_1024_positions(peaked_dir):
    model = load(peaked_dir, torch.bfloat16)
    ids = some_ids(model, 1024)
    top1 = logit_lens(model, ids)
    assert top1.shape == (model.config.num_hidden_layers + 1, 1024)
    assert torch.equal(top1[-1], logits_of(model, ids).argmax(-1))


# --- the KV cache -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 40])
def test_a_cached_step_gives_the_logits_of_recomputing_everything(pair32, n):
    from transformers import DynamicCache

    from chapter1.logits import logits
    model, _ = pair32
    ids = IDS[:n]
    cache = DynamicCache(config=model.config)
    logits(model, ids, cache)  # the prefill fills the cache
    assert cache.get_seq_length() == n
    again = kvcache.last_step_cached(model, cache, ids)
    assert cache.get_seq_length() == n  # the last position dropped, then appended again
    whole = logits(model, ids)[-1]
    assert (again - whole).abs().max() <= 1e-4
    assert not torch.equal(again, logits(model, ids[:-1] or ids)[-1]) or n == 1


# --- the Qwen3-0.6B shape (random weights, bf16): ~35 s to build, run on its own ------------

def test_qwen3_0_6b_shape_in_bfloat16(tmp_path_factory, record_property):
    start = time.perf_counter()
    path = tiny_model.build(tmp_path_factory.mktemp("chapter2_qwen3"), shape="qwen3-0.6b")
    record_property("build_seconds", round(time.perf_counter() - start, 1))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.bfloat16).eval()
    ids = some_ids(model, 24)
    layer = model.model.layers[0]
    x = embeddings.embed(model, ids)
    q, k, v = attn.project(layer, x)
    assert layer.self_attn.q_proj.out_features != model.config.hidden_size
    assert q.shape == (model.config.num_attention_heads, 24, model.config.head_dim)
    assert k.shape == (model.config.num_key_value_heads, 24, model.config.head_dim)

    ours, theirs = forward_by_hand(model, ids), logits_of(model, ids)
    agree = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
    record_property("top1_agreement_with_sdpa", agree)
    assert relative(ours, theirs) < 0.05 and agree >= 0.9
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    assert torch.equal(ours, logits_of(eager, ids))  # same token at every position
    assert model.config._attn_implementation == "sdpa"

    weights = attention_weights(model, ids, model.config.num_hidden_layers - 1)
    assert weights.shape == (model.config.num_attention_heads, 24, 24)
    assert torch.equal(logit_lens(model, ids)[-1], theirs.argmax(-1))
    record_property("total_seconds", round(time.perf_counter() - start, 1))
