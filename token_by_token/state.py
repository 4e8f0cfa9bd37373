"""The learner's choices, in one place: session-state keys and defaults, each slider with its
label and range, the share link, and the callbacks that change choices.

Everything else on a page is derived from these (DESIGN.md: derive, don't store); the values
derived from them that a rerun keeps live in the learner's Memo (token_by_token/memo.py).
"""

import math
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

import streamlit as st

from token_by_token import catalog

DEFAULT_TEXT = "The quick brown fox jumps over the lazy"

# The sampling sliders when the page opens: Qwen3's model card advises these for non-thinking
# mode (enable_thinking=False; the page opens with Thinking off). For thinking mode it advises
# THINKING, "the default setting in generation_config.json" (what Qwen3's file holds).
SAMPLING_DEFAULTS = {"temperature": 0.7, "top_k": 20, "top_p": 0.8, "min_p": 0.0}
THINKING = {"temperature": 0.6, "top_k": 20, "top_p": 0.95, "min_p": 0.0}

# keys of buttons: a click is an action, not a choice (a button's value can't be set)
BUTTONS = frozenset({"generate", "play", "stop", "resample", "reset", "branch", "proof",
                     # Chapter 3: each section's Measure again (Run again for § 5)
                     "roofline_again", "batching_again", "quantize_again", "speculative_again"})

# the choices the next id is drawn with: a section that shows a sample READS these
SAMPLE = frozenset({*SAMPLING_DEFAULTS, "seed", "resamples"})
# what the text box and the modes change (a text edit also clears the generated ids)
TEXT_CHOICES = frozenset({"text", "chat", "thinking", "autoregressive", "generated",
                          "previous_ids"})

DEFAULTS = {
    "model": None,           # the sidebar's picker; None: TOKEN_BY_TOKEN_MODEL (init fills it)
    "text": DEFAULT_TEXT,
    **SAMPLING_DEFAULTS,
    "seed": 42,
    "resamples": 0,          # how many times "Resample" was pressed
    "autoregressive": False,
    "chat": False,           # Chapter 1: the text is a user message in the chat template
    "thinking": False,       # Chapter 1: the template's enable_thinking (Qwen3)
    "generated": [],         # ids appended by autoregression since the text was last edited
    "previous_ids": [],      # the generated sequence, when it was handed back as text
    "play_tokens": 20,       # how many tokens Play generates
    "layer": 0,              # Chapter 2: the layer opened up
    "head": 0,               # Chapter 2: the query head looked at
    "position": None,        # Chapter 2: the position looked at (None: the last)
    "window": 16,            # Chapter 2: query positions the attention heatmaps show
    "halfway": False,        # Chapter 2: the logit lens also reads halfway through each layer
    "lookup": "",            # Chapter 1: the vocabulary lookup's query
    "heatmap_rows": 12,      # Chapter 1: positions the logits heatmap shows (at most the text's)
    "branch_step": None,     # Chapter 1: the generated step a branch starts at (None: the last)
    "branch_token": None,    # Chapter 1: the token the branch takes there (None: the first)
    "batch_length": 1024,    # Chapter 3 § 2: tokens per sequence, for the KV-cache memory sum
    "flash_block": 4,        # Chapter 3 § 3: keys per block of the online softmax
    "quant_scheme": "int8",  # Chapter 3 § 4: "int8" or "4-bit"
    "spec_draft": "layers",  # Chapter 3 § 5: "layers" (the first L layers) or "lookup"
    "spec_layers": None,     # Chapter 3 § 5: the draft's layers L (None: half the model's)
    "spec_k": 4,             # Chapter 3 § 5: tokens the draft guesses per round
    "spec_temperature": 0.0,  # Chapter 3 § 5: 0 is greedy
    "paged_block": 16,       # Chapter 3 § 6: positions per block of the paged KV cache
    "paged_learners": 30,    # Chapter 3 § 6: sequences in the memory sum
    "paged_length": 256,     # Chapter 3 § 6: tokens per sequence
    "paged_prefix": 32,      # Chapter 3 § 6: positions every sequence shares
    # the table alternatives of the charts, in expanders: open or not (built only when open)
    "table_tokens": False, "table_logits": False, "table_filters": False,
    "table_timeline": False, "table_patterns": False,
}


@dataclass(frozen=True)
class Range:
    """A numeric choice: its label on the page and the values it may take."""
    label: str
    low: float
    high: float
    step: float


# Each filter has an "off" end and a greedy end: temperature 1.0 is off; top_k 0 is off,
# 1 is greedy; top_p 1.0 is off, 0.0 is greedy; min_p 0.0 is off, 1.0 is greedy.
SLIDERS = {
    "temperature": Range("Temperature", 0.05, 2.0, 0.05),
    "top_k": Range("Top-K (0 = off)", 0, 100, 1),
    "top_p": Range("Top-P", 0.0, 1.0, 0.01),
    "min_p": Range("Min-P", 0.0, 1.0, 0.01),
}
RANGES = {**SLIDERS, "seed": Range("Seed", 0, 2**31 - 1, 1)}

SHARED_IDS = 200  # a share link carries the generated ids when there are at most this many


def flag(value: str) -> bool:
    """A yes/no choice from a share link ("true"/"false"; bool("false") would be True)."""
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ValueError(value)


def id_list(value: str) -> list[int]:
    """Generated ids from a share link, written 1,2,3: at most SHARED_IDS, none negative."""
    ids = [int(part) for part in value.split(",") if part.strip()]
    if len(ids) > SHARED_IDS or any(i < 0 for i in ids):
        raise ValueError(value)
    return ids


# What a share link carries (?text=…&temperature=…), and how to read each value back.
SHARED = {"model": str, "text": str, "temperature": float, "top_k": int, "top_p": float,
          "min_p": float, "seed": int, "chat": flag, "thinking": flag, "autoregressive": flag,
          "generated": id_list}


def default(key: str):
    """A choice's default: DEFAULTS', but the model's comes from TOKEN_BY_TOKEN_MODEL."""
    return catalog.default_id() if key == "model" else DEFAULTS[key]


def init() -> None:
    """Call first on every page: fill in defaults and keep choices across page switches."""
    state = st.session_state
    first_run = "text" not in state
    for key in DEFAULTS:
        if key not in state or key == "model" and not state[key]:
            value = default(key)
            state[key] = value.copy() if isinstance(value, list) else value
        else:
            # Streamlit forgets a widget's value when a page without that widget runs;
            # writing it back makes it the learner's value, kept across pages.
            state[key] = state[key]
    if first_run:
        read_share_link()


def read_share_link() -> None:
    """Take the choices a share link carries; clamp numbers to their range, skip what doesn't
    parse."""
    for key, kind in SHARED.items():
        if key not in st.query_params:
            continue
        try:
            value = kind(st.query_params[key])
        except (ValueError, OverflowError):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if key in RANGES:
            value = kind(min(max(value, RANGES[key].low), RANGES[key].high))
        st.session_state[key] = value
    if st.session_state["generated"]:  # generated ids are read in Autoregressive mode
        st.session_state["autoregressive"] = True


def unknown_generated(loaded) -> str | None:
    """Generated ids (from a share link) that are not rows of this model are left out; what
    the page must say about it."""
    ids = st.session_state["generated"]
    bad = [i for i in ids if not 0 <= i < loaded.vocab_size]
    if not bad:
        return None
    ids[:] = [i for i in ids if 0 <= i < loaded.vocab_size]
    return (f"The link's generated ids {', '.join(map(str, bad[:5]))}"
            f"{' …' if len(bad) > 5 else ''} are not ids of this model (it has "
            f"{loaded.vocab_size:,}): they were left out.")


def link_value(value) -> str:
    """A choice as a share link writes it: ids as 1,2,3."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


LINK_LIMIT = 8 * 1024  # bytes of query string: servers and proxies refuse longer addresses


def encoded_length(key: str, value: str) -> int:
    """Bytes of `key=value` in an address (the browser escapes ~ too; quote does not)."""
    return len(key) + 1 + len(quote(value, safe="")) + 2 * value.count("~")


@lru_cache(maxsize=16)
def link_text(tokenizer, text: str, max_tokens: int, budget: int) -> str:
    """The part of `text` a share link carries: what the page reads (the first max_tokens
    tokens), cut at a token's end to fit `budget` bytes in the address."""
    spans = tokenizer(text, add_special_tokens=False,
                      return_offsets_mapping=True)["offset_mapping"]
    if len(spans) <= max_tokens:
        spans = [*spans[:-1], (0, len(text))]  # all of it, up to the last character
    # where the first n tokens end a character (the bytes of one character share its span)
    ends = [end for n, (_, end) in enumerate(spans[:max_tokens], start=1)
            if n == len(spans) or spans[n][0] >= end]
    low, high = 0, len(ends)  # the longest prefix of whole tokens that fits
    while low < high:
        middle = (low + high + 1) // 2
        if encoded_length("text", text[: ends[middle - 1]]) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[: ends[low - 1]] if low else ""


def write_share_link(loaded) -> str | None:
    """Keep the address bar a share link: every shared choice that differs from its default.
    Returns what the page must say when the link can't carry the whole text."""
    state = st.session_state
    wanted = {key: link_value(state[key]) for key in SHARED if state[key] != default(key)}
    note = None
    if len(state["generated"]) > SHARED_IDS:
        del wanted["generated"]
        note = (f"The share link carries your text and settings, not the "
                f"{len(state['generated']):,} generated ids (at most {SHARED_IDS}).")
    if "text" in wanted:
        others = sum(encoded_length(k, v) + 1 for k, v in wanted.items() if k != "text")
        text, read = wanted["text"], link_text(loaded.tokenizer, wanted["text"],
                                               loaded.max_tokens, math.inf)
        wanted["text"] = link_text(loaded.tokenizer, text, loaded.max_tokens,
                                   LINK_LIMIT - others)
        if len(wanted["text"]) < len(text):
            wanted.pop("generated", None)  # they would follow another text
            note = (f"The address bar is a share link of your choices. It carries the first "
                    f"{len(wanted['text']):,} of your {len(text):,} characters: "
                    + ("the text this page reads, up to the context cap." if wanted["text"] == read
                       else "a longer address would not load (servers and proxies refuse "
                       f"addresses over {LINK_LIMIT // 1024} KB)."))
    if wanted != st.query_params.to_dict():
        st.query_params.from_dict(wanted)
    return note


def model_sampling(generation_config) -> dict | None:
    """The sampling settings `model.generate()` uses for this model when called without any:
    its generation_config.json's, and for what the file leaves unset the library's global
    defaults (transformers' GenerationConfig._get_default_generation_params, as generate()'s
    _prepare_generation_config fills them in); a setting generate() leaves off (min_p None,
    top_k 0) is the slider's off value. None when the file doesn't sample (do_sample unset or
    false: generate() then decodes greedily and applies none of them)."""
    if not getattr(generation_config, "do_sample", False):
        return None
    from transformers import GenerationConfig  # (not for the floor page: bench/floor.py)
    defaults = GenerationConfig._get_default_generation_params()
    value = {key: getattr(generation_config, key, None) for key in SAMPLING_DEFAULTS}
    value = {key: defaults.get(key) if v is None else v for key, v in value.items()}
    off = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    return {key: off[key] if v is None else type(off[key])(v) for key, v in value.items()}


def unset(generation_config) -> list[str]:
    """The sampling settings a generation_config leaves unset, and what generate() does with
    each: "min_p unset: off", "top_p unset: the library's default, 1"."""
    from transformers import GenerationConfig
    defaults = GenerationConfig._get_default_generation_params()
    return [f"{key} unset: " + ("off" if defaults.get(key) is None else
                                f"the library's default, {defaults[key]:g}")
            for key in SAMPLING_DEFAULTS if getattr(generation_config, key, None) is None]


@dataclass(frozen=True)
class Reset:
    """What the sampling Reset button sets, its label and its help (whose values they are)."""
    values: dict
    label: str
    help: str


def said(values: dict) -> str:
    """Sampling settings as the help text names them: temperature 0.6, top_k 20, …"""
    return ", ".join(f"{key} {value:g}" for key, value in values.items())


def on_sliders(values: dict) -> dict:
    """Values as the sliders can hold them: within each slider's range, on its steps."""
    kept = {}
    for key, value in values.items():
        r = SLIDERS[key]
        value = min(max(value, r.low), r.high)
        kept[key] = type(value)(round(round((value - r.low) / r.step) * r.step + r.low, 6))
    return kept


def sampling_reset(generation_config) -> Reset:
    """The Reset button for this model: its own generation_config's sampling settings when it
    has some (what generate() samples with), else the values the page opens with."""
    found = model_sampling(generation_config)
    if found is None:
        return Reset(dict(SAMPLING_DEFAULTS), "Reset to the page's starting values",
                     f"{said(SAMPLING_DEFAULTS)}: the values the page opens with, Qwen3's "
                     "model-card advice for non-thinking mode (for thinking mode it advises "
                     f"{said(THINKING)}). This model's generation_config.json has no sampling "
                     "settings: its generate() decodes greedily unless told to sample.")
    values, defaulted = on_sliders(found), unset(generation_config)
    mode = [name for name, advice in (("thinking", THINKING),
                                      ("non-thinking", SAMPLING_DEFAULTS)) if advice == found]
    return Reset(values, "Reset to the model's generation_config",
                 f"{said(values)}: this model's generation_config.json"
                 + (f" ({'; '.join(defaulted)})" if defaulted else "")
                 + ", what model.generate() samples with when called without settings"
                 + (f", to the sliders' steps (it says {said(found)})" if values != found else "")
                 + (f"; Qwen3's model card advises them for {mode[0]} mode" if mode else "")
                 + f". The page opens at {said(SAMPLING_DEFAULTS)}, Qwen3's advice for "
                 "non-thinking mode.")


def reset_sampling(values: dict = SAMPLING_DEFAULTS) -> None:
    """on_click of the Reset button: the sampling sliders to `values` (Reset.values)."""
    st.session_state.update(values)


def resample() -> None:
    """on_click of "Resample": the next draw from the same probabilities."""
    st.session_state["resamples"] += 1


def text_edited() -> None:
    """on_change of the text: a new text is a new sequence, so earlier generation is gone."""
    st.session_state["generated"] = []
    st.session_state["previous_ids"] = []


def model_changed() -> None:
    """on_change of the model picker: the text stays (the new model reads it with its own
    tokenizer); ids of the old vocabulary, and choices made among them, are gone."""
    state = st.session_state
    state["generated"], state["previous_ids"] = [], []
    state["branch_step"] = state["branch_token"] = state["position"] = None
