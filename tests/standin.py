"""A stand-in for the Hugging Face hub on a loopback port: model directories served as
repositories, with the paths huggingface_hub asks for (it honours HF_ENDPOINT), checked
against huggingface_hub 2.4's own code:

- GET  /api/models/{repo}/revision/{rev}   HfApi.repo_info: {"id", "sha", "siblings"}
- GET  /api/models/{repo}/tree/{rev}       HfApi.list_repo_tree: [{"type", "oid", "size",
                                           "path", "lfs"}] (one page: no Link header)
- HEAD /{repo}/resolve/{rev}/{file}        get_hf_file_metadata: X-Repo-Commit, ETag (the
                                           git blob id; LFS files: X-Linked-Etag, their
                                           sha256, and X-Linked-Size), Content-Length
- GET  /{repo}/resolve/{rev}/{file}        the bytes; a Range request gets 206 and the rest

An unknown repository answers 401 with X-Error-Code RepoNotFound, a gated one 401 with
GatedRepo (what the hub answers without a login). For the tests: `rate` throttles every file
body (bytes per second), `cut_after` closes the connection after that many bytes of a
weights file and then `down` refuses every request until it is set back to False;
`requests` records what was asked (method, path, Range header).
"""

import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub:
    """The stand-in's repositories and switches; `url` once started."""

    def __init__(self, repos: dict[str, Path], gated=()):
        self.repos = {repo: Path(d) for repo, d in repos.items()}
        self.gated = set(gated)
        self.rate: float | None = None      # bytes per second for file bodies
        self.cut_after: int | None = None   # close a weights file's stream after this many bytes
        self.down = False                   # refuse every request (a dropped network)
        self.requests: list[tuple[str, str, str | None]] = []
        self._digests: dict[Path, tuple[str, str]] = {}

    def files(self, repo: str) -> dict[str, Path]:
        return {p.name: p for p in sorted(self.repos[repo].iterdir()) if p.is_file()}

    def ids(self, path: Path) -> tuple[str, str]:
        """(git blob id, sha256) of a file, computed once."""
        if path not in self._digests:
            data = path.read_bytes()
            self._digests[path] = git_blob_id(data), hashlib.sha256(data).hexdigest()
        return self._digests[path]

    def start(self) -> "Hub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.handle(self, head=True)

            def do_GET(self):
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- answering ------------------------------------------------------------------------

    def handle(self, request, head: bool) -> None:
        path = unquote(urlparse(request.path).path)
        self.requests.append(("HEAD" if head else "GET", path, request.headers.get("Range")))
        if self.down:  # the network is gone: reset the connection
            request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                          b"\x01\x00\x00\x00\x00\x00\x00\x00")
            request.close_connection = True
            return
        if path.startswith("/api/models/"):
            return self.api(request, path.removeprefix("/api/models/"))
        if "/resolve/" in path:
            repo, rest = path.lstrip("/").split("/resolve/", 1)
            name = rest.split("/", 1)[1]
            return self.resolve(request, repo, name, head)
        self.reply(request, 404, b"not found")

    def known(self, request, repo: str) -> bool:
        if repo in self.gated:
            self.reply(request, 401, b"gated", {"X-Error-Code": "GatedRepo"})
            return False
        if repo not in self.repos:
            self.reply(request, 401, b"not found", {"X-Error-Code": "RepoNotFound"})
            return False
        return True

    def api(self, request, rest: str) -> None:
        if "/tree/" in rest:
            repo = rest.split("/tree/", 1)[0]
            if not self.known(request, repo):
                return
            listing = []
            for name, path in self.files(repo).items():
                blob, sha = self.ids(path)
                entry = {"type": "file", "oid": blob, "size": path.stat().st_size,
                         "path": name}
                if name.endswith(".safetensors"):
                    entry["lfs"] = {"oid": sha, "size": path.stat().st_size,
                                    "pointerSize": 134}
                listing.append(entry)
            return self.json(request, listing)
        repo = rest.split("/revision/", 1)[0]
        if not self.known(request, repo):
            return
        self.json(request, {"id": repo, "sha": COMMIT,
                            "siblings": [{"rfilename": n} for n in self.files(repo)]})

    def json(self, request, value) -> None:
        self.reply(request, 200, json.dumps(value).encode(),
                   {"Content-Type": "application/json"})

    def reply(self, request, status: int, body: bytes, headers=None) -> None:
        request.send_response(status)
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def resolve(self, request, repo: str, name: str, head: bool) -> None:
        if not self.known(request, repo):
            return
        path = self.files(repo).get(name)
        if path is None:
            return self.reply(request, 404, b"entry not found", {"X-Error-Code": "EntryNotFound"})
        blob, sha = self.ids(path)
        lfs = name.endswith(".safetensors")
        total = path.stat().st_size
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{blob}"', "Accept-Ranges": "bytes"}
        if lfs:
            headers.update({"X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(total)})
        start, end = 0, total - 1
        wanted = None if head else request.headers.get("Range")
        if wanted:
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last), total - 1) if last else total - 1
        request.send_response(206 if wanted else 200)
        for key, value in headers.items():
            request.send_header(key, value)
        if wanted:
            request.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        request.send_header("Content-Length", str(end + 1 - start))
        request.end_headers()
        if head:
            return
        self.body(request, path, start, end + 1, lfs)

    def body(self, request, path: Path, start: int, stop: int, lfs: bool) -> None:
        sent, began = 0, time.monotonic()
        with open(path, "rb") as f:
            f.seek(start)
            while chunk := f.read(min(64 * 1024, stop - start - sent)):
                if lfs and self.cut_after is not None and start + sent + len(chunk) > \
                        self.cut_after:
                    request.wfile.write(chunk[: self.cut_after - start - sent])
                    request.wfile.flush()
                    self.cut_after, self.down = None, True  # the network drops, and stays down
                    request.connection.shutdown(socket.SHUT_RDWR)
                    request.close_connection = True
                    return
                request.wfile.write(chunk)
                sent += len(chunk)
                if self.rate:
                    ahead = sent / self.rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
