"""Chapter 1's uncertainty (entropy, effective choices, surprisal, rank, the end-of-text
probability, per step and over a generation) and its many draws, against direct computations
on the model's full logits."""

import math

import pytest
import torch
from helpers import counting_forwards, page_text, run_app

from chapter1.logits import logits
from chapter1.pipeline import VIEW
from chapter1.sampling import DRAWS, entropy, many_draws, random_stream, total_variation


def view_of(at):
    return at.session_state["_memo"].latest(VIEW)


def bits(p: torch.Tensor) -> float:
    """Entropy in bits, computed directly in float64 (not with the lesson)."""
    p = p.double()
    p = p[p > 0]
    return float(-(p * torch.log(p)).sum() / math.log(2))


def test_entropy_and_effective_choices_before_and_after_the_filters(loaded):
    at = run_app()
    view = view_of(at)
    before = torch.softmax(view.forward.last, -1)
    text = page_text(at)
    for p in (before, view.probs):
        assert float(entropy(p)) == pytest.approx(bits(p), abs=1e-3)
        assert f"**{bits(p):.2f} bits**, like a fair pick among **{2 ** bits(p):,.1f}**" in text
    assert bits(view.probs) < bits(before)  # the filters cut choices
    p = float(view.probs[view.next_id])
    rank = int((before > before[view.next_id]).sum()) + 1
    assert f"number **{rank:,}** (before the filters)" in text
    assert f"a **surprisal** of {-math.log2(p):.2f} bits" in text
    # one token certain: 0 bits; two equal: 1 bit
    assert float(entropy(torch.tensor([1.0, 0.0]))) == 0
    assert float(entropy(torch.tensor([0.5, 0.5]))) == pytest.approx(1.0)


def test_the_timeline_of_a_generation_equals_the_full_logits(loaded):
    at = run_app(autoregressive=True, temperature=1.5, top_k=0, top_p=1.0)  # wide draws
    with counting_forwards(loaded.model) as calls:
        for _ in range(4):
            at.sidebar.button(key="generate").click().run()
    assert [len(c) for c in calls] == [1] * 4  # the numbers cost no forward of their own
    view = view_of(at)
    ids, generated = view.ids, view.generated
    full = logits(loaded.model, ids)  # [positions, vocab], one forward
    probs = torch.softmax(full, -1)
    candidates = view.forward.candidates
    rows = range(len(ids) - 1)
    chosen = torch.stack([probs[r, ids[r + 1]] for r in rows])
    # cached steps and a full forward add in another order: close, not always bit-equal
    assert torch.allclose(candidates.chosen[:-1], chosen, rtol=1e-3, atol=1e-7)
    assert torch.isnan(candidates.chosen[-1]) and candidates.rank[-1] == 0  # not drawn yet
    assert torch.allclose(candidates.entropy, torch.tensor([bits(p) for p in probs]),
                          rtol=1e-4)
    end = probs[:, sorted(loaded.eos_ids)].sum(-1)
    assert torch.allclose(candidates.end, end, rtol=1e-3, atol=1e-7)
    text_rows = range(len(ids) - len(generated) - 1)  # the prefill: the same forward
    ranks = [int((full[r] > full[r, ids[r + 1]]).sum()) + 1 for r in text_rows]
    assert candidates.rank[: len(ranks)].tolist() == ranks
    [table] = [d.value for d in at.dataframe if "surprisal (bits)" in d.value.columns]
    assert table["step"].tolist() == [1, 2, 3, 4]
    assert table["probability"].tolist() == pytest.approx(chosen[-4:].tolist(), rel=1e-3)
    assert table["surprisal (bits)"].tolist() == pytest.approx(
        [-math.log2(p) for p in table["probability"]])
    assert table["effective choices"].tolist() == pytest.approx(
        [2 ** b for b in table["entropy (bits)"]])


def test_many_draws_come_out_as_often_as_their_probability():
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    shares = many_draws(probs, 100_000, torch.Generator().manual_seed(1))
    assert float(shares.sum()) == pytest.approx(1.0)
    assert shares[3] == 0  # a filtered-out token never comes out
    assert total_variation(shares, probs) < 0.01
    again = many_draws(probs, 100_000, torch.Generator().manual_seed(1))
    assert torch.equal(shares, again)  # seeded: the same draws
    assert total_variation(torch.tensor([1.0, 0, 0, 0]), probs) == pytest.approx(0.5)


def test_the_page_draws_from_the_probabilities_it_shows(loaded):
    at = run_app()
    view = view_of(at)
    shares = many_draws(view.probs, DRAWS, random_stream(view.seed, len(view.ids),
                                                         view.resamples))
    distance = total_variation(shares, view.probs)
    assert f"is **{distance:.3f}**" in page_text(at)
    assert distance < 0.2  # 1,000 draws land close to the probabilities
    assert float(shares[view.probs == 0].sum()) == 0
