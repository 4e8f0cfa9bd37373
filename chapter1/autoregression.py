"""Section 5 — Autoregression: append the sampled id and run the model again, one token."""

import json
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from chapter1 import proof
from chapter1.logits import logits
from chapter1.sampling import surprisal
from token_by_token import charts
from token_by_token.controls import branch_step, branch_token, table_alternative
from token_by_token.precision import why
from token_by_token.sections import lesson
from token_by_token.sequence import IDS
from token_by_token.state import SAMPLE
from token_by_token.tokens import (
    NOT_A_CHARACTER,
    annotated,
    counted,
    markdown_literal,
    readable,
    show,
    show_bytes,
    spans,
    tail_chips,
    token_bytes,
)

TITLE = "Autoregression — append, and go again"
READS = IDS | SAMPLE | {"autoregressive", "previous_ids", "branch_step", "branch_token",
                        "branch", "proof", "table_timeline"}
WIDGETS = {"branch_step", "branch_token", "branch", "proof", "table_timeline"}


def step(model, cache, ids, next_id):
    """One turn of the loop: append the sampled id, run the model on it.

    The cache already holds the keys and values of every earlier
    position: the layers run for the new token only, and its attention
    reads the cached keys and values of all the others.
    """
    ids = ids + [next_id]
    next_logits = logits(model, [next_id], cache)[-1]
    return ids, next_logits


def branch(model, cache, ids, at, new_id):
    """Go back to position `at` and take another token there.

    The cache already holds the keys and values of ids[:at]: crop away
    the later ones (nothing is recomputed), then one step for the new
    token, as if it had been sampled then.
    """
    cache.crop(at - len(ids))  # forget every position from `at` on
    return step(model, cache, ids[:at], new_id)


def cache_shape(cache) -> tuple[int, int, int, int]:
    """(layers, KV heads, positions, head dim) of a DynamicCache."""
    keys = cache.layers[0].keys  # [batch, kv heads, positions, head dim]
    return len(cache.layers), keys.shape[1], keys.shape[2], keys.shape[3]


@dataclass(frozen=True)
class HandBack:
    """Ids as text for the text box, and what a text box can't hold: it holds characters,
    and ids are bytes (a character can be cut between tokens) or have no text at all."""
    text: str
    unknown: list[int]   # ids the tokenizer has no token for (rows only the model has)
    dropped: bytes       # bytes that are not whole characters, left out
    unfinished: bool     # the dropped bytes end the text: a character the model didn't finish


def hand_back(tokenizer, ids) -> HandBack:
    data = b"".join(token_bytes(tokenizer, int(i)) or b"" for i in ids)
    unknown = [int(i) for i in ids if token_bytes(tokenizer, int(i)) is None]
    chars = data.decode("utf-8", errors="surrogateescape")
    return HandBack(NOT_A_CHARACTER.sub("", chars), unknown,
                    bytes(ord(c) - 0xDC00 for c in NOT_A_CHARACTER.findall(chars)),
                    NOT_A_CHARACTER.fullmatch(chars[-1:]) is not None)


# the lesson functions this section shows
LESSONS = [step, branch]


def render(loaded, view) -> str:
    tokenizer = loaded.tokenizer
    forward, ids, generated = view.forward, view.ids, view.generated
    st.markdown(
        "One token is not a text. To write more, the model's own choice becomes part of its "
        "input: append the sampled id to the ids and run the model again. That loop, "
        "**autoregression**, is all that text generation is. The ids are the truth: the "
        "loop appends ids and never turns text back into ids."
    )
    lesson(view.trace(step), note=None if forward.step is None else
           "Values from the step that appended the last generated token.")
    layers, heads, positions, head_dim = cache_shape(forward.cache)
    numbers = 2 * layers * heads * positions * head_dim
    kept = forward.cache.layers[0].keys.dtype  # what the cache holds its numbers in
    st.markdown(
        "Running the whole sequence again at every step would redo the same work: the "
        "model's view of earlier positions never changes (a position only looks back). So "
        "the model keeps, for every layer and position, the **keys and values** its "
        "attention computed, in a **KV cache**, and each step only computes the new "
        f"token's. For your {positions:,} tokens the cache holds **{layers} layers × 2 (keys "
        f"and values) × {heads} KV heads × {positions:,} positions × {head_dim} numbers = "
        f"{numbers:,} numbers** ({numbers * kept.itemsize / 1024:,.0f} KiB in "
        f"{str(kept).removeprefix('torch.')})."
    )
    what = "one cached step (1 token)" if forward.stepped else f"the whole {len(ids):,} tokens"
    if forward.shared:
        st.caption(f"This opening text's forward ran once in this server, for the first learner "
                   f"who opened it ({what} in {forward.seconds * 1000:,.1f} ms); your session "
                   "got a copy of its logits and KV cache, as a server's prefix cache shares "
                   "a prompt many requests begin with.")
    elif forward.ahead:
        st.caption(f"The last forward ran {what} in {forward.seconds * 1000:,.1f} ms, while "
                   "you read the page before: the id to append was already sampled there "
                   "(Section 4), so the page took the step ahead of your click. Had a slider "
                   "or the seed changed that id, the step would have run after the click.")
    else:
        st.caption(f"The last forward ran {what} in {forward.seconds * 1000:,.1f} ms.")

    at_cap = f"{loaded.max_tokens:,} tokens, this app's context cap"
    if view.stop == "cap" and not generated:
        st.info(f"Your text fills {at_cap} (Section 1): there is no room to append a token.")
    elif not view.autoregressive:
        st.info("Switch on **Autoregressive mode** in the sidebar, then press **Generate next "
                "token** to append the sampled token and step the model.")
    if not view.autoregressive:
        render_retokenized(tokenizer, ids, view.previous_ids)
    if generated:
        st.markdown(f"**{len(generated):,} generated so far** (your text in pastel, "
                    "generated tokens in blue, the token sampled next in navy):")
    tail_chips(tokenizer, [*ids, view.next_id], highlight=len(ids),
               generated_from=len(ids) - len(generated))
    if generated:
        st.code(f"generated = {generated}\ntext = {readable(tokenizer, generated)!r}",
                language="python", wrap_lines=True)
        back = hand_back(tokenizer, generated)
        if back.unfinished:
            st.caption(f"{show_bytes(back.dropped)} at the end: the first bytes of a character "
                       "the model has not finished writing (one character can take several "
                       "tokens).")
    if forward.cut:
        st.info(f"Branched: {counted(len(forward.cut), 'token')} cut away "
                f"({readable(tokenizer, list(forward.cut))!r}); the KV cache was cropped to "
                f"the {len(ids) - 1:,} positions before the new token, and one step ran for "
                "it. Nothing before it was recomputed.")
    if generated and view.autoregressive:
        render_branch(loaded, view)
    if generated:
        render_timeline(tokenizer, view)
        render_downloads(loaded, view)
        render_proof(loaded, view)
    if view.stop == "eos":
        st.success(f"The model chose “{markdown_literal(show(tokenizer, generated[-1]))}”, an "
                   "end-of-text token: it considers the text finished. Generation stops here. "
                   "Edit the text (switch Autoregressive mode off) to start again.")
    elif view.stop == "cap" and generated:
        st.warning(f"The sequence reached {at_cap}, so generation stops here.")
    return ("Generation is a loop: ids → logits → probabilities → sampled id → append. With "
            "the KV cache, each turn runs the projections and the MLP for one token only; "
            "its attention still reads the cached keys and values of every earlier one.")


def render_retokenized(tokenizer, ids, previous_ids) -> None:
    """After generation: does the text, tokenized again, give back the generated ids? If not,
    say why, from what really happened: ids with no text, bytes that are not whole
    characters, the tokenizer's normalizer, or another spelling of the same text."""
    if not previous_ids:
        return
    if list(previous_ids) == list(ids):
        st.markdown("Your generated text, tokenized again, gives back exactly the generated "
                    f"ids ({counted(len(ids), 'token')}).")
        return
    back = hand_back(tokenizer, previous_ids)
    causes = []
    if back.unknown:
        causes.append(
            f"{counted(len(back.unknown), 'generated id')} ({', '.join(map(str, back.unknown))})"
            " the tokenizer has no token for: the model's tables have rows beyond the "
            "vocabulary, and such an id has no text, so it was left out")
    if back.dropped:
        where = ("at the end, the first bytes of a character the model had not finished"
                 if back.unfinished else "that are not whole characters")
        causes.append(f"{counted(len(back.dropped), 'byte')} {where} "
                      f"({show_bytes(back.dropped)}) were left out: a text box holds "
                      "characters, not bytes")
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    if normalizer is not None and normalizer.normalize_str(back.text) != back.text:
        causes.append("the tokenizer normalizes the text before splitting it (Section 1), "
                      "so some characters are read with other bytes than were generated")
    elif not back.dropped and [i for i in previous_ids if i not in back.unknown] != list(ids):
        causes.append("the same text can be spelled in tokens in more than one way, and the "
                      "model chose a spelling the tokenizer would not")
    st.warning(
        "Your generated text, tokenized again, gives **different ids** than the ones that "
        f"were generated ({len(ids):,} instead of {len(previous_ids):,}): "
        + "; ".join(causes) + ". This is why generation appends ids and never re-tokenizes "
        "its own output."
    )
    st.markdown("Generated ids:")
    annotated(spans(tokenizer, previous_ids))
    st.markdown("The same text, tokenized again:")
    annotated(spans(tokenizer, ids))


def timeline_table(tokenizer, ids, candidates, first: int) -> pd.DataFrame:
    """One row per generated token (positions first…): how sure the model was when it was
    drawn, at temperature 1 before the filters (row p − 1 of the logits predicted it)."""
    rows = range(first - 1, len(ids) - 1)
    entropy = candidates.entropy[rows.start: rows.stop].tolist()
    chosen = candidates.chosen[rows.start: rows.stop].tolist()
    return pd.DataFrame({
        "step": range(1, len(rows) + 1),
        "token": [show(tokenizer, ids[r + 1]) for r in rows],
        "probability": chosen,
        "rank": candidates.rank[rows.start: rows.stop].tolist(),
        "surprisal (bits)": [surprisal(p) if p > 0 else float("inf") for p in chosen],
        "entropy (bits)": entropy,
        "effective choices": [2 ** b for b in entropy],
        "end-of-text probability": candidates.end[rows.start: rows.stop].tolist(),
    })


def render_timeline(tokenizer, view) -> None:
    ids, generated = view.ids, view.generated
    table = timeline_table(tokenizer, ids, view.forward.candidates, len(ids) - len(generated))
    st.markdown(
        "**How sure the model was, token by token**: the entropy of each step's "
        "distribution, the surprisal of the token drawn, and the probability of ending the "
        "text there (at temperature 1, before the filters: the model's own view, whatever "
        "the sliders were at that step)."
    )
    st.vega_lite_chart(table, charts.fast_spec(charts.uncertainty_timeline, table),
                       width="stretch")
    table_alternative("The same as a table", "table_timeline", lambda: table)


def record(loaded, view, settings: dict) -> dict:
    """The generation as data: the model, the settings, the ids and tokens, and for each
    generated token the top candidates the model gave at that step (temperature 1, before
    the filters) and the one drawn."""
    tokenizer, candidates, ids = loaded.tokenizer, view.forward.candidates, view.ids
    first = len(ids) - len(view.generated)
    steps = []
    for step, position in enumerate(range(first, len(ids)), start=1):
        row = position - 1  # the logits at the position before predicted this one
        steps.append({
            "step": step, "position": position, "id": ids[position],
            "token": show(tokenizer, ids[position]),
            "probability": float(candidates.chosen[row]), "rank": int(candidates.rank[row]),
            "candidates": [
                {"id": int(i), "token": show(tokenizer, int(i)), "logit": float(logit),
                 "probability": float(p)}
                for i, logit, p in zip(candidates.ids[row], candidates.logits[row],
                                       candidates.probs[row], strict=True)],
        })
    return {
        "model": loaded.model_id,
        "settings": settings,
        "ids": list(ids), "tokens": [show(tokenizer, i) for i in ids],
        "text_length": first, "steps": steps,
    }


def record_csv(data: dict) -> str:
    """record() as a table: one line per step and candidate."""
    rows = [{"step": s["step"], "position": s["position"], "drawn id": s["id"],
             "drawn token": s["token"], "rank": rank, "candidate id": c["id"],
             "candidate token": c["token"], "logit": c["logit"],
             "probability": c["probability"]}
            for s in data["steps"] for rank, c in enumerate(s["candidates"], start=1)]
    return pd.DataFrame(rows).to_csv(index=False)


def render_downloads(loaded, view) -> None:
    """The files are written when a button is clicked (Streamlit calls the function then),
    from this rerun's view and settings: a slider rerun doesn't write them."""
    left, right = st.columns(2)
    left.download_button("Download the generation (JSON)",
                         lambda: json.dumps(record(loaded, view, view.settings), indent=1),
                         "generation.json", "application/json", key="download_json",
                         on_click="ignore")
    right.download_button("Download the generation (CSV)",
                          lambda: record_csv(record(loaded, view, view.settings)),
                          "generation.csv", "text/csv", key="download_csv",
                          on_click="ignore")


def render_proof(loaded, view) -> None:
    """The proof against transformers' generate(), on demand."""
    st.markdown("**Proof.** Does the library's own `generate()` agree with this page?")
    st.button("Run generate() on this sequence", key="proof", on_click=view.prove,
              help="Forces generate() along your ids and compares its raw logits with the "
                   "ones the page used; with greedy settings (Top-K 1) also lets it choose.")
    found = view.proof
    if found is None:
        lesson(proof.generate_along)
        return
    lesson(proof.generate_along, proof.greedy)
    worst = found.largest
    st.markdown(
        f"`generate()` walked {'exactly your' if found.followed else 'other'} ids; at each of "
        f"its {len(found.differences)} steps its logits for the page's top candidates differ "
        f"from the page's by at most **{worst:.3g}**"
        + (": the same numbers." if worst == 0 else
           f", {worst.said()}, the largest of those logits. Why any difference at all: "
           f"{why(worst.dtype, worst.scale)}"
           + (f" Here the page read your text in {view.forward.chunks} calls of the model "
              "(Section 2) and generate() in one: the same sums in another order."
              if view.forward.chunks > 1 else ""))
    )
    if found.greedy is not None:
        same = found.greedy == list(view.ids)
        st.markdown("Left to choose, greedy: " + (
            "**the same ids** as yours." if same else
            "**other ids** than yours (a near-tie, or settings changed while generating)."))


def render_branch(loaded, view) -> None:
    """Pick a generated step, see its top 5, continue from another one (crop and step)."""
    tokenizer = loaded.tokenizer
    ids, generated, candidates = view.ids, view.generated, view.forward.candidates
    first = len(ids) - len(generated)
    with st.expander("Branch: take another token at any generated step"):
        at_step = branch_step(len(generated))
        row = first + at_step - 2  # the position whose logits chose this token
        options = candidates.ids[row, :5].tolist()
        probs = dict(zip(options, candidates.probs[row, :5].tolist(), strict=True))
        branch_token(
            f"At step {at_step} the model chose “{markdown_literal(show(tokenizer, ids[row + 1]))}”"
            "; its five likeliest (temperature 1, before the filters):", options,
            format_func=lambda i: f"{show(tokenizer, i)} ({i}), {probs[i]:.1%}")
        lesson(branch)
        st.button("Continue from here", key="branch", on_click=view.take_branch,
                  help="Cut the sequence after this step's position, take this token, and go "
                       "on from it.")
