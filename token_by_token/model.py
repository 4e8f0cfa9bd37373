"""Which model, loading it, the models this process keeps, download progress, and clear errors.

Each learner picks a model in the sidebar (token_by_token/catalog.py says which they may);
TOKEN_BY_TOKEN_MODEL sets the one the page opens with: a Hugging Face model id (downloaded once
into the local Hugging Face cache), a local model directory, or `pocket`, the small model built
into the app (token_by_token/pocket, trained by scripts/train_pocket_model.py). Default:
Qwen/Qwen3-0.6B, with the pocket model as the automatic fallback when Qwen3 can't be had.

A loaded model is shared read-only by every learner who picked it. The process keeps models
loaded within a memory budget (catalog.memory_budget): loading one that doesn't fit drops the
least recently used ones first, and the page of a learner whose model was dropped says so. A
model that is not in the cache is downloaded in the background (token_by_token/hub.py): the
page shows one progress bar, and Section 1 works with the tokenizer while the weights come.
"""

import atexit
import gc
import json
import math
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import streamlit as st
import torch
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from token_by_token import catalog, controls, dtypes, hub
from token_by_token.catalog import DEFAULT_MODEL, POCKET, size
from token_by_token.locks import FORWARD_LOCK  # noqa: F401  (every forward holds it)
from token_by_token.memo import memo_of
from token_by_token.tokens import markdown_literal, vocabulary

POCKET_DIR = Path(__file__).parent / "pocket"
MAX_TOKENS = 1024  # the context cap for the learner's text plus generated tokens


def set_aside_what_lives_on() -> None:
    """Keep the garbage collector off the objects that live as long as the process.

    Streamlit collects garbage after every script run (its option runner.postScriptGC), and a
    full collection walks every object Python tracks: with torch, transformers and a model
    loaded, ~490,000 objects, 0.25 s after each slider move (measured). gc.freeze() moves the
    objects alive now out of the collector's sight, after a collection of the young
    generations (where the garbage of a model's loading is). Called when this module is
    imported (the modules so far: later automatic full collections, while a model's code is
    imported and the first page is drawn, walk only what came after; 0.93 → 0.57 s of a first
    page's start-up, measured) and once a model is loaded (the model). Not a collection of the
    oldest generation: at start-up it took 0.25 s and found 10 objects, 1.3 KB of cycles left
    from the imports (measured with Qwen3-0.6B's shape). What the sessions make later is still
    collected after each run; a model dropped later is collected by unfreezing first
    (`make_room`)."""
    gc.collect(1)
    gc.freeze()


atexit.register(gc.unfreeze)  # at exit, the interpreter collects everything as usual
set_aside_what_lives_on()  # the modules imported so far


class ModelUnavailable(Exception):
    """The model can't be loaded; the message says what happened and what to do."""


@dataclass(frozen=True)
class Loaded:
    """The shared, read-only model and tokenizer, and facts derived from them once. While the
    weights download, `model` is None: the tokenizer and the config's facts are there."""
    model_id: str
    tokenizer: object
    model: torch.nn.Module | None
    eos_ids: frozenset[int]   # generation stops when one of these is sampled
    max_tokens: int           # the context cap: ours, or the model's if smaller
    vocab_size: int           # rows of the embedding table = columns of the logits
    fallback: str | None = None  # why the pocket model stands in for the default model
    dtype: str = ""           # why this dtype: "float32: on this CPU, against bfloat16, …"
    serial: int = 0           # which load of this model (a learner's memo follows it)
    nbytes: int = 0           # bytes of its weights in memory

    @property
    def ready(self) -> bool:
        """True once the weights are loaded (False: only the tokenizer, while they come)."""
        return self.model is not None


# --- which model --------------------------------------------------------------------------

def model_id() -> str:
    """The model the page opens with (TOKEN_BY_TOKEN_MODEL, else Qwen/Qwen3-0.6B)."""
    return catalog.default_id()


def chosen() -> str:
    """The model this learner picked (the picker's key `model`), else the default."""
    if get_script_run_ctx() is not None:
        picked = st.session_state.get("model")
        if picked:
            return str(picked).strip()
    return catalog.default_id()


def kind(name: str) -> str:
    """pocket, dir or hub. A name the teacher configured may be any existing directory; a
    typed one is a directory only if it is written as a path (`/`, `.`, `~`)."""
    if name == POCKET:
        return "pocket"
    if catalog.looks_like_a_path(name):
        return "dir"
    if name in catalog.choices() and Path(name).expanduser().is_dir():
        return "dir"
    return "hub"


# --- the models this process keeps -----------------------------------------------------------

@dataclass(frozen=True)
class Dropped:
    """A model that was unloaded to make room: when, and for which."""
    when: float
    for_model: str
    budget: int


class Shelf:
    """The models loaded in this process, least recently used first, within the budget."""

    def __init__(self):
        self.lock = threading.RLock()     # the shelf's contents
        self.loading = threading.Lock()   # one load at a time
        self.models: OrderedDict[tuple, Loaded] = OrderedDict()
        self.dropped: dict[str, Dropped] = {}
        self.serials = 0
        self.tokenizers: dict[str, object] = {}  # kept across a drop: tokens.py caches by it

    def get(self, key) -> Loaded | None:
        with self.lock:
            found = self.models.get(key)
            if found is not None:
                self.models.move_to_end(key)
            return found

    def put(self, key, loaded: Loaded) -> Loaded:
        with self.lock:
            self.serials += 1
            loaded = replace(loaded, serial=self.serials)
            self.models[key] = loaded
            self.dropped.pop(loaded.model_id, None)
            return loaded

    def used(self) -> int:
        with self.lock:
            return sum(m.nbytes for m in self.models.values())

    def make_room(self, name: str, needed: int, budget: int) -> list[str]:
        """Drop the least recently used models until `needed` more bytes fit the budget;
        returns the names dropped."""
        gone = []
        with self.lock:
            while self.models and self.used() + needed > budget:
                key, old = self.models.popitem(last=False)
                self.dropped[old.model_id] = Dropped(time.time(), name, budget)
                gone.append(old.model_id)
                forget_in_sessions(old)
        if gone:
            gc.unfreeze()  # let the collector see the dropped models' objects again
            gc.collect()
            gc.freeze()
        return gone

    def clear(self, name: str | None = None) -> None:
        with self.lock:
            for key in [k for k in self.models if name is None or k[0] == name]:
                del self.models[key]


SHELF = Shelf()


def forget_in_sessions(old: Loaded) -> None:
    """Every learner's memo of values made with a dropped model lets go of it (their next
    run reloads it): otherwise an idle learner's memo would keep the weights in memory. Best
    effort: only the sessions of this Streamlit server (none under AppTest)."""
    try:
        sessions = Runtime.instance()._session_mgr.list_active_sessions()
    except Exception:  # no runtime (tests, scripts): nothing to reach
        return
    for info in sessions:
        try:
            memo = info.session.session_state["_memo"]
        except Exception:
            continue
        if getattr(memo, "model_id", None) == old.model_id:
            with memo.lock:
                memo.forget()


def key_of(name: str) -> tuple:
    return (name, dtypes.setting())


def load(name: str | None = None) -> Loaded:
    """The model `name` (default: the learner's choice, outside a page the default model),
    loaded once per process and shared by every learner; waits for a download if needed."""
    return _load(name or chosen())


def _load(name: str) -> Loaded:
    """`name` loaded, from the shelf if it is there."""
    found = SHELF.get(key_of(name))
    if found is not None:
        return found
    with SHELF.loading:
        found = SHELF.get(key_of(name))
        if found is not None:
            return found
        return SHELF.put(key_of(name), _open(name))


def forget(name: str) -> None:
    """Drop `name` from the shelf (the pocket model's banner: try the default model again)."""
    SHELF.clear(name)


def _open(name: str) -> Loaded:
    if name == POCKET:
        return _from_dir(str(POCKET_DIR), POCKET)
    try:
        path = _local_path(name)
    except ModelUnavailable as error:
        if name != DEFAULT_MODEL:  # a model the learner chose: say what went wrong
            raise
        reason = str(error).split("\n\n")[0]  # what happened, without the advice
        return replace(_from_dir(str(POCKET_DIR), POCKET), fallback=reason)
    return _from_dir(path, name)


def shapes_in(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in the checkpoint's safetensors files, read from their headers
    (8 bytes of length, then JSON): no weight is loaded."""
    shapes = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        shapes.update({name: tuple(entry["shape"]) for name, entry in header.items()
                       if name != "__metadata__"})
    return shapes


def parameters_in(path: Path) -> int:
    """Numbers in the checkpoint, from the safetensors headers; a .bin checkpoint is
    estimated from its size (2 bytes each)."""
    total = sum(math.prod(shape) for shape in shapes_in(path).values())
    return total or sum(f.stat().st_size for f in Path(path).glob("*.bin")) // 2


def shapes_of(config) -> tuple[int, int]:
    """(hidden, intermediate) of a config, whichever names its architecture uses."""
    config = getattr(config, "text_config", None) or config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0)
    wide = (getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
            or 4 * hidden)
    return int(hidden), int(wide)


def weight_bytes(model) -> int:
    """Bytes of the weights in memory (a tied table counted once)."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def _from_dir(path: str, name: str) -> Loaded:
    try:
        check_files(Path(path))
        tokenizer = tokenizer_of(path, name)
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        numbers = parameters_in(Path(path))
        budget = catalog.memory_budget()
        choice = dtypes.choose(*shapes_of(config), numbers, budget)
        needed = numbers * torch.finfo(choice.dtype).bits // 8
        if needed > budget:
            raise ModelUnavailable(
                f"`{name}` needs {size(needed)} of memory in {choice.name}, more than this "
                f"app's budget of {size(budget)} for loaded models (`{catalog.MEMORY}`).")
        SHELF.make_room(name, needed, budget)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=choice.dtype,
                                                     trust_remote_code=False).eval()
    except ModelUnavailable:
        raise
    except Exception as error:  # a missing or corrupt file: say which, and what to do
        raise ModelUnavailable(
            f"The model in `{path}` could not be loaded: {_first_line(error)}\n\n"
            "Check that the directory holds `config.json`, `tokenizer.json` and "
            "`model.safetensors`, or pick another model."
        ) from error
    model.requires_grad_(False)
    loaded = Loaded(
        model_id=name, tokenizer=tokenizer, model=model, eos_ids=end_ids(model.generation_config,
                                                                         tokenizer),
        max_tokens=min(MAX_TOKENS, model.config.max_position_embeddings),
        vocab_size=model.config.vocab_size, dtype=choice.reason, nbytes=weight_bytes(model),
    )
    set_aside_what_lives_on()
    return loaded


def tokenizer_of(path: str, name: str):
    """The tokenizer of `name`, loaded once per process (kept when its model is dropped:
    token_by_token/tokens.py keeps what it worked out per tokenizer)."""
    with SHELF.lock:
        found = SHELF.tokenizers.get(name)
    if found is not None:
        return found
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    # the vocabulary lookup's index, built while the learner reads (0.2 s at Qwen3's size)
    threading.Thread(target=vocabulary, args=(tokenizer,), daemon=True).start()
    with SHELF.lock:
        return SHELF.tokenizers.setdefault(name, tokenizer)


def end_ids(generation_config, tokenizer) -> frozenset[int]:
    """The ids that end generation: the generation config's eos_token_id (one or a list) and
    the tokenizer's end-of-text token."""
    eos = getattr(generation_config, "eos_token_id", None)
    ids = {eos} if isinstance(eos, int) else set(eos or [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


def tokenizer_only(path: str, name: str) -> Loaded:
    """The tokenizer and the config's facts, while the weights download."""
    tokenizer = tokenizer_of(path, name)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    try:
        generation = GenerationConfig.from_pretrained(path)
    except OSError:
        generation = GenerationConfig.from_model_config(config)
    text = getattr(config, "text_config", None) or config
    return Loaded(name, tokenizer, None, end_ids(generation, tokenizer),
                  min(MAX_TOKENS, getattr(text, "max_position_embeddings", MAX_TOKENS)),
                  getattr(text, "vocab_size", len(tokenizer)), serial=-1)


def check_files(path: Path) -> None:
    """from_pretrained can quietly build an empty tokenizer when its files are missing."""
    needed = {
        "config.json": ["config.json"],
        "tokenizer.json": ["tokenizer.json", "vocab.json"],
        "model.safetensors": ["*.safetensors", "*.bin"],
    }
    for name, patterns in needed.items():
        if not any(any(path.glob(pattern)) for pattern in patterns):
            raise FileNotFoundError(f"`{name}` is missing")


in_cache = hub.in_cache


def _local_path(name: str) -> str:
    """A local directory as it is; a hub id from the local cache, else downloaded once (here,
    waiting: the page itself downloads in the background, `load_or_explain`)."""
    if kind(name) == "dir":
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ModelUnavailable(
                f"`{name}` is neither a local directory nor a Hugging Face model id. Pick a "
                "model id such as `Qwen/Qwen3-0.6B`, or a directory that holds a model.")
        return str(path)
    if not catalog.HUB_ID.match(name):
        raise ModelUnavailable(
            f"`{name}` is neither a local directory nor a Hugging Face model id. Pick a model "
            "id such as `Qwen/Qwen3-0.6B`, or a directory that holds a model.")
    if (path := in_cache(name)) is not None:
        return path
    planned = plan_of(name)
    got = hub.download(name, planned, retry=True)
    while got.state == "running":
        time.sleep(0.1)
    if got.state == "failed":
        raise ModelUnavailable(got.error)
    return str(hub.storage(name) / "snapshots" / planned.commit)


def plan_of(name: str) -> "hub.Plan":
    """The hub's file list for `name`, within the download cap; else ModelUnavailable."""
    try:
        planned = hub.plan(name)
    except hub.HubError as error:
        if error.offline:
            raise ModelUnavailable(
                f"`{name}` is not in the local Hugging Face cache and could not be downloaded "
                f"({error}).\n\nConnect to the internet once and reload the page: the model is "
                "downloaded once and then works offline. Or pick a model that is in the cache, "
                "or set `TOKEN_BY_TOKEN_MODEL` to a local model directory.") from error
        raise ModelUnavailable(str(error)) from error
    cap = catalog.max_download()
    if planned.total > cap:
        raise ModelUnavailable(
            f"`{name}` is {size(planned.total)} to download, more than this app allows "
            f"({size(cap)}; the person who runs it can raise `{catalog.MAX_DOWNLOAD}`).")
    return planned


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@cache
def pocket_corpus() -> str:
    """What the pocket model was trained on, read from its training_report.json: "26.8 million
    characters of documentation: 2.1 million (8%) from Python's standard library …"."""
    corpus = json.loads((POCKET_DIR / "training_report.json").read_text())["corpus"]
    sources, total = corpus["sources"], corpus["characters"]
    python = sources["python"]["characters"]
    others = sorted((s for s in sources if s != "python"),
                    key=lambda s: sources[s]["characters"], reverse=True)
    return (f"{total / 1e6:.1f} million characters of documentation: "
            f"{python / 1e6:.1f} million ({python / total:.0%}) from Python's standard library "
            f"(its docstrings and language reference), the rest docstrings of "
            f"{', '.join(others[:3])} and {len(others) - 3} more libraries this app installs")


# --- in the page --------------------------------------------------------------------------

def weights_or_stop(loaded: Loaded, needs: str) -> None:
    """A chapter that `needs` the weights (what it does with them, in words) says so and stops
    the page while they download; Chapter 1's Section 1 works with the tokenizer meanwhile."""
    if not loaded.ready:
        st.info(f"This chapter {needs}: it appears as soon as their download (above) is "
                "done. Chapter 1's Section 1 works with the tokenizer meanwhile.", icon="⏳")
        st.stop()


def load_or_explain() -> Loaded:
    """The learner's model, or a clear message in the page (never a traceback) and the page
    stops. While it downloads: a progress bar, and a Loaded holding only the tokenizer once its
    files are in (Section 1 works with it). When the pocket model stands in for Qwen3, a
    banner says why and how to get Qwen3."""
    name = chosen()
    if refused := catalog.refusal(name):
        st.error(refused, icon="🚫")
        back_to_default()
        st.stop()
    loaded = SHELF.get(key_of(name))
    if loaded is None:
        loaded = _arrive(name)
    memo_of(st.session_state).for_loaded(loaded)
    if loaded.fallback:
        with st.container(border=True):
            st.warning(
                f"**Running on the pocket model.** {DEFAULT_MODEL} could not be loaded: "
                f"{loaded.fallback}\n\nThe pocket model is a small Qwen3-architecture model "
                f"built into this app, trained on {pocket_corpus()}. It works fully "
                "offline and its next-token guesses are real, but it knows far less than "
                f"{DEFAULT_MODEL}. To switch, connect to the internet and press the button "
                "(a one-time download of about 1.5 GB).", icon="🎒")
            st.button(f"Try {DEFAULT_MODEL} again", on_click=forget, args=(DEFAULT_MODEL,))
    shown = "pocket (built in)" if loaded.model_id == POCKET else loaded.model_id
    st.sidebar.caption(f"Model: {markdown_literal(shown)}"
                       + (f" · {markdown_literal(loaded.dtype)}" if loaded.dtype else ""))
    return loaded


def back_to_default() -> None:
    """A button back to the model the page opens with (the learner's text is kept)."""
    default = catalog.default_id()
    if chosen() != default:
        st.button(f"Back to {default}", on_click=st.session_state.update,
                  kwargs={"model": default})


def _arrive(name: str) -> Loaded:
    """The model, loaded now if it is on this machine; else its download, shown."""
    dropped = SHELF.dropped.get(name)
    why = (f"{name} had been unloaded to make room for {dropped.for_model}: this app keeps "
           f"at most {size(dropped.budget)} of models in memory (`{catalog.MEMORY}`), and "
           "unloads the least recently used first" if dropped else "")
    try:
        if kind(name) != "hub" or in_cache(name) is not None:
            start = time.perf_counter()
            with st.spinner(f"Loading {name}…" + (f" ({why})" if why else ""), show_time=True):
                loaded = _load(name)
            if why:
                st.info(f"{why}. It was loaded again from this machine in "
                        f"{time.perf_counter() - start:.1f} s.", icon="♻️")
            return loaded
        return _downloading(name)
    except ModelUnavailable as error:
        st.error(str(error), icon="🚫")
        back_to_default()
        st.stop()


def _downloading(name: str) -> Loaded:
    """A hub model not in the cache: its download, started (or joined) and shown."""
    current = hub.running(name)
    if current is None:
        try:
            planned = plan_of(name)
        except ModelUnavailable:
            if name != DEFAULT_MODEL:
                raise
            return _load(name)  # the pocket model, with a banner saying why
        current = hub.download(name, planned)
    ready = current.tokenizer_ready.is_set()
    progress(name, ready)
    if ready:
        path = str(hub.storage(name) / "snapshots" / current.plan.commit)
        return tokenizer_only(path, name)
    st.stop()


@st.fragment(run_every=0.5)
def progress(name: str, tokenizer_shown: bool) -> None:
    """The download's one bar: bytes of every file, MB/s and time left. The whole page
    reruns when the tokenizer's files are in (Section 1 can be drawn) and when the weights
    are. A failure is said, with Retry (what arrived is kept)."""
    current = hub.running(name)
    if current is None:
        return
    if current.state == "done" or current.tokenizer_ready.is_set() and not tokenizer_shown:
        st.rerun(scope="app")
    if current.state == "failed":
        st.error(current.error, icon="📡")
        st.button("Retry", key="download_retry", on_click=hub.download,
                  args=(name, current.plan), kwargs={"retry": True})
        return
    done = current.bytes_done / max(current.total, 1)
    st.progress(min(done, 1.0), text=current.said())
    if current.tokenizer_ready.is_set():
        st.caption(f"The tokenizer's files are in: Section 1 of Chapter 1 works with "
                   f"{name}'s tokenizer now; the other sections appear when its weights "
                   f"({size(current.plan.weights)}) are in.")


def shelf_note() -> str:
    """What this process keeps loaded: "Loaded here: Qwen/Qwen3-0.6B 1.19 GB, pocket 5 MB,
    of a 4.00 GB budget; the least recently used is unloaded to make room"."""
    with SHELF.lock:
        kept = [f"{m.model_id} {size(m.nbytes)}" for m in reversed(SHELF.models.values())]
    return (f"Loaded here: {', '.join(kept) or 'none'}, of a {size(catalog.memory_budget())} "
            "budget; the least recently used model is unloaded to make room for another.")



def entry_status(name: str) -> str:
    """What the picker says beside a model: where it is and how large."""
    if name == POCKET:
        return f"built in, {size(sum(f.stat().st_size for f in POCKET_DIR.iterdir()))}"
    if kind(name) == "dir":
        path = Path(name).expanduser()
        found = sum(f.stat().st_size for f in path.glob("*") if f.is_file()) \
            if path.is_dir() else 0
        return f"a directory on this machine, {size(found)}" if found else "not found here"
    about = catalog.ABOUT.get(name)
    return hub.status(name) + (" · needs a Hugging Face login" if about and about.login else "")


def picker() -> None:
    """The sidebar's model picker, on every page (main.py), and what is loaded here."""
    names = catalog.choices()
    hub.ask_sizes([n for n in names if kind(n) == "hub"])
    current = st.session_state.get("model")
    labels = {n: f"{n} — {entry_status(n)}" for n in dict.fromkeys([*names, current]) if n}
    about = "; ".join(f"{e.id}: {e.about}" for e in catalog.BUILT_IN if e.id in names)
    controls.model_picker(names, labels, catalog.free_field(),
                          (f"{about}. " if about else "") + shelf_note())
