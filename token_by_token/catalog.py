"""Which models a learner may pick, and which the server refuses: the sidebar picker's entries,
the free field's rules, the download cap and the memory budget, from the environment.

A teacher sets these; a learner never can:

- TOKEN_BY_TOKEN_MODEL: the model the page opens with (default Qwen/Qwen3-0.6B).
- TOKEN_BY_TOKEN_MODELS: the picker's entries, comma-separated (default: BUILT_IN). One entry:
  no picker at all.
- TOKEN_BY_TOKEN_ALLOW_ANY_MODEL=1: the free field (any hub id, or a directory under the
  allowed ones) on a served app. Without it the field is there only when the app listens on
  this machine alone (server.address localhost or 127.0.0.1: .streamlit/config.toml's default)
  and no TOKEN_BY_TOKEN_MODELS fixes the list.
- TOKEN_BY_TOKEN_MODEL_DIRS: the directories (separated by `:`) under which a typed local
  directory is accepted; default: the home directory when the app listens on this machine
  alone, none when it is served. Directories named in the two settings above are allowed.
- TOKEN_BY_TOKEN_MAX_DOWNLOAD_GB: a download larger than this is refused (default 5).
- TOKEN_BY_TOKEN_MEMORY_GB: the weights of every model kept loaded at once (default 4): the
  least recently used is dropped to make room.

Light on purpose (no torch): the floor page of the benchmark and the state module read it.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

DEFAULT_MODEL = "Qwen/Qwen3-0.6B"
POCKET = "pocket"
ALLOW_ANY = "TOKEN_BY_TOKEN_ALLOW_ANY_MODEL"
MODELS = "TOKEN_BY_TOKEN_MODELS"
MODEL_DIRS = "TOKEN_BY_TOKEN_MODEL_DIRS"
MAX_DOWNLOAD = "TOKEN_BY_TOKEN_MAX_DOWNLOAD_GB"
MEMORY = "TOKEN_BY_TOKEN_MEMORY_GB"
LOCAL_ADDRESSES = {"localhost", "127.0.0.1", "::1"}
GB = 1e9


@dataclass(frozen=True)
class Entry:
    """A model the picker offers by default: its id, what it is, and whether the hub asks for
    a login and an accepted licence before it serves the files (a gated repository)."""
    id: str
    about: str
    login: bool = False


# Checked against the hub's model pages (licences; "gated": the repository asks a logged-in
# user to accept the licence before serving the files). Sizes are never written here: the
# picker reads them from the hub's file list, or says it can't.
BUILT_IN = [
    Entry(POCKET, "built in: 2.5M parameters, trained on documentation; works offline"),
    Entry(DEFAULT_MODEL, "Qwen3, 0.6B parameters (Apache-2.0)"),
    Entry("Qwen/Qwen3-1.7B", "Qwen3, 1.7B parameters (Apache-2.0)"),
    Entry("HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2: the Llama architecture, 360M "
          "parameters (Apache-2.0)"),
    Entry("Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5: biases on q, k and v, 0.5B parameters "
          "(Apache-2.0)"),
    Entry("meta-llama/Llama-3.2-1B-Instruct", "Llama 3.2, 1B parameters (Llama 3.2 "
          "Community License; gated)", login=True),
    Entry("google/gemma-3-270m", "Gemma 3, 270M parameters (Gemma licence; gated)", login=True),
    Entry("openai-community/gpt2", "GPT-2 (2019), 124M parameters (MIT)"),
]
ABOUT = {entry.id: entry for entry in BUILT_IN}


def default_id() -> str:
    """The model the page opens with: TOKEN_BY_TOKEN_MODEL, else Qwen/Qwen3-0.6B."""
    return os.environ.get("TOKEN_BY_TOKEN_MODEL", "").strip() or DEFAULT_MODEL


def fixed() -> list[str] | None:
    """The teacher's list (TOKEN_BY_TOKEN_MODELS), or None when it isn't set."""
    value = os.environ.get(MODELS, "")
    entries = [part.strip() for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(entries)) or None


def choices() -> list[str]:
    """The picker's entries, the default first among the built-in ones."""
    listed = fixed()
    if listed is not None:
        return listed if default_id() in listed else [default_id(), *listed]
    entries = [entry.id for entry in BUILT_IN]
    return list(dict.fromkeys([POCKET, default_id(), *entries]))


def listen_address() -> str:
    """Where the server listens (server.address; unset means every interface)."""
    return str(st.get_option("server.address") or "")


def local_only() -> bool:
    """True when the app listens on this machine alone: its one learner owns the machine."""
    return listen_address().strip("[]") in LOCAL_ADDRESSES


def free_field() -> bool:
    """May the learner type any hub id or directory? Only on this machine alone (when no
    list was fixed), or where the teacher allowed it."""
    if os.environ.get(ALLOW_ANY, "").strip() == "1":
        return True
    return local_only() and fixed() is None


def allowed_dirs() -> list[Path]:
    """The directories under which a typed directory is accepted."""
    value = os.environ.get(MODEL_DIRS)
    if value is not None:
        roots = [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]
    else:
        roots = [Path.home()] if local_only() else []
    return [root.resolve() for root in roots]


def looks_like_a_path(name: str) -> bool:
    return name.startswith(("/", ".", "~", "\\")) or os.sep in name.strip("/").split("/", 1)[-1]


HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")


def refusal(name: str) -> str | None:
    """None when this server may open `name` for a learner, else why not, naming the
    setting that would allow it."""
    name = name.strip()
    if name in choices():
        return None
    path = looks_like_a_path(name)
    if not free_field():
        what = "a directory of the server" if path else "a model that is not in the list"
        setting = (f"`{ALLOW_ANY}=1` (and `{MODEL_DIRS}` for directories)" if path
                   else f"`{ALLOW_ANY}=1`")
        return (f"This app is served to a class, so a learner can't open {what}: pick one "
                f"of the models in the list. The person who runs it can allow any model "
                f"with {setting}, or add it to `{MODELS}`.")
    if path:
        return directory_refusal(name)
    if not HUB_ID.match(name) or ".." in name:
        return (f"`{name}` is neither a Hugging Face model id (like `Qwen/Qwen3-0.6B`) nor a "
                "directory path (starting with `/`, `~` or `.`).")
    return None


def directory_refusal(name: str) -> str | None:
    """A typed directory: accepted only under the allowed directories (symbolic links and
    `..` resolved first), and only if it is a directory."""
    roots = allowed_dirs()
    where = Path(name).expanduser().resolve()
    listed = [Path(c).expanduser().resolve() for c in choices() if looks_like_a_path(c)]
    if not any(where == root or where.is_relative_to(root) for root in roots + listed):
        allowed = ", ".join(f"`{root}`" for root in roots) or "none"
        return (f"`{name}` is not under a directory this app may read models from (allowed: "
                f"{allowed}). The person who runs it can add directories with "
                f"`{MODEL_DIRS}` (separated by `{os.pathsep}`).")
    if not where.is_dir():
        return f"`{name}` is not a directory."
    return None


def gigabytes(variable: str, default: float) -> float:
    try:
        value = float(os.environ.get(variable, default))
    except ValueError:
        return default
    return value if value > 0 else default


def max_download() -> int:
    """Bytes: a download larger than this is refused."""
    return int(gigabytes(MAX_DOWNLOAD, 5.0) * GB)


def memory_budget() -> int:
    """Bytes of weights the process keeps loaded at once."""
    return int(gigabytes(MEMORY, 4.0) * GB)


def size(n: float) -> str:
    """Bytes for people: 5 MB, 724 MB, 1.50 GB."""
    if n >= GB:
        return f"{n / GB:.2f} GB"
    return f"{max(n / 1e6, 0.1):,.1f} MB" if n < 1e7 else f"{n / 1e6:,.0f} MB"
