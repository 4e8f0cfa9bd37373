"""Serving a class: the image builds and its own command serves Chapter 1; two learners behind
HAProxy (deploy/haproxy.cfg) each keep their replica and their session. Helpers in serve.py;
what they measure goes to tests/artifacts/serve-timings.json."""

import json
import math
import os
import re
import time
from pathlib import Path

import serve
import yaml
from browser import (
    ARTIFACTS,
    CHAPTER1,
    chromium,
    free_port,
    no_errors,
    streamlit_server,
    type_text,
    wait_idle,
)
from playwright.sync_api import expect

from token_by_token.state import DEFAULT_TEXT

CHIPS = '[data-testid="stHtml"]:has(span[style*="inline-flex"])'


def record(**timings) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "serve-timings.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**known, **timings}, indent=2))
    print(timings)


def open_chapter_one(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(CHAPTER1, timeout=90_000)
    wait_idle(page)


def test_the_image_builds_and_its_own_command_serves_chapter_one(tmp_path):
    serve.need("podman", "debootstrap", "unshare", "chroot", "tar")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    base = serve.base_image(tmp_path)
    based = time.monotonic()
    image = serve.build_image(base, ARTIFACTS / "podman-build.log")
    built = time.monotonic()
    info = serve.inspect(image)
    config = info["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    uid, _ = serve.user_ids(tmp_path, config["User"])  # numeric: no passwd needed
    assert uid != 0
    assert env["STREAMLIT_SERVER_FILE_WATCHER_TYPE"] == "none"
    assert env["STREAMLIT_SERVER_ADDRESS"] == "0.0.0.0"
    assert "TOKEN_BY_TOKEN_MODEL" in env
    assert env["HF_HOME"] in config["Volumes"]
    assert "/_stcore/health'" in " ".join(serve.healthcheck(info))
    assert serve.command(config)[:3] == ["streamlit", "run", "main.py"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hf_home = tmp_path / "hf-cache"  # the volume
    hf_home.mkdir()
    os.chown(hf_home, uid, uid)
    volumes = {env["HF_HOME"]: hf_home}
    with serve.mounted(image) as root, open(ARTIFACTS / "image-command.log", "w") as log:
        assert os.statvfs(root).f_flag & os.ST_RDONLY  # it runs from a read-only root
        # bytecode compiled at install: the first start doesn't compile torch
        assert (root / "app/.venv/lib/python3.11/site-packages/torch/__pycache__").is_dir()
        check = serve.spec(root, config, serve.healthcheck(info), volumes,
                           STREAMLIT_SERVER_PORT=str(port))
        assert serve.start(check, log).wait(timeout=60) != 0  # no server yet: unhealthy

        app = serve.spec(root, config, serve.command(config), volumes,
                         TOKEN_BY_TOKEN_MODEL="pocket", STREAMLIT_SERVER_PORT=str(port))
        process = serve.start(app, log)
        try:
            to_health = serve.wait_healthy(url, process)
            status = Path(f"/proc/{process.pid}/status").read_text()
            assert f"Uid:\t{uid}\t" in status  # the image's user, not root
            assert serve.start(check, log).wait(timeout=60) == 0  # the image's HEALTHCHECK
            with chromium() as browser:
                page = browser.new_page(viewport={"width": 1280, "height": 1600})
                opened = time.monotonic()
                open_chapter_one(page, url)
                expect(page.get_by_text("Model: pocket (built in)")).to_be_visible()
                expect(page.get_by_role("textbox", name="Your text")).to_have_value(
                    DEFAULT_TEXT)
                chips = page.locator(CHIPS).first.locator('span[style*="inline-flex"]')
                expect(chips.first).to_be_visible()
                assert chips.count() > 3
                first_page = time.monotonic() - opened
                no_errors(page)
                page.screenshot(path=str(ARTIFACTS / "image-chapter1.png"))
        finally:
            serve.stop(process)
    record(base_image_s=round(based - started, 1), image_build_s=round(built - based, 1),
           image_size_gb=round(info["Size"] / 1e9, 2), time_to_health_s=round(to_health, 1),
           first_chapter1_page_s=round(first_page, 1),
           image_test_s=round(time.monotonic() - started, 1))


def served_by(page) -> list[str]:
    """Every response the page gets is tagged with the replica that answered (X-Replica)."""
    seen = []
    page.on("response", lambda response: seen.append(response.headers.get("x-replica")))
    return seen


def resample_count(page, n: int) -> None:
    expect(page.locator("p", has_text="With seed")).to_contain_text(f"resample count {n}",
                                                                    timeout=30_000)


def generated(page) -> list[int]:
    code = page.locator("code", has_text="generated = [").first.inner_text()
    return [int(i) for i in code.split("generated = [")[1].split("]")[0].split(",")]


def nudge(page, label: str, key: str, times: int) -> None:
    """Move a slider by `times` key presses, one at a time: a press that lands while the
    page is still redrawing the slider is lost (seen on a loaded machine), so it is
    pressed again until the value moves."""
    slider = page.locator('[data-testid="stSlider"]', has_text=label).get_by_role("slider")
    for _ in range(times):
        before = slider.get_attribute("aria-valuenow")
        for attempt in range(3):
            slider.focus()
            page.keyboard.press(key)
            try:
                expect(slider).not_to_have_attribute("aria-valuenow", before, timeout=5_000)
                break
            except AssertionError:
                if attempt == 2:
                    raise
        wait_idle(page)


def generate(page, n: int) -> None:
    page.get_by_role("button", name="Generate next token").click()
    expect(page.get_by_text(f"{n} generated so far")).to_be_visible(timeout=30_000)
    wait_idle(page)


def test_two_learners_keep_their_own_replica_and_session_behind_the_proxy(tmp_path):
    """Two replicas behind HAProxy with the repository's configuration: each learner's first
    request goes to the next replica, every later one (the page, its websocket, reloads, and
    the reconnection after the proxy restarts) to the same one, and the session (even what no
    share link carries: the resample count) survives."""
    serve.need("haproxy", "dnsmasq")
    port = free_port()  # both replicas listen on it, each on its own loopback address
    replicas = {"127.0.0.2": None, "127.0.0.3": None}
    with serve.name_server({"replica": list(replicas)}, tmp_path) as dns, \
            streamlit_server("pocket", address="127.0.0.2", port=port), \
            streamlit_server("pocket", address="127.0.0.3", port=port), \
            serve.haproxy(dns, f"replica:{port}", tmp_path, free_port(), free_port()) as proxy, \
            chromium() as browser:
        up = proxy.wait_up(2)
        by_address = {row["addr"]: name for name, row in up.items()}
        assert set(by_address) == {f"{address}:{port}" for address in replicas}

        learners = {}  # name -> (page, the replicas that answered it)
        for name in ["A", "B"]:
            page = browser.new_context().new_page()
            learners[name] = (page, served_by(page))
            open_chapter_one(page, proxy.url)
        a, b = learners["A"][0], learners["B"][0]
        first = {name: seen[0] for name, (_, seen) in learners.items()}
        assert first["A"] != first["B"]  # the first requests alternate between the replicas
        for name, (page, seen) in learners.items():
            assert set(seen) == {first[name]}  # then every request goes to the same one
            cookie = {c["name"]: c["value"] for c in page.context.cookies()}["replica"]
            assert cookie == up[first[name]]["cookie"]

        # each learner works: own text, a slider, Resample (kept in the session only),
        # Autoregressive mode and generated tokens
        plan = {"A": ("Learner A's own words", "ArrowRight", "0.80", 1, 2),
                "B": ("Learner B types something else", "ArrowLeft", "0.60", 2, 1)}
        for name, (text, key, temperature, resamples, tokens) in plan.items():
            page = learners[name][0]
            type_text(page, text)
            nudge(page, "Temperature", key, 2)
            expect(page.locator('[data-testid="stSlider"]', has_text="Temperature")) \
                .to_contain_text(temperature)
            for n in range(1, resamples + 1):
                page.get_by_role("button", name="Resample").click()
                resample_count(page, n)
                wait_idle(page)
            page.get_by_test_id("stCheckbox").get_by_text("Autoregressive mode").click()
            expect(page.get_by_role("button", name="Generate next token")).to_be_enabled()
            wait_idle(page)
            for n in range(1, tokens + 1):
                generate(page, n)
        ids = {name: generated(learners[name][0]) for name in plan}

        def unchanged(name: str, resamples: int | None) -> None:
            page = learners[name][0]
            text, _, temperature, _, tokens = plan[name]
            expect(page.get_by_role("textbox", name="Your text")).to_have_value(text)
            expect(page.locator('[data-testid="stSlider"]', has_text="Temperature")) \
                .to_contain_text(temperature)
            expect(page.get_by_text(f"{tokens} generated so far")).to_be_visible()
            assert generated(page) == ids[name]
            if resamples is not None:
                resample_count(page, resamples)
            other = plan["B" if name == "A" else "A"][0]
            expect(page.get_by_text(other)).to_have_count(0)
            no_errors(page)

        # The proxy restarts: every websocket drops, each page reconnects through the new
        # proxy, and the cookie brings it back to the replica that still holds its session.
        for page, _ in learners.values():
            page.wait_for_timeout(500)
        for page, _ in learners.values():
            expect(page.locator('[data-testid="stApp"]')).to_have_attribute(
                "data-test-connection-state", "CONNECTED")
        with a.expect_websocket(timeout=60_000), b.expect_websocket(timeout=60_000):
            proxy.restart()
            proxy.wait_up(2)
        for name, (page, _) in learners.items():
            expect(page.locator('[data-testid="stApp"]')).to_have_attribute(
                "data-test-connection-state", "CONNECTED", timeout=60_000)
            wait_idle(page)
            unchanged(name, resamples=plan[name][3])
            page.get_by_role("button", name="Resample").click()  # the same session goes on
            resample_count(page, plan[name][3] + 1)
            wait_idle(page)

        # A reload is a new session on the same replica, built from the share link.
        for name, (page, _) in learners.items():
            page.reload()
            page.wait_for_selector(CHAPTER1, timeout=90_000)
            wait_idle(page)
            unchanged(name, resamples=None)
            generate(page, plan[name][4] + 1)

        for name, (page, seen) in learners.items():
            assert set(seen) == {first[name]}, f"learner {name} was served by {set(seen)}"
            page.context.close()  # websockets close: HAProxy logs them
    # HAProxy's own log: each learner's cookie went to one replica, websockets included;
    # the only requests without a cookie were the two learners' first
    requests = proxy.requests()
    by_cookie = {}
    for line in requests:
        by_cookie.setdefault(line["cookie"], set()).add(line["server"])
    assert by_cookie.pop("-") == {first["A"], first["B"]}
    assert sorted(by_cookie.values()) == sorted([{first["A"]}, {first["B"]}])
    # a websocket is logged when it closes (those the restart cut, in the stopped process, are
    # not): per learner, the reconnection's and the reload's, on the learner's replica
    for name in learners:
        cookie = f"replica={up[first[name]]['cookie']}"
        streams = [line for line in requests
                   if "/_stcore/stream" in line["request"] and line["cookie"] == cookie]
        assert len(streams) >= 2
        assert {(line["server"], line["status"]) for line in streams} == {(first[name], "101")}


# The Kubernetes example and compose.yaml, read as data: they must agree with the image and
# with the benchmark's figures (deploy/README.md has the arithmetic these tests redo).

DEPLOY = serve.ROOT / "deploy"
# deploy/README.md's assumptions: an active learner's minute, and a replica busy half its time
PER_MINUTE = {"generate": 4, "play": 10, "control": 6, "text": 0.25}
BUSY_SECONDS_PER_MINUTE = 30


def manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def dockerfile(pattern: str) -> str:
    return re.search(pattern, (serve.ROOT / "Dockerfile").read_text(), re.M).group(1)


def bench(pattern: str) -> float:
    """A figure from bench/RESULTS.md (the first group of `pattern`), as a number."""
    found = re.search(pattern, (serve.ROOT / "bench" / "RESULTS.md").read_text(), re.M)
    assert found, f"bench/RESULTS.md has no {pattern!r}"
    return float(found.group(1).replace(",", ""))


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", quantity).groups()
    return float(number) * units[unit]


def test_the_kubernetes_example_is_sized_from_the_benchmark():
    docs = manifests()
    assert set(docs) >= {"Deployment", "PersistentVolumeClaim", "Service", "Ingress",
                         "Kustomization"}
    spec = docs["Deployment"]["spec"]
    pod = spec["template"]["spec"]
    app = pod["containers"][0]

    # a learner's minute of CPU time on a 2-core replica, from the measured costs
    seconds = {"generate": bench(r"^\| b \| Generate click, 505 tokens \| ([\d.]+) s"),
               "play": bench(r"^\| b \| Play, per token .*?\| ([\d.]+) s"),
               "control": max(bench(rf"^\| a \| slider rerun, {n} tokens \| ([\d.]+) s")
                              for n in (8, 60, 150)),
               "text": bench(r"^\| a \| slider rerun, 60 tokens \| [\d.]+ s \| full forward "
                             r"\| ([\d.]+) s")}
    load = sum(PER_MINUTE[what] * seconds[what] for what in PER_MINUTE)
    per_replica = math.floor(BUSY_SECONDS_PER_MINUTE / load)
    needed = {size: math.ceil(size / per_replica) for size in (30, 100)}
    readme = (DEPLOY / "README.md").read_text()
    assert f"**{per_replica} learners per replica**" in readme
    for size, replicas in needed.items():
        assert f"**A class of {size}: {replicas} replicas**" in readme
    assert spec["replicas"] >= needed[30]
    assert app["resources"]["requests"]["cpu"] == "2"  # the cores the figures were taken on
    assert {"name": "OMP_NUM_THREADS", "value": "2"} in app["env"]

    # memory per replica = peak RSS + its learners x per-learner memory
    peak = bench(r"^\| e \| peak RSS, 1024 tokens, then Chapter 2 \(MB\) \| ([\d,.]+)")
    per_learner = bench(r"RSS grew ([\d.]+) MB per session")
    learners = math.ceil(30 / spec["replicas"])
    required_mb = peak + learners * per_learner
    request = mebibytes(app["resources"]["requests"]["memory"]) * 2**20 / 1e6
    assert request >= required_mb
    assert mebibytes(app["resources"]["limits"]["memory"]) * 2**20 / 1e6 > request

    # health, port, user and cache volume are the image's
    port = int(dockerfile(r"STREAMLIT_SERVER_PORT=(\d+)"))
    assert app["ports"][0]["containerPort"] == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert app[probe]["httpGet"]["path"] == "/_stcore/health"
        assert app[probe]["httpGet"]["port"] in (port, app["ports"][0]["name"])
    assert pod["securityContext"]["runAsUser"] == int(dockerfile(r"^USER (\d+)"))
    mounts = {m["name"]: m["mountPath"] for m in app["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}
    cache = [name for name in claims if mounts.get(name) == dockerfile(r"HF_HOME=(\S+)")]
    assert cache and claims[cache[0]] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert "ReadWriteMany" in docs["PersistentVolumeClaim"]["spec"]["accessModes"]

    # one address, sticky: cookie affinity on the ingress, to the Service of these pods
    annotations = docs["Ingress"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    backend = docs["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == docs["Service"]["metadata"]["name"]
    assert docs["Service"]["spec"]["selector"].items() <= \
        spec["template"]["metadata"]["labels"].items()


def test_compose_runs_the_image_with_its_cache_and_the_repository_proxy_configuration():
    compose = yaml.safe_load((serve.ROOT / "compose.yaml").read_text())
    services = compose["services"]
    port = dockerfile(r"STREAMLIT_SERVER_PORT=(\d+)")
    cache = "hf-cache:" + dockerfile(r"HF_HOME=(\S+)")
    assert services["app"]["ports"] == [f"${{PORT:-{port}}}:{port}"]
    assert "profiles" not in services["app"]  # `docker compose up` runs it
    for name in ("app", "replica"):
        assert cache in services[name]["volumes"]
        assert "TOKEN_BY_TOKEN_MODEL" in services[name]["environment"]
    assert services["replica"]["profiles"] == services["proxy"]["profiles"] == ["class"]
    assert "ports" not in services["replica"]  # reached through the proxy only
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in \
        services["proxy"]["volumes"]
    # the configuration's defaults are compose's names: the replica service and its port
    config = (DEPLOY / "haproxy.cfg").read_text()
    assert f'"${{REPLICAS-replica:{port}}}"' in config
    assert '"${BIND-:8080}"' in config and any(
        p.endswith(":8080") for p in services["proxy"]["ports"])
    assert re.search(r"^\s+cookie \S+ insert .*dynamic", config, re.M)
