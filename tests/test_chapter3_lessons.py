"""Chapter 3's lesson functions against references: softmax attention, the library's own
attention and generate(), the model's parameters, counted FLOPs, and properties of the
accept/reject rule of speculative decoding."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, DynamicCache, Qwen3Config, Qwen3ForCausalLM

from chapter2.attention import angles, qkv
from chapter2.rmsnorm import norm
from chapter3 import flash, paged, quantize, roofline, speculative
from token_by_token.sequence import tokenize

TEXT = "The quick brown fox jumps over the lazy dog, and the quick brown fox jumps again"


# --- 1. the roofline --------------------------------------------------------------------

def test_bytes_per_token_is_every_weight_once_a_tied_table_once(loaded):
    model = loaded.model
    storages = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        storages[p.untyped_storage().data_ptr()] = p.untyped_storage().nbytes()
    assert roofline.bytes_per_token(model) == sum(storages.values())
    every_name = sum(p.nbytes for _, p in model.named_parameters(remove_duplicate=False))
    table = model.model.embed_tokens.weight
    assert model.lm_head.weight is table  # tied: the table would count twice by name
    assert every_name - roofline.bytes_per_token(model) == table.nbytes


def test_bytes_per_token_counts_an_untied_output_layer_and_the_dtype():
    config = Qwen3Config(vocab_size=128, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=16, tie_word_embeddings=False)
    model = Qwen3ForCausalLM(config)
    numbers = sum(p.numel() for p in model.parameters())
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert roofline.bytes_per_token(model) == 4 * numbers
    assert roofline.bytes_per_token(model.to(torch.bfloat16)) == 2 * numbers


def test_the_multiply_adds_are_what_torch_counts_for_a_decode_step(loaded):
    """torch's FLOP counter, run on one cached step: 2 FLOPs per multiply-add."""
    from torch.utils.flop_counter import FlopCounterMode
    model = loaded.model
    ids = tokenize(loaded.tokenizer, TEXT)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(torch.tensor([ids[:-1]]), cache=cache)
        with FlopCounterMode(display=False) as counter:
            model(torch.tensor([ids[-1:]]), cache=cache)
    context = len(ids)
    expected = roofline.matrix_multiply_adds(model) + roofline.attention_multiply_adds(
        model, context)
    assert counter.get_total_flops() == 2 * expected


def test_prefill_multiply_adds_add_up_the_positions(loaded):
    model, n = loaded.model, 7
    output = model.lm_head.weight.numel()
    by_position = sum(roofline.matrix_multiply_adds(model) - output
                      + roofline.attention_multiply_adds(model, i + 1) for i in range(n))
    assert roofline.prefill_multiply_adds(model, n) == by_position + output
    assert roofline.decode_bytes(model, 10) == (roofline.bytes_per_token(model)
                                                + 10 * roofline.kv_bytes_per_position(model))


def test_kv_bytes_per_position_is_what_the_cache_holds(loaded):
    model = loaded.model
    ids = tokenize(loaded.tokenizer, TEXT)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(torch.tensor([ids]), cache=cache)
    held = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert held == len(ids) * roofline.kv_bytes_per_position(model)


def test_the_roof_is_the_lower_of_the_two_limits():
    assert roofline.roof(1.0, 25e9, 300e9) == 25e9
    assert roofline.roof(100.0, 25e9, 300e9) == 300e9
    assert roofline.roof(12.0, 25e9, 300e9) == 300e9  # the ridge: 12


# --- 3. attention by blocks ---------------------------------------------------------------

@pytest.mark.parametrize("block", [1, 2, 3, 5, 8, 13, 16, 64])
def test_attention_tiled_equals_softmax_attention(block):
    g = torch.Generator().manual_seed(block)
    q, k, v = (torch.randn(3, 13, 8, generator=g) * 3 for _ in range(3))
    tiled = flash.attention_tiled(q, k, v, block)
    assert tiled.dtype == torch.float32 and tiled.shape == (3, 13, 8)
    torch.testing.assert_close(tiled, flash.attention_plain(q, k, v), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tiled, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-5, rtol=1e-5)


def test_attention_tiled_on_a_real_layer_equals_the_librarys_attention(loaded):
    """q, k, v of the last layer of the tiny model (what it reads in the library's forward),
    normed, turned and shared out by Chapter 2's lessons."""
    model = loaded.model
    ids = tokenize(loaded.tokenizer, TEXT)
    with torch.inference_mode():
        x = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-2][0]
        layer = model.model.layers[-1]
        q, k, v = qkv(layer, norm(layer.input_layernorm, x), *angles(model, len(ids)))
        reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                   is_causal=True)
        for block in (1, 4, 7, len(ids), 64):
            tiled = flash.attention_tiled(q, k, v, block)
            assert float((tiled - reference).abs().max()) < 1e-5


def test_the_first_layers_q_k_v_by_the_librarys_modules_are_the_lessons_and_the_cache(loaded):
    """first_layer_qkv() calls the library's modules (no forward): the same q, k, v as
    Chapter 2's lessons compute from the weights, and the keys and values the library's own
    forward leaves in its KV cache for layer 0."""
    model = loaded.model
    ids = tokenize(loaded.tokenizer, TEXT)
    with torch.inference_mode():
        q, k, v = flash.first_layer_qkv(model, ids)
        layer = model.model.layers[0]
        x = norm(layer.input_layernorm, model.model.embed_tokens(torch.tensor(ids)))
        lessons = qkv(layer, x, *angles(model, len(ids)))
        cache = DynamicCache(config=model.config)
        model(torch.tensor([ids]), cache=cache)
    heads, kv_heads = q.shape[0], model.config.num_key_value_heads
    assert q.shape == k.shape == v.shape == (heads, len(ids), model.config.head_dim)
    for mine, theirs in zip((q, k, v), lessons, strict=True):
        assert float((mine.float() - theirs.float()).abs().max()) <= 0.02 * float(
            theirs.float().abs().max())  # bf16: the lessons round in their own order
    assert torch.equal(k[:: heads // kv_heads], cache.layers[0].keys[0])
    assert torch.equal(v[:: heads // kv_heads], cache.layers[0].values[0])


def test_the_block_used_keeps_the_blocks_few():
    assert flash.effective_block(4, 17) == 4
    assert flash.effective_block(1, 1024) == 8  # 128 blocks at most
    assert math.ceil(1000 / flash.effective_block(1, 1000)) <= flash.MOST_BLOCKS


# --- 4. quantization ----------------------------------------------------------------------

def weights_to_quantize():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 256, generator=g) * 0.05
    w[3] = 0.0  # a row of zeros
    w[5, 7] = -2.0  # an outlier
    return w


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantize_int8_is_within_half_a_step(dtype):
    w = weights_to_quantize().to(dtype)
    q, scale = quantize.quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape
    assert scale.shape == (w.shape[0],) and scale.is_floating_point()
    back = q * scale[:, None]
    assert torch.all((back - w.float()).abs() <= scale[:, None] / 2 + 1e-7)
    assert int(q.abs().max()) == 127
    assert torch.equal(q[3], torch.zeros_like(q[3]))
    torch.testing.assert_close(quantize.dequantize(q, scale), back)


def test_quantize_int8_on_every_matrix_of_the_tiny_model(loaded):
    for _, _, linear in quantize.matrices(loaded.model):
        q, scale = quantize.quantize_int8(linear.weight)
        error = (q * scale[:, None] - linear.weight.float()).abs()
        assert torch.all(error <= scale[:, None] / 2 * (1 + 1e-5))  # float32 rounding


def test_four_bit_groups_are_within_half_a_step_of_their_group():
    w = weights_to_quantize()
    q, scale = quantize.quantize_groups(w, group=128)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (24, 2)
    assert int(q.min()) >= -7 and int(q.max()) <= 7
    back = quantize.dequantize_groups(q, scale)
    steps = scale.repeat_interleave(128, dim=1)
    assert torch.all((back - w).abs() <= steps / 2 + 1e-7)
    # the outlier coarsens its own group only: the row's other group keeps fine steps
    assert scale[5, 1] < scale[5, 0] / 10


def test_the_group_divides_every_row():
    assert [quantize.group_for(n) for n in (64, 128, 192, 576, 1024, 3072)] == [
        64, 128, 64, 64, 128, 128]


@pytest.mark.parametrize("lazy", [False, True])
def test_the_quantized_twin_shares_what_it_does_not_quantize(loaded, lazy):
    """A twin keeps the integers (for the timed steps) or makes them at each product (to read
    a text): the same logits either way; the loaded model never changes."""
    model = loaded.model
    before = {name: p.clone() for name, p in model.named_parameters()}
    built = quantize.probe(model, "test-twin", "4-bit")
    assert built.kernel and built.check < 0.05  # PyTorch's kernel = the lessons' product
    twin = quantize.quantized_twin(model, "4-bit", kernel=True, lazy=lazy)
    assert twin.model.embed_tokens.weight is model.model.embed_tokens.weight
    assert twin.model.norm.weight is model.model.norm.weight
    quantized = quantize.modules_of(twin)
    assert len(quantized) == len(quantize.matrices(model)) == 7 * len(model.model.layers)
    if lazy:
        assert all(not hasattr(module, "q") for _, _, module in quantized)  # nothing kept
    else:
        assert all(module.q.dtype == torch.uint8 for _, _, module in quantized)  # 2 per byte
    ids = tokenize(loaded.tokenizer, TEXT)
    with torch.inference_mode():
        ours, theirs = model(torch.tensor([ids])).logits, twin(torch.tensor([ids])).logits
        resident = quantize.quantized_twin(model, "4-bit", kernel=True)
        assert torch.equal(theirs, resident(torch.tensor([ids])).logits)
    assert not torch.equal(ours, theirs)  # quantized: close, not equal
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert all(isinstance(module, torch.nn.Linear) for _, _, module in
               quantize.matrices(model))  # the loaded model is untouched


def test_kl_divergence_and_perplexity():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(quantize.kl_divergence(logits, logits), torch.zeros(2), atol=1e-6)
    assert float(quantize.kl_divergence(logits, logits.flip(-1))[0]) > 0.5
    bits = quantize.surprisals(logits[1:], torch.tensor([2]))
    assert torch.allclose(bits, torch.tensor([math.log2(3)]))
    assert float(quantize.perplexity(bits)) == pytest.approx(3.0)


def test_the_comparison_of_the_two_models_is_the_whole_table_formulas(loaded):
    """compare() reads the scores CHUNK positions at a time in the model's dtype (for the
    peak memory): its numbers are the plain formulas' over the whole text in float32."""
    from token_by_token.memo import Memo
    model = loaded.model
    ids = tokenize(loaded.tokenizer, TEXT * 3)
    assert len(ids) > 2 * quantize.CHUNK
    twin = quantize.quantized_twin(model, "4-bit", kernel=False, lazy=True)
    found = quantize.compare(model, twin, ids, "4-bit", Memo())
    with torch.inference_mode():
        a, b = model(torch.tensor([ids])).logits[0].float(), twin(torch.tensor([ids])).logits[0]
        b = b.float()
    following = torch.tensor(ids[1:])
    assert found.largest_gap == pytest.approx(float((a - b).abs().max()), rel=0, abs=0)
    assert found.largest_logit == float(a.abs().max())
    assert found.agree == int((a.argmax(-1) == b.argmax(-1)).sum())
    torch.testing.assert_close(found.kl, quantize.kl_divergence(a, b), rtol=0, atol=1e-6)
    assert found.perplexity == pytest.approx(
        (float(quantize.perplexity(quantize.surprisals(a[:-1], following))),
         float(quantize.perplexity(quantize.surprisals(b[:-1], following)))), rel=1e-6)


# --- 5. speculative decoding --------------------------------------------------------------

def distributions(k, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.softmax(torch.randn(k + 1, vocab, generator=g) * 1.5, -1),
            torch.softmax(torch.randn(k, vocab, generator=g) * 1.5, -1))


def test_verify_keeps_the_models_distribution_of_the_first_token():
    """Over many seeded rounds, each with a draft drawn from q, the first id verify() returns
    follows p[0] (chi-square test, 5 degrees of freedom: 20.5 is the 0.999 quantile), while
    the draft's own first tokens follow q[0] and fail the same test."""
    p, q = distributions(3, 6, seed=1)
    rounds = 20_000
    first, drafted = torch.zeros(6), torch.zeros(6)
    for r in range(rounds):
        g = torch.Generator().manual_seed(r)
        draft = [speculative.draw(q[i], g) for i in range(3)]
        kept = speculative.verify(p, q, draft, g)
        assert 1 <= len(kept) <= 4 and kept[:-1] == draft[: len(kept) - 1]
        first[kept[0]] += 1
        drafted[draft[0]] += 1

    def chi_square(counts, probs):
        expected = probs * rounds
        return float(((counts - expected) ** 2 / expected).sum())

    assert chi_square(first, p[0]) < 20.5
    assert chi_square(drafted, p[0]) > 100  # the test can tell q from p
    assert 0.5 * float((first / rounds - p[0]).abs().sum()) < 0.02


def test_verify_returns_one_to_k_plus_one_ids_and_all_when_the_draft_is_the_model():
    p, _ = distributions(4, 10, seed=2)
    draft = [int(p[i].argmax()) for i in range(4)]
    kept = speculative.verify(p, p[:4], draft, torch.Generator().manual_seed(0))
    assert kept[:4] == draft and len(kept) == 5  # q = p: every guess is kept
    sure = torch.zeros(1, 10)
    sure[0, 3] = 1.0
    only = speculative.verify(sure, torch.zeros(0, 10), [], torch.Generator().manual_seed(0))
    assert only == [3]  # no guesses: one token from p[0]
    greedy = torch.nn.functional.one_hot(torch.tensor([1, 2, 3]), 10).float()
    assert speculative.verify(greedy, greedy[:2], [1, 5], torch.Generator()) == [1, 2]


def test_verify_uses_only_its_generator():
    p, q = distributions(4, 50, seed=3)
    q = (q + p[:4]) / 2  # a draft near the model: some guesses kept, some refused
    draft = [int(q[i].argmax()) for i in range(4)]
    for seed in range(20):
        outs = []
        for global_seed in (0, 1, 2):
            torch.manual_seed(global_seed)
            before = torch.get_rng_state()
            outs.append(speculative.verify(p, q, draft, torch.Generator().manual_seed(seed)))
            assert torch.equal(before, torch.get_rng_state())  # torch's global stream unused
        assert outs[0] == outs[1] == outs[2]
    g = torch.Generator().manual_seed(7)
    state = g.get_state().clone()
    speculative.verify(p, q, draft, g)
    assert not torch.equal(state, g.get_state())  # it drew from the generator it was given
    seen = {tuple(speculative.verify(p, q, draft, torch.Generator().manual_seed(s)))
            for s in range(40)}
    assert len(seen) > 1


def test_a_rule_that_always_accepts_is_caught():
    """Break the rule (keep every guess) and the first token follows q, not p."""
    p, q = distributions(1, 4, seed=5)
    counts = torch.zeros(4)
    for r in range(4000):
        g = torch.Generator().manual_seed(r)
        x = speculative.draw(q[0], g)
        counts[[x, speculative.draw(p[1], g)][0]] += 1  # "verify" that keeps everything
    assert 0.5 * float((counts / 4000 - p[0]).abs().sum()) > 0.05


@pytest.fixture(scope="module")
def float32_model(tiny_dir):
    """The tiny model in float32: reading several tokens in one forward and one at a time
    then give the same argmax (in bfloat16 the two orders of summing can swap near-ties)."""
    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()


@pytest.mark.parametrize("draft", ["layers", "lookup"])
def test_greedy_speculative_decoding_is_the_models_greedy_continuation(loaded, float32_model,
                                                                       draft):
    model = float32_model
    ids = tokenize(loaded.tokenizer, TEXT)
    tokens = 20
    with torch.inference_mode():
        expected = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=tokens,
                                  min_new_tokens=tokens)[0].tolist()
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(torch.tensor([ids]), cache=cache)
    small = speculative.first_layers(model, 1) if draft == "layers" else None
    out, rounds, _, _ = speculative.speculate(model, small, cache, ids, tokens, 4, 0.0,
                                              torch.Generator().manual_seed(0))
    assert out == expected
    assert all(1 <= len(r.kept) <= len(r.guesses) + 1 for r in rounds)
    assert sum(len(r.kept) for r in rounds) >= tokens
    assert cache.get_seq_length() == len(ids)  # the learner's cache was copied, not used


def test_refused_guesses_are_forgotten(loaded, float32_model):
    """A draft whose first guess is right and second wrong: each round keeps one guess and
    the model's own next token, the cache forgets the refused guess, and the result is still
    the greedy continuation."""
    model = float32_model
    ids = tokenize(loaded.tokenizer, TEXT)
    with torch.inference_mode():
        expected = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=14,
                                  min_new_tokens=14)[0].tolist()
    vocab = model.config.vocab_size

    def guess(seq):
        right, wrong = expected[len(seq)], (expected[len(seq) + 1] + 1) % vocab
        guesses = [right, wrong, wrong]
        return guesses, F.one_hot(torch.tensor(guesses), vocab).float()

    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(torch.tensor([ids[:-1]]), cache=cache)
    out = list(ids)
    while len(out) < len(expected) - 2:
        out, guesses, p, q = speculative.speculative_step(model, cache, out, guess, 0.0,
                                                          torch.Generator().manual_seed(0))
        assert cache.get_seq_length() == len(out) - 1
    assert out == expected[: len(out)] and len(out) > len(ids) + 4


def test_the_first_layers_draft_is_the_logit_lens(loaded):
    model = loaded.model
    ids = tokenize(loaded.tokenizer, TEXT)
    draft = speculative.first_layers(model, 1)
    assert len(model.model.layers) == model.config.num_hidden_layers == 2  # untouched
    assert draft.model.layers[0] is not model.model.layers[0]
    assert draft.model.layers[0].self_attn.q_proj.weight is \
        model.model.layers[0].self_attn.q_proj.weight
    with torch.inference_mode():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[1]
        lens = model.lm_head(model.model.norm(hidden))
        assert torch.equal(draft(torch.tensor([ids])).logits, lens)


def test_prompt_lookup_copies_what_followed_the_last_tokens():
    ids = [5, 6, 7, 8, 9, 1, 5, 6, 7]
    guesses, q = speculative.prompt_lookup(ids, 3, vocab=10)
    assert guesses == [8, 9, 1] and torch.equal(q.argmax(-1), torch.tensor([8, 9, 1]))
    assert speculative.prompt_lookup([1, 2, 3], 3, vocab=10)[0] == []
    assert speculative.prompt_lookup([4, 2, 4], 2, vocab=10)[0] == [2, 4]


# --- 6. the paged KV cache ----------------------------------------------------------------

@pytest.mark.parametrize("length, size", [(13, 4), (16, 4), (1, 16), (40, 16), (7, 1)])
def test_paged_attention_equals_the_contiguous_cache(length, size):
    g = torch.Generator().manual_seed(length)
    keys, values = torch.randn(2, length, 8, generator=g), torch.randn(2, length, 8, generator=g)
    q = torch.randn(4, 1, 8, generator=g)
    needed = paged.blocks_needed(length, size)
    pool_blocks = 2 * needed + 3
    table = torch.randperm(pool_blocks, generator=g)[:needed].tolist()
    k_pool = torch.full((pool_blocks, 2, size, 8), float("nan"))  # unused slots poison
    v_pool = torch.full_like(k_pool, float("nan"))
    paged.write_paged(k_pool, table, keys)
    paged.write_paged(v_pool, table, values)
    assert torch.equal(paged.read_paged(k_pool, table, length), keys)
    out = paged.paged_attention(q, k_pool, v_pool, table, length)
    from chapter2.attention import share_kv
    reference = F.scaled_dot_product_attention(q, share_kv(keys, 4), share_kv(values, 4))
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=1e-5)


def test_paged_memory_sums():
    assert paged.blocks_needed(17, 16) == 2 and paged.blocks_needed(16, 16) == 1
    assert paged.contiguous_bytes(3, 1024, 10) == 30_720
    assert paged.paged_bytes([17, 16, 1], 16, 10) == 4 * 16 * 10
    # a 32-position prefix shared by three sequences of 40: 2 blocks once, 1 block each
    assert paged.paged_bytes([40] * 3, 16, 10, shared=32) == (2 + 3) * 16 * 10
    assert paged.paged_bytes([40] * 3, 16, 10, shared=20) == (1 + 3 * 2) * 16 * 10


@pytest.mark.parametrize("scheme", quantize.SCHEMES)
def test_a_quantized_matrix_multiplies_as_the_lessons_dequantize(loaded, scheme):
    """Without a kernel, the module multiplies by the lessons' dequantized matrix; PyTorch's
    integer kernel gives the same product, up to bfloat16 rounding."""
    for _, _, linear in quantize.matrices(loaded.model)[:3]:
        x = torch.randn(5, linear.in_features, dtype=torch.bfloat16)
        slow = quantize.Quantized(linear, scheme, kernel=False)
        if scheme == "int8":
            weight = quantize.dequantize(*quantize.quantize_int8(linear.weight))
        else:
            weight = quantize.dequantize_groups(*quantize.quantize_groups(
                linear.weight, quantize.group_for(linear.in_features)))
        exact = x.float() @ weight.T
        lesson = (quantize.quantize_int8(linear.weight) if scheme == "int8" else
                  quantize.quantize_groups(linear.weight, quantize.group_for(linear.in_features)))
        assert torch.equal(slow.q, lesson[0]) and torch.equal(slow.scale, lesson[1])
        assert torch.equal(slow(x), (x @ weight.to(torch.bfloat16).T))
        fast = quantize.Quantized(linear, scheme, kernel=True)(x).float()
        assert float((fast - exact).abs().max()) <= 0.01 * float(exact.abs().max())


@pytest.mark.parametrize("scheme", quantize.SCHEMES)
def test_quantizing_a_few_rows_at_a_time_gives_the_lessons_integers(scheme):
    linear = torch.nn.Linear(1024, 600, bias=False).to(torch.bfloat16)  # 5 chunks of rows
    module = quantize.Quantized(linear, scheme, kernel=False)
    whole = (quantize.quantize_int8(linear.weight) if scheme == "int8" else
             quantize.quantize_groups(linear.weight, 128))
    assert torch.equal(module.q, whole[0]) and torch.equal(module.scale, whole[1])


@pytest.mark.parametrize("out_features", [3072, 592])  # whole blocks of 64 rows, and not
def test_the_4_bit_kernel_packs_a_few_rows_at_a_time_as_the_whole_matrix(out_features):
    """Quantized packs each chunk of rows for PyTorch's 4-bit kernel as it goes: the same
    bytes as packing the lessons' integers of the whole matrix at once."""
    linear = torch.nn.Linear(1024, out_features, bias=False).to(torch.bfloat16)
    module = quantize.Quantized(linear, "4-bit", kernel=True)
    q, scale = quantize.quantize_groups(linear.weight, 128)
    whole = torch.ops.aten._convert_weight_to_int4pack_for_cpu((q + 8).to(torch.int32), 1)
    assert torch.equal(module.q, whole)
    assert torch.equal(module.scale[..., 0], scale.T)


@pytest.mark.parametrize("scheme", quantize.SCHEMES)
@pytest.mark.parametrize("lazy", [False, True])
def test_many_rows_multiply_by_the_lessons_dequantized_matrix(loaded, scheme, lazy):
    """Past MANY_ROWS rows at once a quantized matrix multiplies by the lessons' dequantized
    matrix (faster than the kernels then), below by PyTorch's kernel: the same product, up to
    bfloat16 rounding; the 4-bit kernel's packed integers (kept) are never dequantized."""
    linear = quantize.matrices(loaded.model)[0][2]
    module = quantize.Quantized(linear, scheme, kernel=True, lazy=lazy)
    lesson = quantize.Quantized(linear, scheme, kernel=False)
    x = torch.randn(quantize.MANY_ROWS + 1, linear.in_features, dtype=torch.bfloat16)
    with torch.inference_mode():
        many, few = module(x).float(), module(x[:3]).float()
        exact = lesson(x).float()
    if scheme == "4-bit" and not lazy:  # packed: always the kernel
        assert float((many - exact).abs().max()) <= 0.01 * float(exact.abs().max())
    else:
        assert torch.equal(many, exact)
    assert float((few - exact[:3]).abs().max()) <= 0.01 * float(exact.abs().max())


def test_the_prefill_chunk_section_1_names_is_chapter_1s():
    """Section 1 says Chapter 1 reads a text PREFILL_CHUNK positions per forward, reading the
    engine's constant (a chapter imports no other chapter): it must be Chapter 1's own."""
    from chapter1 import pipeline
    from token_by_token import kvcache
    assert pipeline.PREFILL_CHUNK == kvcache.PREFILL_CHUNK
