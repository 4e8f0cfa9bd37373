"""The proof panel (Chapter 1, Section 5): transformers' generate() walks the learner's
sequence and gives the logits the page used; greedy settings give the same ids."""

import torch
from helpers import counting_forwards, forward_of, generated_ids, page_text, run_app

from chapter1 import proof

WIDE = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}


def proof_of(at):
    return at.session_state["_memo"].latest(proof.PROOF)


def test_generate_walks_the_sampled_ids_with_the_pages_logits(loaded):
    at = run_app(autoregressive=True, play_tokens=5, **WIDE)
    at.sidebar.button(key="play").click().run()
    steps = len(generated_ids(at))
    with counting_forwards(loaded.model) as calls:
        at.button(key="proof").click().run()
    assert calls  # generate() ran, on demand
    found = proof_of(at)
    assert found.followed and len(found.differences) == steps
    assert float(found.differences.max()) < 1e-3
    assert f"by at most **{float(found.differences.max()):.3g}**" in page_text(at)
    assert found.greedy is None
    with counting_forwards(loaded.model) as calls:  # shown again without running again
        at.sidebar.slider(key="temperature").set_value(0.9).run()
    assert calls == [] and "by at most" in page_text(at)


def test_greedy_settings_give_the_same_ids_as_generate(loaded):
    at = run_app(autoregressive=True, play_tokens=5, top_k=1)
    at.sidebar.button(key="play").click().run()
    at.button(key="proof").click().run()
    found = proof_of(at)
    assert found.greedy == list(forward_of(at).ids)
    assert "**the same ids** as yours" in page_text(at)


def test_the_proof_would_show_a_difference():
    top_ids = torch.tensor([[3, 1], [0, 2]])
    top_logits = torch.tensor([[5.0, 4.0], [2.0, 1.0]])
    rows = torch.zeros(2, 4)
    rows[0, 3], rows[0, 1], rows[1, 0], rows[1, 2] = 5.0, 4.0, 2.0, 1.0
    assert proof.largest_differences(top_ids, top_logits, rows).tolist() == [0.0, 0.0]
    rows[1, 2] += 0.25  # one perturbed logit
    assert proof.largest_differences(top_ids, top_logits, rows).tolist() == [0.0, 0.25]
