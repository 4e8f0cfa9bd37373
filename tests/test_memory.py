"""What a learner's session keeps in memory, counted from the objects it really holds (a walk
of everything reachable from its session state), at the longest allowed input: no autograd
history, the KV cache, the top candidates per position and a few vocabulary-long rows, never
a [positions × vocab] table. (The process's peak RSS on the Qwen3-0.6B shape is a benchmark
number: bench/run.py.)"""

from helpers import held_bytes, held_tensors, run_app

from chapter1.logits import TOP
from chapter1.tokenizer import tokenize


def expected_bytes(loaded, positions: int, warpers: int) -> int:
    """The KV cache (bf16), the top candidates (int64 ids, float32 logits and probabilities),
    logits[0], logits[-1] and the probabilities (float32 rows), and each warper's mask of the
    tokens it kept (bool)."""
    config, vocab = loaded.model.config, loaded.vocab_size
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2
    return positions * (kv + TOP * (8 + 4 + 4)) + 3 * vocab * 4 + warpers * vocab


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
    per_position = (2 * config.num_hidden_layers * config.num_key_value_heads
                    * config.head_dim * 2 + TOP * (8 + 4 + 4))
    assert held_bytes(session_of(at)) - before == per_position
