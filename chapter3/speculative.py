"""Section 5 — Speculative decoding: guess cheaply, check in one forward, keep what passes.

A draft proposes k tokens; the model reads them all in one forward (a step costs about the same
for one token or a few: section 2) and an accept/reject rule keeps exactly the model's own
distribution. Two drafts: the model's first L layers read through its final norm and output
matrix (Chapter 2's logit lens, used as a model: self-speculative decoding), and prompt lookup
(copy what followed the last tokens earlier in the text).
"""

import copy
import time
from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch
import torch.nn.functional as F

from chapter3 import batching
from chapter3.facts import layers_of
from chapter3.measure import BUDGET, duration, one_thread
from chapter3.twin import twin
from token_by_token import controls, kvcache
from token_by_token.locks import FORWARD_LOCK
from token_by_token.memo import Slot
from token_by_token.sections import lesson, number, small_table
from token_by_token.sequence import IDS
from token_by_token.tokens import counted, show
from token_by_token.trace import traced

TITLE = "Speculative decoding — guess, then check in one forward"
SPEC = frozenset({"spec_draft", "spec_layers", "spec_k", "spec_temperature"})
READS = IDS | SPEC | {"seed", "speculative_again"}  # the seed: Chapter 1's
WIDGETS = SPEC | {"speculative_again"}

DRAFTS = ("layers", "lookup")  # the spec_draft values
TOKENS = 8  # tokens each run generates (speculative, then plain, for the speed)
TRIES = 2  # turns of each at most (one when the first took over BUDGET / 10); the faster counts
RUN_BUDGET = BUDGET / 5  # seconds one timed generation may take (a round is never cut)
ROUNDS = 600  # seeded verify() calls for the distribution check at most (above temperature 0)
MOST_K = 8  # the most tokens the draft may guess per round
DRAFT_LABELS = {"layers": "the model's first layers", "lookup": "prompt lookup"}
TEMPERATURES = (0.0, 1.5, 0.1)  # the temperature slider: low, high, step
NGRAM = 3  # prompt lookup: the longest tail of tokens it looks for


def distribution(logits, temperature):
    """Scores to probabilities at a temperature. 0 means greedy: all
    the probability on the top score."""
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return torch.softmax(logits.float() / temperature, dim=-1)


def draw(probs, generator):
    """A weighted random choice: i comes out with probability probs[i].
    A uniform number in [0, total) falls in i's stretch of the running
    sum of the probabilities."""
    running = probs.cumsum(0)
    u = torch.rand(1, generator=generator) * running[-1]
    return min(int(torch.searchsorted(running, u, right=True)), len(probs) - 1)


def verify(p, q, draft, generator):
    """Keep the draft's tokens so that the result follows p exactly.

    Draft token x is kept with probability min(1, p(x) / q(x)); at the
    first refusal, draw from max(0, p − q), normalised, and stop. If
    all k are kept, draw one more from p[k]: 1 to k + 1 tokens.
    """
    for i, x in enumerate(draft):
        if torch.rand(1, generator=generator) < p[i, x] / q[i, x]:
            continue  # kept
        residual = (p[i] - q[i]).clamp(min=0)
        if not residual.sum() > 0:  # p = q, up to rounding
            residual = p[i]
        return [*draft[:i], draw(residual, generator)]
    return [*draft, draw(p[len(draft)], generator)]


def first_layers(model, layers):
    """A draft model for free: the model cut after `layers` layers.

    A twin that shares every weight (nothing is copied). Its last layer's
    output goes through the model's own final norm and output matrix:
    Chapter 2's logit lens, used as a model.
    """
    draft = twin(model)
    base = draft.base_model  # model.model (GPT-2: model.transformer)
    name = "layers" if hasattr(base, "layers") else "h"  # GPT-2 calls them h
    setattr(base, name, getattr(base, name)[:layers])
    draft.config.num_hidden_layers = layers
    return draft


def propose(draft, cache, ids, k, temperature, generator):
    """The draft's k guesses, one cheap step each, and its
    distributions q: [k, vocab]. Its cache first forgets guesses that
    were refused, then it reads what it has not read yet."""
    cache.crop(min(len(ids) - 1 - cache.get_seq_length(), 0))
    new, guesses, q = ids[cache.get_seq_length():], [], []
    for _ in range(k):
        with torch.inference_mode():
            logits = draft(torch.tensor([new]), cache=cache).logits[0, -1]
        q.append(distribution(logits, temperature))
        new = [draw(q[-1], generator)]
        guesses += new
    return guesses, torch.stack(q)


def prompt_lookup(ids, k, vocab, n=NGRAM):
    """A draft without a model: find the last n tokens earlier in the
    text and propose the k that followed them (else try n − 1, …).
    Its guesses are certain: q is 1 on each."""
    for size in range(min(n, len(ids) - 1), 0, -1):
        tail = ids[-size:]
        for start in range(len(ids) - size - 1, -1, -1):  # latest first
            if ids[start:start + size] == tail:
                guesses = ids[start + size:start + size + k]
                return guesses, F.one_hot(torch.tensor(guesses), vocab).float()
    return [], torch.zeros(0, vocab)


def check(model, cache, ids, guesses, temperature):
    """The model reads the last token and every guess in one forward:
    its distributions at each guess and one after, p: [k + 1, vocab]."""
    new = ids[cache.get_seq_length():] + guesses
    with torch.inference_mode():
        logits = model(torch.tensor([new]), cache=cache).logits[0]
    return distribution(logits[-len(guesses) - 1:], temperature)


def speculative_step(model, cache, ids, guess, temperature, generator):
    """One round: guess(ids) proposes tokens and their distribution q,
    the model checks them all in one forward, verify() keeps what
    follows the model's distribution; the cache forgets the refused."""
    guesses, q = guess(ids)
    p = check(model, cache, ids, guesses, temperature)
    kept = verify(p, q, guesses, generator)
    cache.crop(len(ids) + len(kept) - 1 - cache.get_seq_length())
    return ids + kept, guesses, p, q


# --- the runs the page times (not lessons) -----------------------------------------------

def first_ids(p, q, rounds, seed):
    """How often each id comes first out of verify() in `rounds`
    seeded rounds, each with a fresh guess drawn from q[0] (the later
    guesses can't change the first id). Share of the rounds, per id."""
    counts = torch.zeros(p.shape[1])
    for r in range(rounds):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + r)
        x = draw(q[0], generator)
        counts[verify(p[:2], q[:1], [x], generator)[0]] += 1
    return counts / rounds


def total_variation(p, q):
    """How far apart two distributions are: half of Σ |p − q|.
    0: the same; 1: nothing in common."""
    return float((p - q).abs().sum() / 2)


LESSONS = [distribution, draw, verify, first_layers, propose, prompt_lookup, check,
           speculative_step, first_ids, total_variation]


# --- the runs the page times (not lessons) -----------------------------------------------

@dataclass(frozen=True)
class Round:
    guesses: list[int]
    kept: list[int]           # the accepted guesses, then the one the model drew


@dataclass(frozen=True)
class Run:
    """One speculative generation and one plain one from the learner's ids, timed."""
    draft: str
    layers: int
    k: int
    temperature: float
    seed: int
    rounds: list[Round]
    ids: list[int]            # speculative: the ids it generated
    seconds: float            # the fastest try's time (per token: `made` tokens)
    plain: list[int]          # plain decoding: the ids it generated
    plain_seconds: float
    made: int                 # tokens the fastest speculative try made
    plain_made: int           # tokens the fastest plain try made
    tries: int                # timed tries of each
    traces: dict
    check: tuple[float, float] | None  # TV of verify's first ids against p[0], and of
    # as many draws straight from p[0]; None at temperature 0 or without guesses
    check_rounds: int         # the rounds of that check
    seconds_in_all: float     # the whole run, the check included

    @property
    def proposed(self) -> int:
        return sum(len(r.guesses) for r in self.rounds)

    @property
    def accepted(self) -> int:
        return sum(len(r.kept) - 1 for r in self.rounds)


def start_caches(model, cache, ids, draft):
    """Copies of the learner's KV cache for the model (all positions but the last, which
    the first check reads) and for the draft: its first layers are the model's first layers,
    so their keys and values are the same."""
    mine = copy.deepcopy(cache)
    mine.crop(len(ids) - 1 - mine.get_seq_length())
    if draft is None:
        return mine, None
    theirs = kvcache.keeping_every_position()
    for i in range(len(layers_of(draft))):
        theirs.update(mine.layers[i].keys, mine.layers[i].values, i)
    return mine, theirs


def speculate(model, draft, cache, ids, tokens, k, temperature, generator, budget=None):
    """Speculative decoding from `ids` until `tokens` more (or `budget` seconds, a round
    never cut): the ids, the rounds, traced lessons of the first round, and its p, q and
    guesses."""
    mine, theirs = start_caches(model, cache, ids, draft)
    vocab = model.lm_head.weight.shape[0]
    if draft is None:
        def guess(ids):
            return prompt_lookup(ids, k, vocab)
    else:
        def guess(ids):
            return propose(draft, theirs, ids, k, temperature, generator)
    out, rounds, traces, first, start = list(ids), [], {}, None, time.perf_counter()
    while len(out) < len(ids) + tokens and not (budget and time.perf_counter() - start > budget):
        before = len(out)
        if not traces:
            (out, guesses, p, q), traces["speculative_step"] = traced(
                speculative_step, model, mine, out, guess, temperature, generator)
            first = (p, q, guesses)
        else:
            out, guesses, _, _ = speculative_step(model, mine, out, guess, temperature,
                                                  generator)
        rounds.append(Round(guesses, out[before:]))
    return out[: len(ids) + tokens], rounds, traces, first


def plain(model, cache, ids, tokens, temperature, generator, budget=None):
    """The same number of tokens the usual way: one forward per token (or until `budget`
    seconds)."""
    mine, _ = start_caches(model, cache, ids, None)
    out, start = list(ids), time.perf_counter()
    new = ids[-1:]
    while len(out) < len(ids) + tokens and not (budget and time.perf_counter() - start > budget):
        with torch.inference_mode():
            logits = model(torch.tensor([new]), cache=mine).logits[0, -1]
        new = [draw(distribution(logits, temperature), generator)]
        out += new
    return out


_DRAFT: dict[tuple, torch.nn.Module] = {}  # (model id, layers) -> the draft: one at a time


def draft_model(model, model_id: str, layers: int):
    """first_layers(), kept for the next run at the same depth (a twin: its modules only;
    one at a time in the process)."""
    key = (model_id, layers)
    if key not in _DRAFT:
        _DRAFT.clear()
        _DRAFT[key] = first_layers(model, layers)
    return _DRAFT[key]


RUN: Slot[Run] = Slot("chapter3.speculative.run")


def check_rounds(p, q, seed, budget: float) -> int:
    """How many seeded rounds of first_ids() fit in `budget` seconds here (at most ROUNDS):
    a few timed, the rest extrapolated."""
    start = time.perf_counter()
    first_ids(p, q, FEWEST, seed)
    each = (time.perf_counter() - start) / FEWEST
    return max(FEWEST, min(ROUNDS, int(budget / max(each, 1e-9))))


FEWEST = 20  # rounds the distribution check takes at least


def speculation_of(model, model_id: str, ids: tuple[int, ...], cache, draft_kind: str,
                   layers: int, k: int, temperature: float, seed: int, memo) -> Run:
    """A speculative generation and a plain one from the learner's ids, timed in turns (a
    second turn only when the first was quick), then the distribution check above
    temperature 0; kept per ids and choices in the learner's memo."""
    key = (ids, draft_kind, layers, k, temperature, seed)
    if (run := memo.get(RUN, key)) is not None:
        return run
    draft = draft_model(model, model_id, layers) if draft_kind == "layers" else None
    speeds, began = {"speculative": [], "plain": []}, time.perf_counter()
    with FORWARD_LOCK:
        for _ in range(TRIES):  # in turns: a busy moment of the machine hits both
            start = time.perf_counter()
            out, rounds, traces, first = speculate(
                model, draft, cache, list(ids), TOKENS, k, temperature,
                torch.Generator().manual_seed(seed), budget=RUN_BUDGET)
            speeds["speculative"].append((len(out) - len(ids), time.perf_counter() - start))
            start = time.perf_counter()
            usual = plain(model, cache, list(ids), TOKENS, temperature,
                          torch.Generator().manual_seed(seed), budget=RUN_BUDGET)
            speeds["plain"].append((len(usual) - len(ids), time.perf_counter() - start))
            if time.perf_counter() - began > BUDGET / 10:
                break  # one turn each must do
    p, q, guesses = first
    check, rounds_checked = None, 0  # at temperature 0, p is all on one token: no check
    if guesses and temperature > 0:
        with FORWARD_LOCK, one_thread():
            rounds_checked = check_rounds(p, q, seed, BUDGET / 4)
            seen, traces["first_ids"] = traced(first_ids, p, q, rounds_checked, seed)
        direct = torch.multinomial(p[0], rounds_checked, replacement=True,
                                   generator=torch.Generator().manual_seed(seed))
        direct = torch.bincount(direct, minlength=len(p[0])) / rounds_checked
        check = (traced(total_variation, seen, p[0]), total_variation(direct, p[0]))
        traces["total_variation"] = check[0][1]
        check = (check[0][0], check[1])
    fastest = {kind: max(tries, key=lambda t: t[0] / t[1]) for kind, tries in speeds.items()}
    return memo.put(RUN, key, Run(
        draft_kind, layers, k, temperature, seed, rounds, out[len(ids):],
        fastest["speculative"][1], usual[len(ids):], fastest["plain"][1],
        fastest["speculative"][0], fastest["plain"][0], len(speeds["plain"]), traces, check,
        rounds_checked, time.perf_counter() - began))


def render(loaded, view) -> str:
    run: Run = view.speculation
    tokenizer, f = loaded.tokenizer, view.facts
    st.markdown(
        "A decode step costs about the same for one token as for a few (section "
        f"{number(batching)}: the weights are read once either way). So guess several "
        "tokens cheaply, then let the model check all the guesses in one forward. Where the "
        "guesses are right, one forward gave several tokens. The check keeps a guess with "
        "probability min(1, p(x)/q(x)), p the model's probability and q the guesser's, and "
        "at the first refusal draws from what is left of p: the tokens come out **exactly as "
        "the model alone would draw them** (Leviathan et al. 2023; Chen et al. 2023). That "
        "is **speculative decoding**; the guesser is the **draft**."
    )
    controls.speculative_controls(DRAFT_LABELS, MOST_K, f.layers, TEMPERATURES)
    lesson(view.trace(verify), draw, distribution)
    if run.draft == "layers":
        st.markdown(
            f"**The draft: the model's first {counted(run.layers, 'layer')} of {f.layers}.** "
            "Chapter 2's logit lens read the residual stream after any layer through the "
            "final norm and the output matrix; here that reading is the draft's prediction "
            "(LayerSkip, Elhoushi et al. 2024, trains a model so that its early layers guess "
            "well; a model not trained that way guesses less well). No second model: the "
            "draft shares every weight, and its KV cache starts as a copy of the model's first "
            "L layers' (the same weights on the same tokens give the same keys and values)."
        )
        lesson(first_layers, propose)
    else:
        st.markdown(
            "**The draft: prompt lookup.** No model at all: find the last few tokens earlier "
            "in the text and guess that what followed them then follows again. Text that "
            "repeats itself (code, a quoted passage, a list) gets long runs of right guesses."
        )
        lesson(prompt_lookup)
    lesson(check, view.trace(speculative_step))
    rows = [{"round": i + 1,
             "guesses": " ".join(show(tokenizer, t) for t in r.guesses) or "(none)",
             "kept": len(r.kept) - 1, "of": len(r.guesses),
             "then the model's own": show(tokenizer, r.kept[-1])}
            for i, r in enumerate(run.rounds)]
    small_table(pd.DataFrame(rows), most=8)
    rate = run.accepted / run.proposed if run.proposed else 0.0
    made = len(run.ids)
    st.markdown(
        f"**{counted(len(run.rounds), 'round')}** made {counted(made, 'token')}: "
        f"{run.accepted} of {counted(run.proposed, 'guess', 'guesses')} kept "
        f"(**acceptance rate {rate:.0%}**), {made / len(run.rounds):.2f} tokens per forward "
        "of the model instead of 1."
    )
    fast, slow = run.made / run.seconds, run.plain_made / run.plain_seconds
    speed = fast / slow
    st.markdown(
        f"Measured on your text: speculative **{fast:,.1f} tokens/s** "
        f"({counted(run.made, 'token')} in {duration(run.seconds)}, the draft included), plain "
        f"decoding **{slow:,.1f} tokens/s** ({counted(run.plain_made, 'token')} in "
        f"{duration(run.plain_seconds)}): **{speed:.2f}×**. "
        + ("Faster: the guesses were right often enough to pay for themselves." if speed > 1
           else "Slower here: the guesses were not right often enough to pay for the draft's "
                "steps and the longer checks. Try the other draft, fewer guesses, more draft "
                "layers, or a text that repeats itself.")
    )
    if run.temperature == 0:
        common = min(len(run.ids), len(run.plain))
        same = run.ids[:common] == run.plain[:common]
        st.markdown(
            "At temperature 0 both are greedy: " + (
                "**the same tokens**, as they must be." if same else
                "the tokens differ where the model's two best scores are nearly tied: reading "
                "several tokens in one forward rounds in another order than one at a time.")
        )
    st.code(f"speculative = {run.ids}\nplain = {run.plain}", language="python",
            wrap_lines=True)
    st.markdown("**Is the distribution really unchanged?**")
    if run.check is None:
        st.markdown(
            "At temperature 0 the model's p puts all the probability on one token: verify() "
            "keeps a guess only if it is that token, and otherwise draws that token from "
            "max(0, p − q). Raise the temperature to watch the rule keep a spread-out "
            "distribution."
            if run.temperature == 0 else
            "This run's first round had no guesses (prompt lookup found no earlier match): "
            "its token was drawn from p alone."
        )
    else:
        seen, direct = run.check
        n = run.check_rounds
        st.markdown(
            f"The first round again, {n:,} times with different seeds, each with a fresh "
            "guess drawn from the draft's q: the first token verify() returns is "
            f"**{seen:.3f}** from the model's own p (the total-variation distance, as Chapter "
            f"1 measures its sampling); {n:,} draws straight from p (`torch.multinomial`) are "
            f"{direct:.3f} from it. The same, up to the noise of a finite number of draws"
            + (" (p is spread over so many tokens that no "
               f"{n:,} draws can pin it down, however they are drawn: what matters is "
               "that the two distances are alike)" if direct > 0.2 else "")
            + ". The guesses came from q, yet what comes out follows p."
        )
        lesson(view.trace(first_ids), view.trace(total_variation),
               note=(f"{n:,} rounds: as many as fit in this machine's time budget here "
                     f"(at most {ROUNDS:,})." if n < ROUNDS else None))
    controls.measure_again("speculative_again", view.again, ("speculative",),
                           label="Run again", help="Make and time both generations again.")
    st.caption(f"Each generation stops at {TOKENS} tokens or after {RUN_BUDGET:g} s, "
               "whichever comes first (a round of guesses is never cut); "
               + (f"each ran {run.tries} times, in turns, and the faster try of each counts"
                  if run.tries > 1 else "each ran once (the first took long enough)")
               + f"; {duration(run.seconds_in_all)} in all, the check included. Seed "
               f"{run.seed} (Chapter 1's). {view.machine.describe()}.")
    return (f"The draft's guesses were kept {rate:.0%} of the time: {made / len(run.rounds):.2f} "
            f"tokens per forward of the model, {speed:.2f}× the speed of plain decoding here, "
            "and the same distribution of tokens.")
