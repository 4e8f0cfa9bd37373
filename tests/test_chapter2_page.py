"""Chapter 2's page: the model opened up on the learner's text, every value checked against the
library, numbers read from the loaded model, one forward per change of ids, controls that run
none."""

import re

import pytest
import torch
from helpers import CHAPTER1, CHAPTER2, counting_forwards, page_text, run_app

from chapter1.tokenizer import tokenize
from chapter2 import patterns, pipeline
from token_by_token.memo import Memo
from token_by_token.tokens import markdown_literal, show


def opened_of(at):
    return inside_of(at).layers[at.session_state["layer"]]


def pattern_of(at):
    return at.session_state["_memo"].latest(patterns.PATTERN)


def inside_of(at):
    return at.session_state["_memo"].latest(pipeline.INSIDE)


def test_the_numbers_on_the_page_are_the_loaded_models(loaded):
    at = run_app(CHAPTER2)
    text, config, model = page_text(at), loaded.model.config, loaded.model
    assert f"**{config.num_hidden_layers} layers**" in text
    q = config.num_attention_heads * config.head_dim
    assert f"**{config.num_attention_heads} query heads × {config.head_dim} = {q:,}**" in text
    kv_bytes = (config.num_hidden_layers * 2 * config.num_key_value_heads * config.head_dim
                * model.dtype.itemsize)  # bytes per number: the dtype the model runs in
    assert f"**{kv_bytes:,} bytes per token**" in text
    assert f"{config.hidden_size:,} → {config.intermediate_size:,} → {config.hidden_size:,}" \
        in text
    total = sum(p.numel() for p in model.parameters())  # tied: the table counted once
    assert f"**{total:,} in all**" in text
    assert f"`rope_theta` = {config.rope_parameters['rope_theta']:,.0f}" in text
    assert "`tied(model)` is **True**" in text


def test_every_intermediate_equals_the_librarys_in_every_layer(loaded):
    at = run_app(CHAPTER2)
    layers = inside_of(at).layers
    assert [opened.layer for opened in layers] == list(range(len(loaded.model.model.layers)))
    for opened in layers:
        assert len(opened.checks) == 12
        for what, (_, difference, size) in opened.checks.items():
            relative = 0.01 if loaded.model.dtype == torch.bfloat16 else 1e-5  # the dtype's
            assert difference <= relative * max(size, 1.0), (opened.layer, what, difference)
    for layer in range(len(layers)):
        at.sidebar.slider(key="layer").set_value(layer).run()
        assert pattern_of(at).layer == layer


def test_the_logits_by_hand_equal_the_librarys(loaded):
    at = run_app(CHAPTER2)
    seen = inside_of(at)
    assert seen.agree == len(seen.ids)
    assert float(seen.logit_gaps.max()) < 0.05
    # and the library's top-1 is what the model itself says
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([list(seen.ids)])).logits[0]
    assert seen.top_library.tolist() == logits.argmax(-1).tolist()
    assert f"at **{len(seen.ids)} of {len(seen.ids)} positions**" in page_text(at)


def no_mask(scores, window=None):
    """A missing causal mask: every position may read the future."""
    return scores


def interleaved(x):
    """A wrong RoPE: pairs of neighbours (GPT-J style) instead of Qwen's split halves."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


@pytest.mark.parametrize("broken, caught", [
    ("rotate_half", "RoPE (q)"),
    ("causal_mask", "attention weights"),
])
def test_a_wrong_lesson_is_caught_by_the_checks(loaded, monkeypatch, broken, caught):
    import chapter2.attention as attention
    ids = tokenize(loaded.tokenizer, "The quick brown fox jumps over the lazy dog")
    if broken == "rotate_half":
        monkeypatch.setattr(attention, "rotate_half", interleaved)
    else:
        monkeypatch.setattr(patterns, "causal_mask", no_mask)
    seen = pipeline.look_inside(loaded.model, ids, Memo())
    _, difference, size = seen.layers[0].checks[caught]
    assert difference > 0.05 * size


def test_chapter_2_runs_one_forward_per_change_of_ids_and_none_for_its_controls(loaded):
    at = run_app(CHAPTER2)
    with counting_forwards(loaded.model) as calls:
        at.sidebar.slider(key="layer").set_value(1).run()
        at.sidebar.slider(key="head").set_value(3).run()
        at.sidebar.select_slider(key="position").set_value(2).run()
        at.sidebar.slider(key="layer").set_value(0).run()
        assert calls == []
        at.sidebar.text_area(key="text").input("Another text entirely").run()
        ids = tokenize(loaded.tokenizer, "Another text entirely")
        assert calls == [ids, ids[-1:]]  # the ids, then the last one as a cached step (§ 9)
        at.sidebar.slider(key="layer").set_value(1).run()
        assert len(calls) == 2
    assert not at.exception


def test_the_controls_change_what_is_shown(loaded):
    at = run_app(CHAPTER2)
    at.sidebar.slider(key="layer").set_value(1).run()
    assert opened_of(at).layer == 1
    assert any("layer 1 reads a vector" in m.value for m in at.markdown)
    at.sidebar.slider(key="head").set_value(2).run()
    at.sidebar.select_slider(key="position").set_value(3).run()
    ids = list(inside_of(at).ids)
    token = markdown_literal(show(loaded.tokenizer, ids[3]))
    assert any(f"Query head 2 (pick another in the sidebar), at position 3 “{token}”" in m.value
               for m in at.markdown)
    [top] = [d.value for d in at.table if "weight" in d.value.columns]
    weights = pattern_of(at).row(2, 3)
    assert top["position"].tolist()[0] == int(weights.argmax())
    assert all(p <= 3 for p in top["position"])  # the causal mask: nothing after position 3


@pytest.mark.parametrize("text", [
    "",
    " ".join(["word"] * 1100),
    "👍🏽 family 👨‍👩‍👧 and 🦙",
    "**bold** $x^2$ :red[alarm] <script>alert(1)</script> [a](javascript:x)",
    "chat<|im_start|>user<|im_end|><think>",
])
def test_hostile_texts_render_without_a_traceback(loaded, text):
    at = run_app(CHAPTER2, text=text)
    assert not at.exception
    if not text:
        assert any("Type some text" in i.value for i in at.info)
        return
    ids = inside_of(at).ids
    assert len(ids) <= loaded.max_tokens
    token = markdown_literal(show(loaded.tokenizer, ids[-1]))
    assert any(f"“{token}” (id {ids[-1]}" in m.value for m in at.markdown)


def test_chapter_2_renders_on_the_pocket_model(monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "pocket")
    at = run_app(CHAPTER2)
    from token_by_token.model import load
    config = load().model.config
    assert config.num_attention_heads // config.num_key_value_heads == 3
    assert f"**{config.num_hidden_layers} layers**" in page_text(at)
    assert "in groups of 3" in page_text(at)
    for _, difference, size in opened_of(at).checks.values():
        assert difference <= 0.01 * max(size, 1.0)
    assert inside_of(at).agree == len(inside_of(at).ids)


def test_attention_patterns_are_the_layers_weights_masked_above_the_diagonal(loaded):
    from chapter2.attention import attention_weights
    from chapter2.patterns import pattern_table, top_keys, window_of
    at = run_app(CHAPTER2)
    pattern, ids = pattern_of(at), list(inside_of(at).ids)
    # the kept rows are those of the whole table (the contract's attention_weights). The
    # pattern takes its scores in float32 (as the model's fused attention does), the
    # contract in the model's dtype (as the library's eager attention does): in bfloat16
    # they differ by its rounding of the scores, in float32 by the last bits
    whole = attention_weights(loaded.model, ids, pattern.layer)
    tolerance = 5e-3 if loaded.model.dtype == torch.bfloat16 else 1e-5
    assert pattern.rows == range(max(len(ids) - patterns.ROWS, 0), len(ids))
    assert (pattern.weights - whole[:, pattern.rows]).abs().max() < tolerance
    rows = window_of(len(ids) - 1, 8)
    assert list(rows) == list(range(len(ids) - 8, len(ids)))
    table = pattern_table(loaded.tokenizer, ids, pattern, range(4), rows)
    assert (table[table["key"] > table["query"]]["weight"] == 0).all()  # the causal mask
    assert set(table["key"]) == {0, *rows}
    for _, cell in table.sample(20, random_state=0).iterrows():
        assert cell["weight"] == pytest.approx(float(pattern.row(cell["head"], cell["query"])
                                                     [cell["key"]]), abs=1e-6)
        assert cell["weight"] == pytest.approx(float(whole[cell["head"], cell["query"],
                                                           cell["key"]]), abs=tolerance)
    top = top_keys(loaded.tokenizer, ids, pattern, 1, rows)
    assert [int(t.split(":")[0]) for t in top["#1"]] == \
        [int(pattern.row(1, r)[: r + 1].argmax()) for r in rows]
    sink = float(whole[:, 1:, 0].mean())
    assert opened_of(at).sink == pytest.approx(sink, abs=1e-3)
    assert any(f"**{opened_of(at).sink:.0%}** of the attention goes to position 0" in m.value
               for m in at.markdown)
    with counting_forwards(loaded.model) as calls:
        at.sidebar.slider(key="window").set_value(4).run()
    assert calls == [] and not at.exception


def test_all_heads_are_one_picture_of_their_weights_a_row_per_kv_head(loaded):
    """Every head's square shows its own weights, in the heatmap's colours, in the row of
    its key/value head; the page draws the picture pixel for pixel."""
    from chapter2.attention import kv_head_of
    from chapter2.patterns import GAP, heads_picture, window_of
    from token_by_token.charts import weight_colours
    at = run_app(CHAPTER2)
    pattern, config = pattern_of(at), loaded.model.config
    rows = window_of(pattern.rows.stop - 1, 5)
    keys = sorted({0, *rows})
    picture = heads_picture(pattern, rows, config)
    cell = max(2, 96 // len(keys))
    group = config.num_attention_heads // config.num_key_value_heads
    tall, wide = len(rows) * cell + GAP, len(keys) * cell + GAP
    assert picture.shape == (config.num_key_value_heads * tall, group * wide, 3)
    for head in range(config.num_attention_heads):
        top = kv_head_of(head, config) * tall
        left = (head - kv_head_of(head, config) * group) * wide  # its place in the group
        for i, row in enumerate(rows):
            for j, key in enumerate(keys):
                colour = picture[top + i * cell + cell - 1, left + j * cell]
                weight = pattern.row(head, row)[key].numpy()
                assert (colour == weight_colours(weight)).all(), (head, row, key)
    assert (weight_colours(torch.tensor([0.0, 1.0]).numpy()) ==
            [[0xee, 0xf1, 0xfb], [0, 0, 0x80]]).all()  # the heatmap's scale's two ends
    [image] = at.get("image")  # lossless: the colours are the weights
    assert image.value[0].endswith(".png") and image.captions[0].startswith(
        f"A row per key/value head, 0 to {config.num_key_value_heads - 1}")


def test_a_pattern_keeps_a_window_of_rows_at_the_cap(loaded):
    """At 1,024 positions the picked layer keeps ROWS query rows, not the whole table."""
    at = run_app(CHAPTER2, text=" ".join(["word"] * 1100))
    pattern, n = pattern_of(at), len(inside_of(at).ids)
    assert n == loaded.max_tokens and not at.exception
    heads = loaded.model.config.num_attention_heads
    assert pattern.weights.shape == (heads, patterns.ROWS, n)
    at.sidebar.select_slider(key="position").set_value(10).run()
    assert pattern_of(at).rows == range(0, 11) and pattern_of(at).weights.shape == (heads, 11, 11)
    assert torch.allclose(pattern_of(at).weights.sum(-1), torch.ones(heads, 11), atol=1e-5)


def lens_table(at):
    [table] = [d.value for d in at.table if "read from" in d.value.columns]
    return table


def test_the_logit_lens_ends_at_the_models_prediction_and_its_controls_run_no_forward(loaded):
    from chapter2.lens import COLUMNS, LENS, logit_lens, mid_lens
    at = run_app(CHAPTER2)
    seen, layers = inside_of(at), loaded.model.config.num_hidden_layers
    ids = list(seen.ids)
    assert len(lens_table(at)) == layers + 1
    last = len(ids) - 1
    assert lens_table(at)["top-1"].iloc[-1] == show(loaded.tokenizer, int(seen.top_library[last]))
    kept = at.session_state["_memo"].get(LENS, seen.ids)
    columns = range(max(len(ids) - COLUMNS, 0), len(ids))
    top1, halfway = logit_lens(loaded.model, ids), mid_lens(loaded.model, ids)
    for p in columns:  # every column of the grid is the lens of that position
        assert kept[p, "after"][1][:, 0].tolist() == top1[:, p].tolist()
    assert f"in **{len(columns)} of {len(columns)}** columns" in page_text(at)
    with counting_forwards(loaded.model) as calls:
        at.sidebar.toggle(key="halfway").set_value(True).run()
        at.sidebar.select_slider(key="position").set_value(1).run()
    assert calls == [] and not at.exception
    table = lens_table(at)
    assert len(table) == 2 * layers + 1
    assert table["read from"].tolist()[:3] == ["embeddings", "layer 0 · halfway", "after layer 0"]
    assert table["top-1"].iloc[-1] == show(loaded.tokenizer, int(seen.top_library[1]))
    middle = table[table["read from"].str.endswith("halfway")]["top-1"].tolist()
    assert middle == [show(loaded.tokenizer, int(i)) for i in halfway[:, 1]]


def test_the_pattern_reads_its_keys_from_chapter_ones_cache_or_computes_them(loaded):
    """After Chapter 1 (its forward of the same ids holds every layer's keys, normed and
    turned) a layer change reads the keys there; without it, it computes them: the same
    weights."""
    from chapter1.pipeline import FORWARD
    at = run_app(CHAPTER2, text=" ".join(["word"] * 90))  # a window after position 0
    last = loaded.model.config.num_hidden_layers - 1
    at.sidebar.slider(key="layer").set_value(last).run()
    seen, page = inside_of(at), pattern_of(at)
    assert at.session_state["_memo"].get(FORWARD, seen.ids) is not None
    assert page.layer == last and page.rows.start > 0
    computed = patterns.pattern_of(loaded.model, seen, last, len(seen.ids) - 1, Memo())
    assert computed.rows == page.rows
    assert (page.weights - computed.weights).abs().max() < 1e-3


def test_the_lens_grid_scores_one_column_at_a_time(loaded, monkeypatch):
    """Each column's scores ([depths, vocab]) are made and dropped before the next: 8 columns
    at once took ~350 MB at the peak on the Qwen3-0.6B shape."""
    import chapter2.lens as lens
    from chapter2.lens import COLUMNS
    widths, lens_of = [], lens.lens

    def counted(model, x):
        widths.append(x.shape[-2])  # positions scored at once
        return lens_of(model, x)
    monkeypatch.setattr(lens, "lens", counted)
    at = run_app(CHAPTER2)
    assert not at.exception
    assert widths == [1] * min(COLUMNS, len(inside_of(at).ids))


def test_the_lens_lesson_shows_the_rightmost_column_and_only_it_is_traced(loaded, monkeypatch):
    """A trace describes every value (a column's 4.4M probabilities on the Qwen3-0.6B
    shape): one column of the grid is traced, the one the lesson shows."""
    import chapter2.lens as lens
    from token_by_token.trace import describe
    calls, traced_of = [], lens.traced
    monkeypatch.setattr(lens, "traced", lambda *a: calls.append(a) or traced_of(*a))
    at = run_app(CHAPTER2)
    assert not at.exception and len(inside_of(at).ids) > 1
    [(_, _, xs, _)] = calls
    rightmost = inside_of(at).stream[:, [len(inside_of(at).ids) - 1]]
    assert torch.equal(xs, rightmost)
    shown = next(c.value for c in at.code if "def lens_top_k" in c.value)
    assert f"xs = {describe(rightmost)}" in shown


def test_the_pushes_of_every_update_add_up_to_the_logit(loaded):
    from chapter2.stream import push
    at = run_app(CHAPTER2)
    seen, model = inside_of(at), loaded.model
    final = seen.stream[-1, -1].float()
    token = int(seen.top_library[-1])
    scale = float(final.pow(2).mean().add(model.model.norm.variance_epsilon).sqrt())
    total = float(push(model, seen.stream[0, -1].float(), token, scale))  # the embedding
    total += sum(float(push(model, u, token, scale)) for opened in seen.layers
                 for u in opened.last)
    with torch.inference_mode():
        logit = float(model.lm_head(model.model.norm(seen.stream[-1, -1]))[token])
    assert total == pytest.approx(logit, abs=0.05 + 0.02 * abs(logit))
    sizes = [float(opened.updates[1, -1]) for opened in seen.layers]
    assert sizes == pytest.approx([float(torch.linalg.vector_norm(o.last[1]))
                                   for o in seen.layers], rel=1e-4)


def test_the_kv_cache_section_reads_the_learners_one_cache_and_the_forward_keeps_none(loaded):
    """The page opened after Chapter 1 (run_app starts there): the learner's KV cache of the
    same ids exists (Chapter 1's forward keeps it in the engine's slot), so Chapter 2's
    forward keeps none (use_cache=False: 117 MB less at the peak at the cap, Qwen3 shape),
    section 9 reads that one and leaves it whole."""
    from chapter1.pipeline import FORWARD
    from token_by_token import kvcache
    uses = []
    hook = loaded.model.register_forward_pre_hook(
        lambda module, args, kwargs: uses.append(kwargs.get("use_cache")), with_kwargs=True)
    try:
        at = run_app(CHAPTER2)
    finally:
        hook.remove()
    seen, memo = inside_of(at), at.session_state["_memo"]
    chapter1 = memo.get(FORWARD, seen.ids)
    assert chapter1 is not None and kvcache.cache_of(memo, seen.ids) is chapter1.cache
    assert uses[-2:] == [False, None]  # Chapter 2's forward, then section 9's cached step
    assert chapter1.cache.get_seq_length() == len(seen.ids)  # whole again after the step
    assert "The cache the model keeps for your" in page_text(at)
    # Chapter 1 goes on from it: Generate appends one id with one cached step
    at.switch_page(CHAPTER1).run()
    at.sidebar.toggle(key="autoregressive").set_value(True).run()
    at.sidebar.button(key="generate").click().run()
    assert not at.exception
    assert memo.latest(FORWARD).ids[:-1] == seen.ids


def test_chapter2_says_the_same_whatever_was_visited_first(loaded):
    """Opened first, Chapter 2's forward keeps the cache as the learner's; opened after
    Chapter 1, it reads Chapter 1's: the page says the same either way (timings aside)."""
    from chapter1.pipeline import FORWARD
    from token_by_token import kvcache
    from token_by_token.state import DEFAULT_TEXT
    first = run_app(CHAPTER2, text="")  # no ids: Chapter 1 ran no forward
    first.sidebar.text_area(key="text").input(DEFAULT_TEXT).run()  # typed in Chapter 2
    memo = first.session_state["_memo"]
    assert memo.latest(FORWARD) is None
    assert kvcache.cache_of(memo, inside_of(first).ids) is not None  # the forward's own
    after = run_app(CHAPTER2)  # Chapter 1 first

    def said(at):
        return [re.sub(r"[\d,.]+ ms|\d+(\.\d+)? s\b", "…", m.value) for m in at.markdown]
    assert said(first) == said(after)


def test_the_kv_cache_section_reads_the_forwards_own_cache(loaded):
    at = run_app(CHAPTER2)
    seen, config = inside_of(at), loaded.model.config
    n, cached = len(seen.ids), inside_of(at).cached
    shape = (1, config.num_key_value_heads, n, config.head_dim)
    assert cached.keys == cached.values == [shape] * config.num_hidden_layers
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim
    assert cached.nbytes == n * per_token * loaded.model.dtype.itemsize
    assert f"**{cached.nbytes:,} bytes**" in page_text(at)
    # one cached step of the last token gives the forward's last row of logits
    with torch.inference_mode():
        whole = loaded.model(torch.tensor([list(seen.ids)])).logits[0, -1].float()
    assert cached.same_top and cached.gap <= 0.02 * float(whole.abs().max())
    assert f"Largest difference from the whole forward's last row of logits: " \
        f"**{cached.gap:.3g}**" in page_text(at)
    # without Chapter 1's forward (a fresh memo), the forward's own cache is read
    own = pipeline.look_inside(loaded.model, list(seen.ids), Memo()).cached
    assert own.keys == cached.keys and own.nbytes == cached.nbytes
    assert own.same_top and own.gap <= 0.02 * float(whole.abs().max())
