"""Which model, loading it once per process, download progress, and clear errors.

The model id comes from TOKEN_BY_TOKEN_MODEL: a Hugging Face model id (downloaded once into the
local Hugging Face cache), a local model directory, or `pocket`, the small model built into the
app (token_by_token/pocket, trained by scripts/train_pocket_model.py). Default: Qwen/Qwen3-0.6B,
with the pocket model as the automatic fallback when Qwen3 can't be had.
"""

import atexit
import ctypes
import gc
import json
import os
import threading
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import streamlit as st
import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from token_by_token.locks import FORWARD_LOCK  # noqa: F401  (every forward holds it)
from token_by_token.tokens import markdown_literal, vocabulary

DEFAULT_MODEL = "Qwen/Qwen3-0.6B"
POCKET = "pocket"
POCKET_DIR = Path(__file__).parent / "pocket"
MAX_TOKENS = 1024  # the context cap for the learner's text plus generated tokens
FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja"]  # what from_pretrained reads



def return_large_blocks_to_the_system() -> None:
    """Make glibc give every block over 1 MB its own mapping, returned when freed.

    By default glibc raises that threshold as large blocks are freed (up to 32 MB), and then
    serves the next ones from its heap, which it keeps: Chapter 2's many 16-64 MB attention
    temporaries left the process 0.6 GB larger at 512 tokens (peak 2.90 GB, 2.30 GB with
    this; forward time unchanged, measured). No effect where glibc is not the allocator."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MB
    except (OSError, AttributeError):
        pass


return_large_blocks_to_the_system()


def set_aside_what_lives_on() -> None:
    """Keep the garbage collector off the objects that live as long as the process.

    Streamlit collects garbage after every script run (its option runner.postScriptGC), and a
    full collection walks every object Python tracks: with torch, transformers and a model
    loaded, ~490,000 objects, 0.25 s after each slider move (measured). Called once the model
    is loaded, gc.freeze() moves the objects alive then (the modules, the model) out of the
    collector's sight (after one last collection, so that no garbage of the loading is kept
    for good); what the sessions make later is still collected after each run."""
    gc.collect()
    gc.freeze()


atexit.register(gc.unfreeze)  # at exit, the interpreter collects everything as usual


class ModelUnavailable(Exception):
    """The model can't be loaded; the message says what happened and what to do."""


@dataclass(frozen=True)
class Loaded:
    """The shared, read-only model and tokenizer, and facts derived from them once."""
    model_id: str
    tokenizer: object
    model: torch.nn.Module
    eos_ids: frozenset[int]   # generation stops when one of these is sampled
    max_tokens: int           # the context cap: ours, or the model's if smaller
    vocab_size: int           # rows of the embedding table = columns of the logits
    fallback: str | None = None  # why the pocket model stands in for the default model


def model_id() -> str:
    return os.environ.get("TOKEN_BY_TOKEN_MODEL", "").strip() or DEFAULT_MODEL


def load() -> Loaded:
    """The model for TOKEN_BY_TOKEN_MODEL, loaded once per process and shared by all learners."""
    return _load(model_id())


@st.cache_resource(show_spinner="Loading the model…")
def _load(name: str) -> Loaded:
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


def _from_dir(path: str, name: str) -> Loaded:
    try:
        check_files(Path(path))
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    except Exception as error:  # a missing or corrupt file: say which, and what to do
        raise ModelUnavailable(
            f"The model in `{path}` could not be loaded: {_first_line(error)}\n\n"
            "Check that the directory holds `config.json`, `tokenizer.json` and "
            "`model.safetensors`, or set `TOKEN_BY_TOKEN_MODEL` to another model."
        ) from error
    model.requires_grad_(False)
    # the vocabulary lookup's index, built while the learner reads (0.2 s at Qwen3's size)
    threading.Thread(target=vocabulary, args=(tokenizer,), daemon=True).start()
    eos = model.generation_config.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
    if tokenizer.eos_token_id is not None:
        eos_ids.add(tokenizer.eos_token_id)
    loaded = Loaded(
        model_id=name, tokenizer=tokenizer, model=model, eos_ids=frozenset(eos_ids),
        max_tokens=min(MAX_TOKENS, model.config.max_position_embeddings),
        vocab_size=model.config.vocab_size,
    )
    set_aside_what_lives_on()
    return loaded


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


def _local_path(name: str) -> str:
    """A local directory as it is; a hub id from the local cache, else downloaded once."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    try:
        return snapshot_download(name, allow_patterns=FILES, local_files_only=True)
    except LocalEntryNotFoundError:
        pass  # not downloaded yet
    except HFValidationError as error:
        raise ModelUnavailable(
            f"`{name}` is neither a local directory nor a Hugging Face model id. "
            "Set `TOKEN_BY_TOKEN_MODEL` to a model id such as `Qwen/Qwen3-0.6B` or to a "
            "directory that holds a model."
        ) from error
    try:
        return snapshot_download(name, allow_patterns=FILES, tqdm_class=ProgressBar)
    except RepositoryNotFoundError as error:
        raise ModelUnavailable(
            f"There is no model `{name}` on the Hugging Face hub. Check the spelling of "
            "`TOKEN_BY_TOKEN_MODEL`, or unset it to use Qwen/Qwen3-0.6B."
        ) from error
    except (LocalEntryNotFoundError, OSError) as error:
        raise ModelUnavailable(
            f"`{name}` is not in the local Hugging Face cache and could not be downloaded "
            f"({_first_line(error)}).\n\n"
            "Connect to the internet once and reload the page: the model is downloaded once "
            "and then works offline. Or set `TOKEN_BY_TOKEN_MODEL` to a local model directory."
        ) from error


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class ProgressBar(tqdm):
    """A tqdm that also drives an st.progress bar: bytes done of bytes in total.

    huggingface_hub updates it from its download threads, so it remembers the page's script
    context to write to the page from those threads.
    """

    def __init__(self, *args, **kwargs):
        self._ctx = get_script_run_ctx()
        self._bar = None
        super().__init__(*args, **{**kwargs, "disable": False})
        if self._ctx and self.unit == "B":
            self._bar = st.progress(0.0)

    def refresh(self, *args, **kwargs):
        super().refresh(*args, **kwargs)
        if self._bar is None or not self.total:
            return
        add_script_run_ctx(threading.current_thread(), self._ctx)
        done = min(self.n / self.total, 1.0)
        self._bar.progress(
            done, text=f"Downloading {self.n / 1e6:,.0f} MB of {self.total / 1e6:,.0f} MB"
        )

    def update(self, n=1):
        super().update(n)
        self.refresh()

    def close(self):
        super().close()
        if self._bar is not None:
            self._bar.empty()


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


def load_or_explain() -> Loaded:
    """load(), or a clear message in the page (never a traceback) and the page stops.
    When the pocket model stands in for Qwen3, a banner says why and how to get Qwen3."""
    try:
        loaded = load()
    except ModelUnavailable as error:
        st.error(str(error), icon="🚫")
        st.stop()
    if loaded.fallback:
        with st.container(border=True):
            st.warning(
                f"**Running on the pocket model.** {DEFAULT_MODEL} could not be loaded: "
                f"{loaded.fallback}\n\nThe pocket model is a small Qwen3-architecture model "
                f"built into this app, trained on {pocket_corpus()}. It works fully "
                "offline and its next-token guesses are real, but it knows far less than "
                f"{DEFAULT_MODEL}. To switch, connect to the internet and press the button "
                "(a one-time download of about 1.5 GB).", icon="🎒")
            st.button(f"Try {DEFAULT_MODEL} again", on_click=_load.clear)
    name = "pocket (built in)" if loaded.model_id == POCKET else loaded.model_id
    st.sidebar.caption(f"Model: {markdown_literal(name)}")
    return loaded
