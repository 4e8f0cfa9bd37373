"""Serving a class, as test_serve.py checks it on a machine without a container runtime.

- base_image(): a local Debian bookworm with Python 3.11 and pip, made with debootstrap and
  imported into podman: what the Dockerfile's public default (python:3.11-slim-bookworm)
  gives, where registries other than Debian's and PyPI are out of reach.
- build_image(): `podman build --isolation=chroot` of the repository's Dockerfile on that
  base, uv reading the host's own uv cache (CI downloads no wheel twice).
- mounted(), spec(), start(): a command of the image (its Entrypoint + Cmd, or its
  HEALTHCHECK), as its USER, with its Env and WorkingDir and its volumes mounted, started
  from the image's read-only filesystem with chroot in a private mount namespace
  (`unshare`), as a container runtime would start it.
- name_server(), haproxy(): dnsmasq answering for the replicas' name, and HAProxy from
  Debian with the repository's deploy/haproxy.cfg in front of them.

Run as a program (`python tests/serve.py SPEC`), it is the part of start() that enters the
image: mounts, chroot, user, exec. Tools are installed by .ci/run.
"""

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI") == "true"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
# what python:3.11-slim-bookworm has that matters here: python and python3 on PATH, pip,
# CA certificates (pip's downloads); bookworm's python3 is 3.11
BASE_PACKAGES = ["python3", "python3-pip", "python-is-python3", "ca-certificates"]
IMAGE = "localhost/token-by-token:test"
# the host's own certificate authorities (a network may intercept TLS): the local base trusts
# what the machine building it trusts, as a base made on that machine would
HOST_CAS = Path("/usr/local/share/ca-certificates")
PROXY_CONFIG = ROOT / "deploy" / "haproxy.cfg"


def need(*tools: str) -> None:
    """Every tool on PATH, or: fail in CI (.ci/run installs them), skip elsewhere."""
    import pytest  # not when run as a program, inside the image's namespace

    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} missing: .ci/run installs it (apt-get install)"
        pytest.fail(message) if CI else pytest.skip(message)


def run(*args, **kwargs) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs).stdout


def host_cas() -> list[Path]:
    return sorted(HOST_CAS.glob("*.crt")) if HOST_CAS.is_dir() else []


def base_image(workdir: Path) -> str:
    """The local base image, made once per recipe (its tag is the recipe's hash)."""
    recipe = hashlib.sha256(json.dumps([SUITE, BASE_PACKAGES]).encode())
    for ca in host_cas():
        recipe.update(ca.read_bytes())
    tag = f"localhost/token-by-token-base:{SUITE}-{recipe.hexdigest()[:12]}"
    if subprocess.run(["podman", "image", "exists", tag]).returncode == 0:
        return tag
    rootfs = workdir / "rootfs"
    try:
        run("debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            SUITE, str(rootfs), MIRROR)
        if host_cas():
            for ca in host_cas():
                shutil.copy(ca, rootfs / "usr/local/share/ca-certificates" / ca.name)
            run("chroot", str(rootfs), "update-ca-certificates")
        for cache in ["var/cache/apt/archives", "var/lib/apt/lists"]:
            for path in (rootfs / cache).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run("podman", "import", "--change", 'CMD ["python3"]', "-", tag, stdin=tar.stdout)
        assert tar.wait() == 0
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tag


def uv_cache_dir() -> str:
    return run(os.environ.get("UV", "uv"), "cache", "dir").strip()


def build_image(base: str, log: Path) -> str:
    """The repository's Dockerfile built FROM `base`. uv reads and fills the host's uv
    cache (mounted at the build's UV_CACHE_DIR); podman keeps the layers, so a rebuild after
    a code change redoes only the layers after `COPY . .`."""
    with open(log, "w") as out:
        subprocess.run(
            ["podman", "build", "--isolation=chroot", "--format=docker",
             f"--build-arg=BASE={base}", "--build-arg=UV_CACHE_DIR=/root/.cache/uv",
             f"--volume={uv_cache_dir()}:/root/.cache/uv", f"--tag={IMAGE}", str(ROOT)],
            check=True, stdout=out, stderr=subprocess.STDOUT)
    # the previous build of the tag, now untagged: ~6 GB each, never needed again
    run("podman", "image", "prune", "--force")
    return IMAGE


def inspect(image: str) -> dict:
    return json.loads(run("podman", "image", "inspect", image))[0]


@contextmanager
def mounted(image: str):
    """The image's filesystem, read-only, as podman's overlay mount of its layers."""
    root = Path(run("podman", "image", "mount", image).strip())
    try:
        yield root
    finally:
        run("podman", "image", "unmount", image)


def user_ids(root: Path, user: str) -> tuple[int, int]:
    """USER as uid and gid: `uid[:gid]` or a name from the image's /etc/passwd."""
    name, _, group = user.partition(":")
    if not name.isdigit():
        entry = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
                     if line.split(":")[0] == name)
        name, group = entry[2], group or entry[3]
    return int(name), int(group or name)


def home(root: Path, uid: int) -> str:
    """The user's home in the image's /etc/passwd (a runtime sets HOME from it), else /."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 5 and fields[2] == str(uid):
            return fields[5]
    return "/"


def spec(root: Path, config: dict, argv: list[str], volumes: dict[str, Path], **env) -> dict:
    """What enter() needs to start `argv` in the image as its config says."""
    image_env = dict(item.split("=", 1) for item in config.get("Env", []))
    uid, gid = user_ids(root, config.get("User") or "0")
    image_env.setdefault("HOME", home(root, uid))
    return {"root": str(root), "workdir": config.get("WorkingDir") or "/", "uid": uid,
            "gid": gid, "argv": argv, "env": {**image_env, **env},
            "volumes": {path: str(host) for path, host in volumes.items()}}


def command(config: dict) -> list[str]:
    return (config.get("Entrypoint") or []) + (config.get("Cmd") or [])


def healthcheck(info: dict) -> list[str]:
    """The HEALTHCHECK's command (`podman image inspect` shows it beside Config, docker inside
    it): ["CMD", argv...] or ["CMD-SHELL", line]."""
    found = info.get("Healthcheck") or info.get("Config", {}).get("Healthcheck") or {}
    test = found.get("Test") or []
    if test[:1] == ["CMD-SHELL"]:
        return ["/bin/sh", "-c", test[1]]
    assert test[:1] == ["CMD"], f"no HEALTHCHECK command: {test}"
    return test[1:]


def start(entry: dict, log) -> subprocess.Popen:
    """enter(entry) in a private mount namespace: its mounts go away with the process."""
    return subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", sys.executable, __file__,
         json.dumps(entry)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def enter(entry: dict) -> None:
    """Inside the new mount namespace: the kernel's filesystems, a fresh /tmp and the image's
    volumes on the image's root, then chroot, working directory, user, exec."""
    root = entry["root"]
    mounts = [["-t", "proc", "proc", "proc"], ["--rbind", "/dev", "dev"],
              ["--rbind", "/sys", "sys"], ["-t", "tmpfs", "tmpfs", "tmp"]]
    mounts += [["--bind", host, path.lstrip("/")] for path, host in entry["volumes"].items()]
    for *how, target in mounts:
        subprocess.run(["mount", *how, os.path.join(root, target)], check=True)
    os.chroot(root)
    os.chdir(entry["workdir"])
    os.setgroups([])
    os.setgid(entry["gid"])
    os.setuid(entry["uid"])
    os.execvpe(entry["argv"][0], entry["argv"], entry["env"])


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> float:
    """Seconds until `url`/_stcore/health answers 200."""
    start_time = time.monotonic()
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return time.monotonic() - start_time
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() - start_time > timeout:
            raise RuntimeError(f"{url} never answered its health check")
        time.sleep(0.1)


def free_udp_port() -> int:
    with socket.socket(type=socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def name_server(names: dict[str, list[str]], workdir: Path):
    """dnsmasq on 127.0.0.1, answering each name with its addresses (all at once, as
    Docker's DNS answers a compose service's name with every replica's address)."""
    hosts = workdir / "hosts"
    hosts.write_text("".join(f"{address} {name}\n" for name, addresses in names.items()
                             for address in addresses))
    port = free_udp_port()
    log = open(workdir / "dnsmasq.log", "w")
    process = subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--user=root",
         f"--addn-hosts={hosts}", "--listen-address=127.0.0.1", "--bind-interfaces",
         f"--port={port}", "--log-queries", "--log-facility=-"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()


class Proxy:
    """HAProxy with deploy/haproxy.cfg; `restart()` ends it (every open websocket drops) and
    starts it again, as a teacher restarting the proxy would."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.url = f"http://{env['BIND']}"
        self.stats_url = f"http://{env['STATS']}/;csv"
        self.process = None

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(PROXY_CONFIG)], env={**os.environ, **self.env},
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)  # hard stop: connections are closed
            self.process.wait(timeout=20)

    def restart(self) -> None:
        self.stop()
        self.start()

    def servers(self) -> dict[str, dict]:
        """The replica slots HAProxy filled from DNS, by name: status, address, cookie."""
        text = urllib.request.urlopen(self.stats_url, timeout=5).read().decode()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {row["svname"]: row for row in rows if row["pxname"] == "replicas"
                and row["svname"] != "BACKEND" and row["addr"]}

    def wait_up(self, count: int, timeout: float = 60) -> dict[str, dict]:
        """Until `count` replicas resolved and passed their health check."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                up = {name: row for name, row in self.servers().items()
                      if row["status"] == "UP" and row["check_status"] == "L7OK"}
                if len(up) == count:
                    return up
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy never had {count} replicas up: see {self.log}")
            time.sleep(0.2)

    def requests(self) -> list[dict]:
        """The class frontend's log lines: client, server, status, captured cookie, request."""
        lines = []
        for line in self.log.read_text().splitlines():
            parts = line.split()
            if len(parts) > 10 and parts[2] == "class" and "/" in parts[3]:
                lines.append({"server": parts[3].split("/")[1], "status": parts[5],
                              "cookie": parts[7], "request": line.split('"')[1]})
        return lines


@contextmanager
def haproxy(dns: str, replicas: str, workdir: Path, port: int, stats_port: int):
    """HAProxy from Debian with the repository's configuration: learners on 127.0.0.1:port;
    the addresses come from the environment, as in compose.yaml."""
    proxy = Proxy({"DNS": dns, "REPLICAS": replicas, "BIND": f"127.0.0.1:{port}",
                   "STATS": f"127.0.0.1:{stats_port}"}, workdir / "haproxy.log")
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


if __name__ == "__main__":
    enter(json.loads(sys.argv[1]))
