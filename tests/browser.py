"""A real browser on the real server: `streamlit run` on 127.0.0.1, driven by Playwright."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CI = os.environ.get("CI") == "true"  # .ci/run sets it: there, a missing tool is a failure
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# Chapter 1's own title in the main area: the sidebar's link to it shows the same words as soon
# as the navigation is drawn, before the page's first run has drawn anything (waiting for those
# let a test read the sidebar's text box before the run had filled it)
CHAPTER1 = '[data-testid="stMain"] h1:has-text("Chapter 1: Tokenization")'
SERVERS: dict[str, subprocess.Popen] = {}  # base URL -> its running streamlit process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(model_dir: Path | str | None, timeout: float = 120,
                     script: Path | None = None, address: str = "127.0.0.1",
                     port: int | None = None, launcher: list[str] | None = None,
                     **extra_env):
    """`streamlit run main.py` (or `script`) on a free local port (or `port`, on a loopback
    `address`); yields its base URL. model_dir None: TOKEN_BY_TOKEN_MODEL unset (the app's
    default model); "pocket": the built-in model. `launcher`: the command in place of
    `python -m streamlit` (bench/recorder.py)."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if k != "TOKEN_BY_TOKEN_MODEL"}
    env.update(extra_env)
    if model_dir is not None:
        env["TOKEN_BY_TOKEN_MODEL"] = str(model_dir)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / f"streamlit-{address}-{port}.log", "w")
    server = subprocess.Popen(
        [*(launcher or [sys.executable, "-m", "streamlit"]), "run",
         str(script or ROOT / "main.py"),
         "--server.address", address, "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://{address}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start: see {log.name}") from None
                time.sleep(0.3)
        SERVERS[url] = server
        yield url
    finally:
        SERVERS.pop(url, None)
        server.terminate()
        server.wait(timeout=20)
        log.close()


def need_chromium() -> None:
    """Chromium, or one clear message: a failure in CI (.ci/run installs it), a skip in a
    test run elsewhere, an exit outside pytest (the benchmark)."""
    if Path(CHROMIUM).is_file():
        return
    message = (f"Chromium is not at {CHROMIUM}: install it (Debian: apt-get install "
               "chromium) or set CHROMIUM to a Chromium binary")
    if "pytest" not in sys.modules:
        raise SystemExit(message)
    import pytest
    pytest.fail(message) if CI else pytest.skip(message)


@contextmanager
def chromium():
    need_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


LOADING = '[data-testid="stSkeleton"]'  # an element whose code is still being fetched


def wait_idle(page, timeout: float = 60_000) -> None:
    """After an action: the app has finished its rerun, and the browser has every element's
    code. The first element of a kind (a download button, a chart) is drawn by code the
    browser fetches then, and shows a skeleton meanwhile, after the run may have ended: a
    page read at that moment lacked Section 5's download buttons (a browser walk, about one
    time in three on one machine)."""
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_function(f"!document.querySelector('{LOADING}')", timeout=timeout)


def type_text(page, text: str) -> None:
    """Replace the sidebar text and commit it (Ctrl+Enter), then wait for the rerun."""
    area = page.get_by_role("textbox", name="Your text")
    area.fill(text)
    area.press("Control+Enter")
    page.wait_for_timeout(300)
    wait_idle(page)


def no_errors(page) -> None:
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


# An init script: counts the websocket messages the page receives (window.__received)
COUNT_MESSAGES = """(() => {
  window.__received = 0;
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", () => { window.__received += 1; });
    }
  };
})()"""


def received(page) -> int:
    """Websocket messages the page received so far (its init script: COUNT_MESSAGES)."""
    return page.evaluate("window.__received")


def shown(page) -> tuple[str, str]:
    """The text the page shows: the main area's and the sidebar's (if it has one)."""
    sidebar = page.get_by_test_id("stSidebar")
    return (page.get_by_test_id("stMain").inner_text(),
            sidebar.inner_text() if sidebar.count() else "")


def rerun_page(page) -> None:
    """A page run, as the R key gives (it sends every element anew), then idle. The page's
    init script must be COUNT_MESSAGES: the run is seen to start by the messages it sends."""
    before = received(page)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("r")
    page.wait_for_function(f"window.__received > {before}", timeout=60_000)
    page.wait_for_timeout(150)
    wait_idle(page, timeout=120_000)
