"""What a learner's session keeps in memory, counted from the objects it really holds (a walk
of everything reachable from its session state), at the longest allowed input: no autograd
history, the KV cache, the top candidates per position and a few vocabulary-long rows, never
a [positions × vocab] table. (The process's peak RSS on the Qwen3-0.6B shape is a benchmark
number: bench/run.py.)"""

from helpers import CHAPTER2, forward_of, held_bytes, held_tensors, run_app

from chapter1 import ahead
from chapter1.logits import TOP
from chapter1.tokenizer import tokenize

UNCERTAINTY = 4 + 4 + 4 + 8  # per position: entropy, end-of-text and next-id probability, rank


def expected_bytes(loaded, positions: int, warpers: int) -> int:
    """The KV cache (bf16), the top candidates (int64 ids, float32 logits and probabilities)
    and the uncertainty per position,
    logits[0], logits[-1], the model's own probabilities of the next token (Forward.original,
    kept with the forward) and the filtered ones (float32 rows), and each warper's mask of the
    tokens it kept (bool)."""
    config, vocab = loaded.model.config, loaded.vocab_size
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2
    return positions * (kv + TOP * (8 + 4 + 4) + UNCERTAINTY) + 4 * vocab * 4 + warpers * vocab


def session_of(at):
    return at.session_state["_memo"]


def test_the_longest_input_keeps_no_autograd_history_and_no_vocab_table(loaded):
    text = " ".join(["word"] * 1100)  # more tokens than the cap
    at = run_app(text=text)  # default settings: temperature, top-k and top-p warpers
    n = len(tokenize(loaded.tokenizer, text)[: loaded.max_tokens])
    assert n == loaded.max_tokens
    tensors = held_tensors(session_of(at))
    assert all(t.grad_fn is None and not t.requires_grad for t in tensors)
    held = held_bytes(session_of(at))
    assert held == expected_bytes(loaded, n, warpers=3)
    assert held < n * loaded.vocab_size * 4  # less than one full logits table would take


def test_a_generated_token_adds_one_position_to_what_the_session_holds(loaded):
    at = run_app(autoregressive=True)
    before = held_bytes(session_of(at))
    at.sidebar.button(key="generate").click().run()
    config = loaded.model.config
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2
    per_position = kv + TOP * (8 + 4 + 4) + UNCERTAINTY
    # and, while the learner reads, the next step taken ahead (chapter1/ahead.py): a forward
    # of one more position (its KV cache and candidates made anew) and its row of logits
    with_step = held_bytes(session_of(at))
    positions = len(forward_of(at).ids) + 1
    assert ahead.taken_ahead(session_of(at)) is not None
    ahead.drop(session_of(at))
    assert held_bytes(session_of(at)) - before == per_position
    vocab = forward_of(at).last.numel() * forward_of(at).last.element_size()
    assert with_step - held_bytes(session_of(at)) == positions * per_position + vocab


def chapter2_bytes(layers, hidden, heads, positions, itemsize, lens_columns=0, halfway=False):
    """What Chapter 2 means to keep for one learner: the residual stream [layers + 1,
    positions, hidden] and the halfway stream of the last HALFWAY positions (the model's
    dtype); per layer and position the RMS and two update norms (float32), per layer both
    updates at the last position; per position the logit gap, the largest |logit| it is
    judged at (Inside.logit_scales), margin (float32) and two top-1 ids (int64); the picked
    layer's attention rows [heads, ≤ ROWS, positions] (float32); per
    lens column the top 5 probabilities (float32) and ids (int64) at every depth."""
    from chapter2.lens import HALFWAY
    from chapter2.patterns import ROWS
    stream = (layers + 1) * positions * hidden * itemsize
    kept_halfway = layers * min(positions, HALFWAY) * hidden * itemsize
    per_layer = layers * (3 * positions * 4 + 2 * hidden * 4)
    logits = positions * (4 + 4 + 4 + 8 + 8)
    pattern = heads * min(positions, ROWS) * positions * 4
    depths = layers + 1 + (layers if halfway else 0)
    return (stream + kept_halfway + per_layer + logits + pattern
            + lens_columns * depths * 5 * (4 + 8))


def chapter2_held(at) -> int:
    """What Chapter 2's slots of the learner's Memo hold (Chapter 1's are counted above)."""
    from chapter2.lens import LENS
    from chapter2.patterns import PATTERN
    from chapter2.pipeline import INSIDE
    memo = session_of(at)
    return sum(held_bytes(memo.latest(slot)) for slot in (INSIDE, PATTERN, LENS))


def test_chapter_2_at_the_cap_keeps_the_stream_and_no_attention_table(loaded):
    from chapter2.lens import COLUMNS
    at = run_app(CHAPTER2, text=" ".join(["word"] * 1100))
    assert not at.exception
    config, n = loaded.model.config, loaded.max_tokens
    shape = (config.num_hidden_layers, config.hidden_size, config.num_attention_heads)
    itemsize = loaded.model.dtype.itemsize
    tensors = held_tensors(session_of(at))
    assert all(t.grad_fn is None and not t.requires_grad for t in tensors)
    assert chapter2_held(at) == chapter2_bytes(*shape, n, itemsize, COLUMNS)
    at.sidebar.toggle(key="halfway").set_value(True).run()
    assert chapter2_held(at) == chapter2_bytes(*shape, n, itemsize, COLUMNS, True)
    # the budget, on the Qwen3-0.6B shape in bfloat16 at 1,024 tokens
    qwen = chapter2_bytes(28, 1024, 16, 1024, 2, COLUMNS, True)
    assert qwen <= 100e6, qwen
    assert qwen < 28 * 16 * 1024 * 1024 * 2  # less than every layer's attention weights


PEAK_OF = """
import sys, types, torch
sys.path.insert(0, {root!r})
from chapter2.embeddings import nearest
def high_water():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
table = torch.randn(151_936, 1024, dtype=torch.bfloat16)  # Qwen3-0.6B's embedding table
model = types.SimpleNamespace(model=types.SimpleNamespace(
    embed_tokens=types.SimpleNamespace(weight=table)))
before = high_water()
nearest(model, 5)
print(high_water() - before)
"""


def test_the_nearest_rows_never_copy_the_whole_table():
    """A transient peak, measured in a fresh process: the lengths of 151,936 rows in float32
    once took a float32 copy of the whole table (+610 MB at the peak, on top of a learner's
    page at the cap)."""
    import subprocess
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parent.parent)
    grew = int(subprocess.run([sys.executable, "-c", PEAK_OF.format(root=root)], check=True,
                              capture_output=True, text=True).stdout.split()[-1])
    table = 151_936 * 1024 * 2
    assert grew < table / 4, f"nearest() raised the peak by {grew / 1e6:,.0f} MB"


ALLOCATOR = """
import sys, torch
sys.path.insert(0, {root!r})
import token_by_token.model  # noqa: F401  (sets glibc's thresholds, as the app does)
from token_by_token.locks import FORWARD_LOCK, on_the_torch_thread
def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
def grow(layers, positions, steps):  # a KV cache as DynamicCache grows it: torch.cat
    rows = [torch.zeros(1, 8, positions, 128) for _ in range(layers)]  # 4 KB a position
    new = torch.ones(1, 8, 1, 128)
    for step in range(steps):
        if step == steps // 2:
            start = faults()
        rows = [torch.cat([row, new], dim=-2) for row in rows]
    return (faults() - start) / (steps - steps // 2)
with FORWARD_LOCK:
    per_step = on_the_torch_thread(grow, 56, {positions}, 20)
before = rss()
for _ in range(3):  # an attention temporary of Chapter 2's kind, made and dropped
    block = torch.ones(16 << 20 >> 2)
    del block
print(per_step, (rss() - before) / 2**20)
"""


def test_a_step_grows_the_kv_cache_in_reused_memory_and_large_blocks_go_back():
    """glibc's thresholds (token_by_token/allocator.py). A generation step, in the torch
    thread, makes each layer's keys and values anew (DynamicCache concatenates): at
    Qwen3-0.6B's shape and 1,024 positions in float32, 56 blocks of 4 MB, which must come
    from memory the allocator keeps, not fresh pages the kernel faults in one by one (with
    every block over 1 MB mapped afresh: 1,024 faults a block, 58,000 a step, measured; from
    the heap, about 300, as each block is a position longer than the one freed). A 16 MB
    block made elsewhere, as Chapter 2's attention makes, still goes back to the system when freed
    (glibc's own rule keeps the next ones in its heap). Counted in a fresh process: page
    faults and resident pages, not time."""
    import subprocess
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", ALLOCATOR.format(root=root, positions=1020)],
                         check=True, capture_output=True, text=True).stdout.split()
    faults, kept_mb = float(out[-2]), float(out[-1])
    said = f"{faults:,.0f} page faults a step (56 blocks of 4 MB), {kept_mb:,.0f} MB kept"
    assert faults < 2_000 and kept_mb < 8, said  # fresh pages: 58,000 a step
