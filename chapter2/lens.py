"""Section 7 — the logit lens: what would the model predict if it stopped after layer i?"""

import pandas as pd
import streamlit as st
import torch

from chapter2.rebuild import unembed
from chapter2.rmsnorm import norm
from token_by_token.capture import capture
from token_by_token.memo import Memo, Slot
from token_by_token.model import FORWARD_LOCK
from token_by_token.sections import lesson
from token_by_token.tokens import markdown_literal, show
from token_by_token.trace import traced


def residual_stream(model, ids):
    """x after the embeddings and after each layer.

    [layers + 1, positions, hidden]. The library's hidden_states hand
    the last one back already through the final norm, so that one is
    read just before the norm instead.
    """
    final_norm = {"final norm": model.model.norm}
    with capture(final_norm) as seen, torch.inference_mode():
        out = model(torch.tensor([ids]), output_hidden_states=True,
                    logits_to_keep=1)  # the last position's scores only
    xs = [*out.hidden_states[:-1], seen.input("final norm")]
    return torch.cat(xs)  # [layers + 1, positions, hidden]


def mid_stream(model, ids):
    """x halfway through each layer (after attention, before the MLP).

    It is what each layer's second RMSNorm reads: [layers, positions,
    hidden].
    """
    norms = [layer.post_attention_layernorm for layer in model.model.layers]
    with capture(norms) as seen, torch.inference_mode():
        model(torch.tensor([ids]))
    return torch.cat([seen.input(name) for name in seen.calls])


def lens(model, x):
    """Logits read from any point of the residual stream x.

    The model's own last steps, applied early: the final RMSNorm,
    then the scores against the vocabulary.
    """
    with torch.inference_mode():
        return unembed(model, norm(model.model.norm, x))


def logit_lens(model, ids):
    """The top-1 token at every layer: int64 [layers + 1, positions].

    Row 0 reads the embeddings, row i the stream after layer i; the
    last row is the model's own prediction. Watch a guess form.
    """
    xs = residual_stream(model, ids)
    return torch.stack([lens(model, x).argmax(-1) for x in xs])


def mid_lens(model, ids):
    """The top-1 token halfway through each layer: int64 [layers, positions].

    Row i reads layer i after its attention, before its MLP: which of
    the two moved the guess?
    """
    xs = mid_stream(model, ids)
    return torch.stack([lens(model, x).argmax(-1) for x in xs])


def lens_top_k(model, xs, k):
    """The k likeliest tokens and their probabilities, at each point.

    xs is [..., positions, hidden], e.g. residual_stream(...)[:, -1:]
    for the last position only; returns (probs, ids).
    """
    probs = torch.softmax(lens(model, xs).float(), dim=-1)
    return probs.topk(k, dim=-1)


TITLE = "The logit lens — the guess, layer by layer"
LENS: Slot = Slot("chapter2.lens")


def _lens_at(model, inside, position: int, memo: Memo):
    """lens_top_k() on the stream at one position, after every layer (kept per position)."""
    key = (inside.ids, position)
    if (same := memo.get(LENS, key)) is not None:
        return same
    with FORWARD_LOCK:
        found = traced(lens_top_k, model, inside.stream[:, position], 5)
    return memo.put(LENS, key, found)


def render(loaded, view) -> str:
    from token_by_token.memo import memo_of
    tokenizer, position, seen = loaded.tokenizer, view.position, view.inside
    memo = memo_of(st.session_state).for_model(loaded.model_id)
    (probs, ids), trace = _lens_at(loaded.model, seen, position, memo)
    st.markdown(
        "The model's last two steps, the final RMSNorm and the scores against the table, can "
        "be applied to the residual stream anywhere, not only after the last layer. What "
        "would the model predict if it stopped after layer i? That is the **logit lens**. "
        "The final norm must be applied too (the stream's scale grows layer by layer); the "
        "library hands back its last hidden state already normalised, so the stream is read "
        "just before the final norm instead."
    )
    lesson(residual_stream, trace, lens)
    rows = ["embeddings"] + [f"after layer {i}" for i in range(len(probs) - 1)]
    st.markdown(f"At position {position} “{markdown_literal(show(tokenizer, view.ids[position]))}"
                "”, the five likeliest next tokens at each depth:")
    st.dataframe(pd.DataFrame({
        "read from": rows,
        "top-1": [show(tokenizer, int(i)) for i in ids[:, 0]],
        "probability": probs[:, 0].tolist(),
        "top 5": [", ".join(f"{show(tokenizer, int(i))} {float(p):.0%}"
                            for p, i in zip(ps, row, strict=True))
                  for ps, row in zip(probs, ids, strict=True)],
    }), hide_index=True, height=min(35 * len(rows) + 38, 420))
    same = int(ids[-1, 0]) == int(seen.top_library[position])
    st.markdown(
        "The last row is the model's own prediction: its top-1 "
        + ("**equals** the library's logits' top-1 at this position."
           if same else "differs from the library's: a near-tie (section 5).")
    )
    return ("The logit lens reads the residual stream through the final norm and the table "
            "after every layer: the prediction takes shape as layers add to the stream.")
