"""The logit lens: what would the model predict if it stopped after layer i?"""

import torch

from chapter2.rebuild import unembed
from chapter2.rmsnorm import norm
from token_by_token.capture import capture


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
