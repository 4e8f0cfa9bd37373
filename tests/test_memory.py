"""What a learner's session keeps in memory, at the longest allowed input: no autograd
history, and only the KV cache and the top-candidate summaries, never a [positions × vocab]
table. (The process's peak RSS on the Qwen3-0.6B shape is a benchmark number: bench/run.py.)"""


from chapter1.pipeline import TOP, advance
from token_by_token.state import Memo


def test_the_longest_input_keeps_no_autograd_history_and_no_vocab_table(loaded):
    ids = [10 + (13 * i) % 700 for i in range(loaded.max_tokens)]
    forward = advance(loaded.model, ids, Memo())
    tensors = forward.tensors
    assert all(t.grad_fn is None and not t.requires_grad for t in tensors)

    config = loaded.model.config
    n, vocab = len(ids), forward.vocab
    kv_bytes = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * n * 2
    summary_bytes = n * TOP * (8 + 4 + 4)  # int64 ids, float32 logits and probabilities
    rows_bytes = 2 * vocab * 4  # logits[0] and logits[-1], float32
    held = sum(t.numel() * t.element_size() for t in tensors)
    assert held == kv_bytes + summary_bytes + rows_bytes
    assert held < n * vocab * 4  # less than one full logits table would take


def test_a_generated_token_adds_one_position_to_what_the_session_holds(loaded):
    ids = [10 + (13 * i) % 700 for i in range(100)]
    memo = Memo()
    before = sum(t.numel() * t.element_size() for t in advance(loaded.model, ids, memo).tensors)
    after_forward = advance(loaded.model, [*ids, 42], memo)
    assert after_forward.stepped
    after = sum(t.numel() * t.element_size() for t in after_forward.tensors)
    config = loaded.model.config
    per_position = (2 * config.num_hidden_layers * config.num_key_value_heads
                    * config.head_dim * 2 + TOP * (8 + 4 + 4))
    assert after - before == per_position
