"""Getting a model from the Hugging Face hub: what it would download and how much, and one
download for all of its files, the tokenizer's first, that goes on where it stopped.

- `plan(repo)` asks the hub for the repository's files (`/api/models/{repo}/revision/main`,
  then `/api/models/{repo}/tree/{commit}`): the ones from_pretrained reads, with their sizes.
- A `Download` fetches them in a background thread, shared by every learner who picked that
  model: the small files first (config, tokenizer, chat template: Section 1 works as soon as
  they are in), then the weights. One progress for all the bytes: done, total, MB/s, time left.
- A dropped connection is retried a few times at once; if it stays down, the download stops
  with a message, and what arrived stays on disk (`blobs/<etag>.part`): Retry asks the hub
  for the rest only (an HTTP Range request). (huggingface_hub 2.4's own download deletes a
  partial file when it gives up, so this module fetches the bytes itself, and files them
  the way huggingface_hub does: `blobs/<etag>`, `snapshots/<commit>/<file>` linking to it,
  `refs/main`, and the tree listing, so that `snapshot_download(local_files_only=True)` finds
  the model offline afterwards, and knows a partial one for what it is.)

HF_ENDPOINT (a stand-in for the hub, in the tests), HF_HUB_CACHE / HF_HOME and HF_TOKEN are
read when a call is made, not when the module is imported.
"""

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub._tree_cache import TreeCacheEntry, read_tree_cache, write_tree_cache
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import (
    _cache_commit_hash_for_specific_revision,
    _create_symlink,
    get_hf_file_metadata,
    hf_hub_url,
    repo_folder_name,
)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from token_by_token.catalog import size

PATTERNS = (".json", ".safetensors", ".txt", ".jinja")  # what from_pretrained reads
TIMEOUT = 10.0    # seconds without a byte before a request counts as failed
RETRIES = 3       # quick retries of a dropped connection before the download stops


class HubError(Exception):
    """The hub can't give this model; the message says why, in the learner's words."""

    def __init__(self, message: str, offline: bool = False):
        super().__init__(message)
        self.offline = offline


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def cache_dir() -> Path:
    """The Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def storage(repo: str) -> Path:
    return cache_dir() / repo_folder_name(repo_id=repo, repo_type="model")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def is_weights(path: str) -> bool:
    return path.endswith(".safetensors")


def wanted(paths: list[str]) -> list[str]:
    """The files from_pretrained reads: top-level config, tokenizer and weights files. Of the
    weights, the transformers ones (model*.safetensors) when there are any (a repository may
    also hold another program's copy of the same weights, e.g. consolidated.safetensors)."""
    top = [p for p in paths if "/" not in p and p.endswith(PATTERNS)]
    ours = [p for p in top if is_weights(p) and p.startswith("model")]
    return [p for p in top if not is_weights(p) or not ours or p in ours]


@dataclass(frozen=True)
class Plan:
    """What a download of `repo` fetches: its files at one commit, small ones first."""
    repo: str
    commit: str
    files: tuple[tuple[str, int], ...]  # (path, bytes), the weights last

    @property
    def total(self) -> int:
        return sum(n for _, n in self.files)

    @property
    def weights(self) -> int:
        return sum(n for path, n in self.files if is_weights(path))


def hub_error(repo: str, error: Exception) -> HubError:
    """What went wrong, said for the page."""
    if isinstance(error, GatedRepoError):
        return HubError(
            f"`{repo}` is a gated model: its authors ask each user to accept its licence on "
            f"https://huggingface.co/{repo} first, while logged in. Accept it there, then log "
            "in on this machine (`hf auth login`, or set HF_TOKEN) and try again.")
    if isinstance(error, RepositoryNotFoundError):
        return HubError(f"There is no model `{repo}` on the Hugging Face hub (or it is private). "
                        "Check the spelling.")
    if isinstance(error, RevisionNotFoundError):
        return HubError(f"`{repo}` has no `main` branch on the hub.")
    if isinstance(error, (httpx2.TransportError, OfflineModeIsEnabled)):
        return HubError(f"The Hugging Face hub can't be reached from here ({first_line(error)}).",
                        offline=True)
    if isinstance(error, HfHubHTTPError):
        return HubError(f"The hub answered with an error for `{repo}` ({first_line(error)}).")
    return HubError(f"`{repo}` could not be listed on the hub ({first_line(error)}).")


def first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def plan(repo: str, timeout: float = TIMEOUT, record: bool = True) -> Plan:
    """Ask the hub which files `repo` has, and their sizes; raises HubError. `record`: file
    the list in the cache (a download starts; not for a size the picker shows)."""
    if offline():
        raise HubError("HF_HUB_OFFLINE is set: the hub is not asked.", offline=True)
    api = HfApi(endpoint=endpoint())
    try:
        commit = api.repo_info(repo, timeout=timeout).sha
        tree = [f for f in api.list_repo_tree(repo, revision=commit) if isinstance(f, RepoFile)]
    except Exception as error:  # every failure becomes a sentence
        raise hub_error(repo, error) from error
    sizes = {f.path: f for f in tree}
    paths = wanted(list(sizes))
    paths.sort(key=lambda p: (is_weights(p), p))
    if not record:
        return Plan(repo, commit, tuple((p, sizes[p].size) for p in paths))
    write_tree_cache(str(storage(repo)), commit, {
        p: TreeCacheEntry(size=sizes[p].size, blob_id=sizes[p].blob_id,
                          lfs_sha256=sizes[p].lfs.sha256 if sizes[p].lfs else None,
                          lfs_size=sizes[p].lfs.size if sizes[p].lfs else None,
                          xet_hash=sizes[p].xet_hash) for p in paths})
    # refs/main now: the picker can tell a partial download (the tree says what is missing)
    _cache_commit_hash_for_specific_revision(str(storage(repo)), "main", commit)
    return Plan(repo, commit, tuple((p, sizes[p].size) for p in paths))


def cached_plan(repo: str) -> Plan | None:
    """The plan of the last download of `repo` started here (from the cache, offline)."""
    folder = storage(repo)
    try:
        commit = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return None
    entries = read_tree_cache(str(folder), commit)
    if not entries:
        return None
    paths = sorted(entries, key=lambda p: (is_weights(p), p))
    return Plan(repo, commit, tuple((p, entries[p].size) for p in paths))


def on_disk(plan: Plan) -> dict[str, int]:
    """Bytes of each planned file already here: whole files in the snapshot, parts of files
    in blobs/<etag>.part (an interrupted download)."""
    snapshot = storage(plan.repo) / "snapshots" / plan.commit
    found = {}
    for path, total in plan.files:
        if (snapshot / path).exists():
            found[path] = total
        else:
            parts = list((storage(plan.repo) / "blobs").glob(f"*.{path_tag(path)}.part"))
            found[path] = max((p.stat().st_size for p in parts), default=0)
    return found


def path_tag(path: str) -> str:
    return path.replace("/", "_")


def complete(plan: Plan) -> bool:
    snapshot = storage(plan.repo) / "snapshots" / plan.commit
    return all((snapshot / path).exists() for path, _ in plan.files)


@dataclass
class Download:
    """One model's download, in a background thread, shared by the learners who picked it."""
    plan: Plan
    done: dict = field(default_factory=dict)   # path -> bytes on disk
    state: str = "running"                     # running, done, failed
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    tokenizer_ready: threading.Event = field(default_factory=threading.Event)
    samples: deque = field(default_factory=lambda: deque(maxlen=64))  # (time, bytes done)

    def start(self) -> "Download":
        self.done = on_disk(self.plan)
        self.resumed = self.bytes_done
        self.samples.append((time.monotonic(), self.bytes_done))
        threading.Thread(target=self._run, daemon=True, name=f"download {self.plan.repo}").start()
        return self

    @property
    def bytes_done(self) -> int:
        return sum(self.done.values())

    @property
    def total(self) -> int:
        return self.plan.total

    def rate(self) -> float:
        """Bytes per second over the last few seconds (0 until there is something to say)."""
        now = time.monotonic()
        recent = [(t, n) for t, n in self.samples if now - t <= 5.0] or list(self.samples)[-1:]
        (t0, n0), (t1, n1) = recent[0], (now, self.bytes_done)
        return (n1 - n0) / (t1 - t0) if t1 - t0 > 0.2 else 0.0

    def said(self) -> str:
        """"Downloading Qwen/Qwen3-0.6B: 412 MB of 1.50 GB · 48.2 MB/s · about 23 s left"."""
        done, total, rate = self.bytes_done, self.total, self.rate()
        text = f"Downloading {self.plan.repo}: {size(done)} of {size(total)}"
        if rate > 0:
            text += f" · {rate / 1e6:,.1f} MB/s · about {seconds((total - done) / rate)} left"
        return text

    def _run(self) -> None:
        try:
            for path, total in self.plan.files:
                if not self.tokenizer_ready.is_set() and is_weights(path):
                    self.tokenizer_ready.set()  # every file but the weights is in
                self._fetch(path, total)
            self.tokenizer_ready.set()
            self.state = "done"
        except Exception as error:  # said on the page, with a Retry button
            self.error = self._failure(error)
            self.state = "failed"
        finally:
            self.finished = time.monotonic()

    def _failure(self, error: Exception) -> str:
        kept = self.bytes_done
        if isinstance(error, httpx2.TransportError):
            return (f"The download of {self.plan.repo} stopped at {size(kept)} of "
                    f"{size(self.total)}: the connection dropped ({first_line(error)}). What "
                    "arrived is kept: press Retry and it goes on from there.")
        if isinstance(error, OSError):
            return (f"The download of {self.plan.repo} stopped at {size(kept)} of "
                    f"{size(self.total)}: a file could not be written ({first_line(error)}).")
        return (f"The download of {self.plan.repo} stopped at {size(kept)} of "
                f"{size(self.total)}: {hub_error(self.plan.repo, error)}")

    def _fetch(self, path: str, total: int) -> None:
        """One file into the cache: its bytes into blobs/<etag>.<path>.part (appended to
        what an earlier attempt left), then moved to blobs/<etag> and linked from the
        snapshot, as huggingface_hub files it."""
        folder = storage(self.plan.repo)
        pointer = folder / "snapshots" / self.plan.commit / path
        if pointer.exists():
            self.done[path] = total
            return
        url = hf_hub_url(self.plan.repo, path, revision=self.plan.commit, endpoint=endpoint())
        meta = get_hf_file_metadata(url, timeout=TIMEOUT, endpoint=endpoint())
        blob = folder / "blobs" / meta.etag
        part = blob.with_name(f"{meta.etag}.{path_tag(path)}.part")
        blob.parent.mkdir(parents=True, exist_ok=True)
        for stale in blob.parent.glob(f"*.{path_tag(path)}.part"):
            if stale != part:  # a part of another version of this file
                stale.unlink(missing_ok=True)
        if not blob.exists():
            self._receive(meta.location, part, meta.size or total, path)
            part.replace(blob)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(pointer), new_blob=True)
        self.done[path] = total

    def _receive(self, url: str, part: Path, total: int, path: str) -> None:
        """Append the rest of the file to `part`, retrying a dropped connection RETRIES
        times (each retry that got bytes through starts the count again)."""
        tries = 0
        while True:
            have = part.stat().st_size if part.exists() else 0
            self.done[path] = have
            if have >= total:
                return
            try:
                self._stream(url, part, have, path)
                tries = 0
            except httpx2.TransportError:
                tries = 0 if (part.stat().st_size if part.exists() else 0) > have else tries + 1
                if tries >= RETRIES:
                    raise
                time.sleep(1.0)

    def _stream(self, url: str, part: Path, have: int, path: str) -> None:
        headers = build_hf_headers()
        headers["Accept-Encoding"] = "identity"
        if have:
            headers["Range"] = f"bytes={have}-"
        with get_session().stream("GET", url, headers=headers, timeout=TIMEOUT,
                                  follow_redirects=True) as response:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            mode = "ab" if have and response.status_code == 206 else "wb"
            written = have if mode == "ab" else 0
            with open(part, mode) as out:
                for chunk in response.iter_bytes():  # as they arrive: none lost to a cut
                    out.write(chunk)
                    written += len(chunk)
                    self.done[path] = written
                    self.samples.append((time.monotonic(), self.bytes_done))


def seconds(s: float) -> str:
    """23 s, 4 min 10 s, 1 h 5 min."""
    s = max(int(round(s)), 1)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


# --- the downloads of this process ----------------------------------------------------------

_DOWNLOADS: dict[str, Download] = {}
_LOCK = threading.Lock()


def download(repo: str, the_plan: Plan, retry: bool = False) -> Download:
    """The download of `repo` in this process: the running one, or a new one (a failed one
    only on retry)."""
    with _LOCK:
        current = _DOWNLOADS.get(repo)
        if current is None or (retry and current.state == "failed"):
            current = _DOWNLOADS[repo] = Download(the_plan).start()
        return current


def running(repo: str) -> Download | None:
    return _DOWNLOADS.get(repo)


def forget(repo: str) -> None:
    with _LOCK:
        _DOWNLOADS.pop(repo, None)


# --- what the picker says about each model -------------------------------------------------

_SIZES: dict[str, int | str] = {}  # repo -> bytes to download, or why unknown
_ASKED = threading.Event()


def in_cache(repo: str) -> str | None:
    """The snapshot directory of a model that is whole in the local cache, else None."""
    try:
        path = snapshot_download(repo, allow_patterns=[f"*{p}" for p in PATTERNS],
                                 local_files_only=True, cache_dir=str(cache_dir()))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    plan_here = cached_plan(repo)
    if plan_here is not None and not complete(plan_here):
        return None
    folder = Path(path)
    if not (folder / "config.json").exists() or not any(folder.glob("*.safetensors")):
        return None  # only some of its files (e.g. the ones a comparison reads)
    return path


def ask_sizes(repos: list[str]) -> None:
    """Look up, once per process and in the background, how much each model would download
    (the hub's file list); offline, each is noted as unknown."""
    if _ASKED.is_set():
        return
    _ASKED.set()

    def work():
        for repo in repos:
            try:
                _SIZES[repo] = plan(repo, timeout=5.0, record=False).total
            except HubError as error:
                _SIZES[repo] = "offline" if error.offline else str(error)
            except Exception as error:  # (a size is only a hint)
                _SIZES[repo] = first_line(error)
    threading.Thread(target=work, daemon=True, name="model sizes").start()


def status(repo: str) -> str:
    """In the cache or not, and how large: "in the cache, 1.50 GB"; "1.50 GB to download";
    "412 MB of 1.50 GB in the cache"; "not in the cache; size unknown offline"."""
    if in_cache(repo) is not None:
        here = storage(repo) / "snapshots"
        found = sum(f.stat().st_size for f in here.rglob("*") if f.is_file())
        return f"in the cache, {size(found)}"
    known = _SIZES.get(repo)
    partial = cached_plan(repo)
    if partial is not None and (got := sum(on_disk(partial).values())):
        return f"{size(got)} of {size(partial.total)} in the cache"
    if isinstance(known, int):
        return f"{size(known)} to download"
    if known == "offline":
        return "not in the cache; size unknown (the hub can't be reached)"
    if known is None:
        return "not in the cache; asking the hub its size…"
    return "not in the cache; size unknown"
