"""Section 5's proof: the library's own generate() walks the learner's sequence and agrees.

Runs on demand (a button): generate() is forced along the learner's ids (at each step the
only allowed token is the one that came next) and hands back its raw logits per step
(`output_logits=True`, before any filter); the page's top candidates at each step must be
the same numbers, or within the last bits of the model's dtype where the page read the text
in chunks (the page says how many steps of that dtype apart). With greedy settings,
generate() left alone must choose the same ids.
"""

from dataclasses import dataclass

import torch

from token_by_token.memo import Slot
from token_by_token.model import FORWARD_LOCK
from token_by_token.precision import Difference, difference


def generate_along(model, ids, first):
    """transformers' generate(), made to follow ids from ids[:first].

    At each step only the id that came next is allowed; the logits it
    returns are the model's raw scores, before that mask is applied.
    """
    def allowed(batch, sofar):  # sofar: the ids so far, prompt included
        return [ids[len(sofar)]]
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids[:first]]), max_new_tokens=len(ids) - first,
            do_sample=False, prefix_allowed_tokens_fn=allowed,
            output_logits=True, return_dict_in_generate=True)
    return out.sequences[0].tolist(), torch.cat(out.logits).float()


def greedy(model, ids, first):
    """generate() left alone, greedy: the ids it chooses after ids[:first]."""
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids[:first]]), do_sample=False,
                             max_new_tokens=len(ids) - first)
    return out[0].tolist()


def largest_differences(top_ids, top_logits, rows) -> torch.Tensor:
    """Per step: the largest |page − library| over the page's top candidates' logits."""
    return (rows.gather(1, top_ids) - top_logits).abs().amax(-1)


@dataclass(frozen=True)
class Proof:
    followed: bool               # generate() walked exactly the learner's ids
    differences: torch.Tensor    # [steps]: per step, the largest logit difference
    greedy: list[int] | None     # with greedy settings: the ids generate() chose itself
    largest: Difference          # the largest of them, in the steps of the model's dtype


PROOF: Slot[Proof] = Slot("chapter1.proof")


def prove(model, ids: list[int], first: int, candidates, is_greedy: bool) -> Proof:
    rows = range(first - 1, len(ids) - 1)  # the page's rows that predicted each step
    with FORWARD_LOCK:
        walked, logits = generate_along(model, ids, first)
        chosen = greedy(model, ids, first) if is_greedy else None
    top_ids = candidates.ids[rows.start: rows.stop]
    page = candidates.logits[rows.start: rows.stop]
    differences = largest_differences(top_ids, page, logits)
    largest = difference(page, logits.gather(1, top_ids), model.dtype)  # both made in it
    return Proof(walked == list(ids), differences, chosen, largest)
