"""What the learner feels: the app in Chromium against a floor page with the same controls.

`uv run python bench/browser.py [--smoke] [--model pocket|qwen3] [--reps 8]
 [--dtype bfloat16|float32] [--split]`

The pages are served by `streamlit run` (the app's main.py, through bench/recorder.py; and
bench/floor.py: the same sidebar widgets and nothing else) and driven by one Chromium,
alternately, in one run. Chapter 1's rows have a second floor, bench/replay.py: the same
widgets, and in the main area the very elements the app sent for that interaction (recorded
as it ran), sent again with nothing computed: what Streamlit and the browser cost for the
app's elements, apart from the app's own work. Each
interaction is timed inside the page (performance.now()): from the input event (key press,
pointer down, navigation) until the expected new content is in the DOM. Beside it, the split:
  server  from the first to the last websocket message the interaction brought
  messages, KB  how many messages and bytes the server sent
  browser from the last message until the DOM stopped changing (its last mutation)
The Generate rows also give a bare transformers cached step, timed in this process's long-lived
main thread (how a learner's own script would run it), and the step time the page reports.
Results go to bench/RESULTS.md's browser section (see bench/run.py), or stdout with --smoke.

--split: the browser and the servers on cores of their own (Linux CPU affinity): Chromium
and this harness on the last core, the servers (torch on as many threads as they have cores)
and the bare step and forward on the others. A served app's case, where the learner's browser
runs on another machine, measured on one: nothing the browser does takes the model's cores.
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import IDLE, SERVERS, chromium, streamlit_server  # noqa: E402

import token_by_token  # noqa: E402,F401  (the app's thread policy, before torch loads)

FLOOR = ROOT / "bench" / "floor.py"
REPLAY = ROOT / "bench" / "replay.py"  # the second floor: the app's own elements, replayed
RECORDER = ROOT / "bench" / "recorder.py"  # serves the app, keeping what it sends for REPLAY

# Installed before any page script: notes every websocket message (arrival time, bytes) and
# the time of the last DOM change, and resolves the moment a watched pattern appears.
PROBE = """
((start, pattern) => {
  const b = window.__bench = {messages: [], lastMutation: 0, start, seen: null, mark: 0,
                              pattern: pattern === null ? null : new RegExp(pattern)};
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => b.messages.push(
        [performance.now(), e.data.byteLength ?? e.data.size ?? e.data.length]));
    }
  };
  const check = (node) => {
    const el = node.nodeType === 3 ? node.parentElement : node;
    const block = el && (el.closest?.('[data-testid="stMarkdownContainer"], h1, h2, h3') ?? el);
    return block && b.pattern.test(block.textContent);
  };
  new MutationObserver((records) => {
    const now = performance.now();
    b.lastMutation = now;
    if (b.pattern && b.seen === null && records.some((r) => check(r.target))) b.seen = now;
  }).observe(document, {subtree: true, childList: true, characterData: true});
  for (const kind of ["keydown", "pointerdown"]) {
    document.addEventListener(kind, () => { if (b.start === null) b.start = performance.now(); },
                              true);
  }
})(START, PATTERN);
"""


def probe(pattern: str | None = None) -> str:
    """The probe; with a pattern, timing starts at navigation (a first load)."""
    return (PROBE.replace("START", "null" if pattern is None else "0")
            .replace("PATTERN", "null" if pattern is None else json.dumps(pattern)))


def text_of(tokenizer, n: int) -> str:
    words = ("The quick brown fox jumps over the lazy dog while the model counts every token "
             "it reads, one position at a time, and predicts the next. ") * (n // 8 + 4)
    return tokenizer.decode(tokenizer.encode(words, add_special_tokens=False)[:n])


METRICS = {"script": "ScriptDuration", "layout": ("LayoutDuration", "RecalcStyleDuration")}


def chromium_times(page) -> dict:
    """Chromium's own clocks for this page so far (its Performance domain over CDP): seconds
    spent running JavaScript, and laying out (style and layout)."""
    if not hasattr(page, "_cdp"):
        page._cdp = page.context.new_cdp_session(page)
        page._cdp.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in page._cdp.send("Performance.getMetrics")["metrics"]}
    return {"script": metrics["ScriptDuration"],
            "layout": metrics["LayoutDuration"] + metrics["RecalcStyleDuration"]}


def arm(page, pattern: str) -> None:
    """Watch for `pattern` (a regular expression) from the next input event on."""
    page._before = chromium_times(page)
    page.evaluate("""(source) => { const b = window.__bench;
        b.start = null; b.seen = null; b.pattern = new RegExp(source);
        b.mark = b.messages.length; }""", pattern)


def settle(page, quiet_ms: int = 400) -> dict:
    """Wait until the pattern was seen, the app is idle and the DOM has been quiet; then the
    interaction's figures (seconds and counts)."""
    page.wait_for_function("window.__bench.seen !== null", timeout=120_000)
    page.wait_for_selector(IDLE, timeout=120_000)
    page.wait_for_function(
        f"performance.now() - window.__bench.lastMutation > {quiet_ms}", timeout=120_000,
        polling=50)
    b = page.evaluate("""() => { const b = window.__bench;
        return {start: b.start, seen: b.seen, last: b.lastMutation,
                messages: b.messages.slice(b.mark)}; }""")
    messages = [m for m in b["messages"] if m[0] >= b["start"]]
    first = messages[0][0] if messages else b["seen"]
    final = messages[-1][0] if messages else b["seen"]
    before, after = getattr(page, "_before", None), chromium_times(page)
    spent = {k: after[k] - before[k] if before else 0.0 for k in after}
    return {"latency": (b["seen"] - b["start"]) / 1000, **spent,
            "server": (final - first) / 1000,
            "messages": len(messages),
            "kb": sum(m[1] for m in messages) / 1000,
            "browser": max(b["last"] - final, 0) / 1000}


def first_load(browser, url: str, pattern: str) -> dict:
    """A new learner opens the page: navigation start to `pattern` in the page."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(probe(pattern))
    page.goto(url)
    figures = settle(page)
    page.close()
    return figures


def open_page(browser, url: str, wait: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(probe())
    page.goto(url)
    try:
        page.wait_for_selector(f"text={wait}", timeout=120_000)
        page.wait_for_selector(IDLE, timeout=120_000)
    except Exception as error:  # say what the page showed instead
        shown = page.inner_text("body")[:1500] if not page.is_closed() else "(closed)"
        raise RuntimeError(f"{url} did not show {wait!r} and settle; it shows:\n{shown}") \
            from error
    return page


def newest_record(records: str) -> int:
    """The number of the app's newest recorded run (-1: none yet)."""
    return max((int(run.name.split("-")[0]) for run in Path(records).glob("*.pb")), default=-1)


def replay_ready(records: str, text: str, after: int, timeout: float = 60) -> None:
    """Wait until a page run of the app recorded after run number `after` holds `text` (the
    replay draws the newest that does: bench/replay.py)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [run for run in sorted(Path(records).glob("*.pb"))
                if int(run.name.split("-")[0]) > after]
        if any(run.name.endswith("-page.pb") and text.encode() in run.read_bytes()
               for run in runs):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no page run of the app recorded after run {after} holds "
                               f"{text!r}; since then: {[run.name for run in runs]}")
        time.sleep(0.1)


def slider_step(page, label: str, pattern: str, up: bool):
    """One key press on the slider labelled `label`, until `pattern` is in the page."""
    slider = page.locator('[data-testid="stSlider"]', has_text=label).get_by_role("slider")
    slider.focus()
    arm(page, pattern)
    page.keyboard.press("ArrowRight" if up else "ArrowLeft")
    return settle(page)


def seed_step(page, pattern: str, up: bool):
    arm(page, pattern)
    page.get_by_test_id("stNumberInputStepUp" if up else "stNumberInputStepDown").click()
    return settle(page)


def click(page, name: str, pattern: str):
    arm(page, pattern)
    page.get_by_role("button", name=name).click()
    return settle(page)


def toggle_autoregression(page):
    page.get_by_test_id("stCheckbox").get_by_text("Autoregressive mode").click()
    page.get_by_role("button", name="Generate next token").wait_for(timeout=60_000)
    page.wait_for_selector(IDLE, timeout=120_000)


DTYPE = os.environ.get("TOKEN_BY_TOKEN_DTYPE", "bfloat16")  # the app's and the bare runs'


SPLIT: tuple[set, set] | None = None  # --split: (the servers' cores, the browser's)


def server_side(command: list[str]) -> list[str]:
    """A server's command, on the servers' cores when --split."""
    if SPLIT is None:
        return command
    return ["taskset", "-c", ",".join(map(str, sorted(SPLIT[0]))), *command]


@contextmanager
def on_the_servers_cores():
    """This process's timing of a bare step or forward, on the cores a server has (--split):
    the same cores, the same number of torch threads."""
    import torch
    if SPLIT is None:
        yield
        return
    threads = torch.get_num_threads()
    os.sched_setaffinity(0, SPLIT[0])
    torch.set_num_threads(len(SPLIT[0]))
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        os.sched_setaffinity(0, SPLIT[1])


def bare_step_seconds(model_dir: Path, n: int, reps: int) -> float:
    """One cached step at n tokens, in this process's main thread, the way a learner's own
    script would run it (one long-lived thread), in the dtype the app runs."""
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, DTYPE)).eval()
    ids = torch.arange(10, 10 + n)[None] % model.config.vocab_size
    cache = DynamicCache(config=model.config)
    with torch.inference_mode(), on_the_servers_cores():
        model(ids[:, :-1], cache=cache)
        times = []
        for _ in range(reps + 2):
            start = time.perf_counter()
            model(ids[:, -1:], cache=cache)
            times.append(time.perf_counter() - start)
            cache.crop(-1)
    return statistics.median(times[2:])


def idle_cpu(url: str, seconds: float = 5) -> float:
    """The server's CPU use with a page open and nothing happening, in % of one core."""
    pid = SERVERS[url].pid

    def ticks():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    before = ticks()
    time.sleep(seconds)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK") / seconds * 100


def measure(model_dir: Path, reps: int) -> tuple[list, list]:
    """Rows (interaction, app figures, floor figures) and notes, medians of `reps`."""
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows, notes = [], []

    class Told(list):  # each row and note on stderr as it is measured (a long run shows where)
        def append(self, item):
            print(item[0] if isinstance(item, tuple) else item, file=sys.stderr, flush=True)
            super().append(item)
    rows, notes = Told(), Told()
    records = tempfile.mkdtemp(prefix="bench-records-")
    env = {"TOKEN_BY_TOKEN_MODEL": str(model_dir), "TOKEN_BY_TOKEN_DTYPE": DTYPE,
           "BENCH_RECORDS": records}
    if SPLIT is not None:  # torch on one thread per core the servers have
        env["OMP_NUM_THREADS"] = str(len(SPLIT[0]))
    plain = server_side([sys.executable, "-m", "streamlit"])
    with streamlit_server(model_dir, launcher=server_side([sys.executable, str(RECORDER),
                                                           records]), **env) as app, \
            streamlit_server(model_dir, script=FLOOR, launcher=plain, **env) as floor, \
            streamlit_server(model_dir, script=REPLAY, launcher=plain, **env) as replay, \
            chromium() as browser:
        # the very first page of a fresh server loads the model too
        cold = first_load(browser, app, r"Conclusion")
        notes.append(f"First page of a fresh server (model loading included): "
                     f"{cold['latency']:.2f} s.")
        loads = {"app": [], "floor": []}
        for _ in range(reps):
            loads["app"].append(first_load(browser, app, r"Conclusion"))
            loads["floor"].append(first_load(browser, floor, r"generated so far"))
        rows.append(("first load of Chapter 1 (server up, model loaded)", *loads.values(), None))

        # the replay opens after the app: it draws the app's newest page run of Chapter 1
        mark = newest_record(records)
        pages = {"app": open_page(browser, app, "Conclusion"),
                 "floor": open_page(browser, floor, "Floor page")}
        replay_ready(records, "Chapter 1: Tokenization", after=mark)
        pages["replay"] = open_page(browser, replay, "Conclusion")
        time.sleep(2)
        notes.append(f"Idle server CPU with a page open: app {idle_cpu(app):.1f} %, floor "
                     f"{idle_cpu(floor):.1f} % of a core.")
        figures = {name: {"slider": [], "seed": [], "resample": []} for name in pages}
        for rep in range(reps):  # each interaction on the app, then the floors (the replay
            # draws what the app drew last)
            value, seed = ("0.75", 43) if rep % 2 == 0 else ("0.7", 42)
            for name, page in pages.items():
                figures[name]["slider"].append(slider_step(
                    page, "Temperature", rf"temperature = {re.escape(value)}\b",
                    up=value == "0.75"))
            for name, page in pages.items():
                pattern = rf"seed = {seed}\b" if name == "floor" else rf"With seed {seed}\b"
                figures[name]["seed"].append(seed_step(page, pattern, up=rep % 2 == 0))
            for name, page in pages.items():
                pattern = (rf"resamples = {rep + 1}\b" if name == "floor"
                           else rf"resample count {rep + 1}\b")
                figures[name]["resample"].append(click(page, "Resample", pattern))
        for kind, label in [("slider", "Temperature slider: key press"),
                            ("seed", "Seed +/−"), ("resample", "Resample")]:
            rows.append((label, figures["app"][kind], figures["floor"][kind],
                         figures["replay"][kind]))
        for page in pages.values():
            page.close()

        # Chapter 2, reached from Chapter 1 as a learner does (its forward's KV cache is there)
        # (its first open, the text of Chapter 1: the first section on screen, then the whole
        # chapter, against a bare forward of the same text, below)
        page = open_page(browser, app, "Conclusion")
        arm(page, r"1\. Embeddings — ")  # the header (the sidebar's link has no "—")
        page.get_by_test_id("stSidebarNavLink").filter(has_text="Chapter 2").click()
        page.wait_for_function("window.__bench.seen !== null", timeout=600_000)
        page.wait_for_selector("h2:has-text('Conclusion')", timeout=600_000)
        whole = page.evaluate("performance.now() - window.__bench.start") / 1000
        first_section = page.evaluate("window.__bench.seen - window.__bench.start") / 1000
        page.wait_for_selector("text=Each row is a query position of layer 0", timeout=600_000)
        page.wait_for_selector(IDLE, timeout=120_000)
        pages = {"app": page, "floor": open_page(browser, floor + "/chapter-2", "layer = 0")}
        layers = {name: [] for name in pages}
        for rep in range(reps):  # layer 1, 0, 1, …: each a layer not kept from the last change
            layer = 1 - rep % 2
            for name, page in pages.items():
                pattern = (rf"query position of layer {layer}\b" if name == "app"
                           else rf"layer = {layer}\b")
                layers[name].append(slider_step(page, "Layer", pattern, up=layer == 1))
        rows.append(("Chapter 2: Layer slider, key press", *layers.values(), None))
        heads = {name: [] for name in pages}
        for rep in range(reps):
            head = 1 - rep % 2
            for name, page in pages.items():
                pattern = rf"Query head {head} \(" if name == "app" else rf"head = {head}\b"
                heads[name].append(slider_step(page, "Query head", pattern, up=head == 1))
        rows.append(("Chapter 2: Query head slider, key press", *heads.values(), None))
        tokens = {name: [] for name in pages}
        for rep in range(reps):
            for name, page in pages.items():
                up = rep % 2 == 1  # one position back, then forward again
                slider = page.locator('[data-testid="stSlider"]', has_text="Token")
                now = int(slider.get_by_role("slider").input_value())
                new = now + (1 if up else -1)
                pattern = rf"At position {new}\b" if name == "app" else rf"position = {new}\b"
                tokens[name].append(slider_step(page, "Token", pattern, up=up))
        rows.append(("Chapter 2: Token slider, key press", *tokens.values(), None))
        for page in pages.values():
            page.close()

        # Chapter 3, reached from Chapter 1: its first open measures this machine (once per
        # process), then section 6's Learners slider against the same slider on the floor
        page = open_page(browser, app, "Conclusion")
        arm(page, r"Chapter 3 reads|machine reads")
        page.get_by_test_id("stSidebarNavLink").filter(has_text="Chapter 3").click()
        page.wait_for_selector("text=A class of learners: memory", timeout=600_000)
        page.wait_for_selector("h2:has-text('Conclusion')", timeout=600_000)
        page.wait_for_selector(IDLE, timeout=600_000)
        start = page.evaluate("window.__bench.start")
        opened = (page.evaluate("performance.now()") - start) / 1000 if start else float("nan")
        notes.append(f"Chapter 3, first open after Chapter 1 (this machine measured, once per "
                     f"process): {opened:.1f} s.")
        pages = {"app": page, "floor": open_page(browser, floor + "/chapter-3", "learners = ")}
        learners = {name: [] for name in pages}
        for rep in range(reps):
            for name, page in pages.items():
                up = rep % 2 == 0
                slider = page.locator('[data-testid="stSlider"]', has_text="Learners")
                now = int(slider.get_by_test_id("stSliderThumbValue").inner_text())
                new = now + (1 if up else -1)
                pattern = (rf"(^|\D){new} learners with" if name == "app"
                           else rf"learners = {new},")
                learners[name].append(slider_step(page, "Learners", pattern, up=up))
        rows.append(("Chapter 3: Learners slider (section 6), key press", *learners.values(),
                     None))
        for page in pages.values():
            page.close()

        for n in (10, 500):
            # greedy (top_k=1): an end-of-text token would stop generation within the reps
            query = f"/?text={quote(text_of(tokenizer, n))}&top_k=1"
            mark = newest_record(records)
            pages = {"app": open_page(browser, app + query, "Conclusion"),
                     "floor": open_page(browser, floor + query, "Floor page")}
            replay_ready(records, "Chapter 1: Tokenization", after=mark)
            pages["replay"] = open_page(browser, replay + query, "Conclusion")
            clicks = {"app": [], "floor": [], "replay": []}
            reported = []
            for page in pages.values():
                toggle_autoregression(page)
            for rep in range(reps):
                for name, page in pages.items():
                    clicks[name].append(click(page, "Generate next token",
                                              rf"(^|\D){rep + 1} generated so far"))
                caption = pages["app"].get_by_text("The last forward ran").inner_text()
                reported.append(float(re.search(r"in ([\d.,]+) ms", caption)[1]
                                      .replace(",", "")) / 1000)
            bare = bare_step_seconds(model_dir, n, reps)
            rows.append((f"Generate next token at {n} tokens", clicks["app"], clicks["floor"],
                         clicks["replay"], bare, statistics.median(reported)))
            if n == 10:  # Play: the same steps, streamed, per token
                page = pages["app"]
                tokens = page.get_by_label("Tokens to play")
                tokens.fill(str(PLAYED))
                tokens.press("Enter")
                page.wait_for_selector(IDLE, timeout=120_000)
                played = click(page, "Play", rf"(^|\D){reps + PLAYED} generated so far")
                each = played["latency"] / PLAYED
                notes.append(f"Play, {PLAYED} tokens: {each:.3f} s per token, "
                             f"{each / bare:.2f} × the bare step (target ≤ 1.15 ×: "
                             f"{'met' if each <= 1.15 * bare else 'not met'}).")
            for page in pages.values():
                page.close()
    forward = forward_seconds(model_dir, tokenizer)
    notes.append(f"Chapter 2, first open after Chapter 1 (its default text): the first section "
                 f"on screen in {first_section:.2f} s, {first_section / forward:.1f} × a bare "
                 f"forward of the same text ({forward:.3f} s; target ≤ 1.5 ×: "
                 f"{'met' if first_section <= 1.5 * forward else 'not met'}), the whole chapter "
                 f"in {whole:.2f} s, {whole / forward:.1f} × (target ≤ 4 ×: "
                 f"{'met' if whole <= 4 * forward else 'not met'}).")
    notes += targets(rows, forward)
    return rows, notes


PLAYED = 20  # tokens the Play row generates


def forward_seconds(model_dir: Path, tokenizer) -> float:
    """A bare forward of Chapter 1's default text, in this process (the first page's target)."""
    import torch
    from transformers import AutoModelForCausalLM

    from token_by_token.state import DEFAULT_TEXT
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, DTYPE)).eval()
    ids = torch.tensor([tokenizer.encode(DEFAULT_TEXT, add_special_tokens=False)])
    times = []
    with torch.inference_mode(), on_the_servers_cores():
        for _ in range(5):
            start = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def targets(rows, forward: float) -> list[str]:
    """Each row against its target (issue 24): met or not, and by how much."""
    lines = []
    for label, app, floor, replay, *step in rows:
        a = statistics.median(f["latency"] for f in app)
        f = statistics.median(x["latency"] for x in floor)
        if label.startswith("first load"):
            goal, rule = f + forward + 0.5, "floor + one forward + 0.5 s"
        elif label.startswith("Generate"):
            goal, rule = f + 1.5 * step[0], "floor + 1.5 × the bare step"
        else:
            goal, rule = 2 * f, "2 × floor"
        lines.append(f"Target, {label}: {a:.3f} s against ≤ {goal:.3f} s ({rule}): "
                     + ("met." if a <= goal else f"not met ({a / goal:.1f} × the target).")
                     + (f" The replay of the app's elements alone: {r:.3f} s, "
                        + ("within the target." if r <= goal else
                           f"over it ({r / goal:.1f} ×): Streamlit drawing these elements "
                           "costs more than the target allows, before any work of the app.")
                        if replay and (r := statistics.median(x["latency"] for x in replay))
                        else ""))
        if step:
            bare, reported = step
            lines.append(f"Target, the page's own step at {label.split()[-2]} tokens: "
                         f"{reported:.3f} s against ≤ {1.15 * bare:.3f} s (1.15 × the bare "
                         f"step): " + ("met." if reported <= 1.15 * bare else
                                       f"not met ({reported / bare:.2f} × the bare step)."))
    return lines


COLUMNS = ["latency", "server", "messages", "kb", "browser", "script", "layout"]


def table(rows, notes, title: str) -> str:
    lines = [f"### {title}", "",
             "| Interaction | App | Floor | Replay | App ÷ floor | App ÷ replay | App: server · "
             "messages · KB · browser (Chromium: script · layout) | Floor: the same | Replay: "
             "the same |",
             "|---|---|---|---|---|---|---|---|---|"]
    split = ("{server:.3f} s · {messages:.0f} · {kb:.1f} · {browser:.3f} s "
             "({script:.3f} · {layout:.3f} s)")
    for label, app, floor, replay, *step in rows:
        a, f, r = ({k: statistics.median(x[k] for x in runs) for k in COLUMNS} if runs else None
                   for runs in (app, floor, replay))
        lines.append(f"| {label} | {a['latency']:.3f} s | {f['latency']:.3f} s | "
                     + (f"{r['latency']:.3f} s" if r else "") + " | "
                     f"{a['latency'] / f['latency']:.1f}× | "
                     + (f"{a['latency'] / r['latency']:.1f}×" if r else "") + " | "
                     f"{split.format(**a)} | {split.format(**f)} | "
                     + (split.format(**r) if r else "") + " |")
        if step:
            bare, reported = step
            lines.append(f"| ↳ bare cached step (long-lived thread) / the page's own step | "
                         f"{bare:.3f} s | | | | | page reports {reported:.3f} s | | |")
    lines += ["", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, 1 repetition")
    parser.add_argument("--model", choices=["pocket", "qwen3"], default="pocket")
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default=None,
                        help="the app's TOKEN_BY_TOKEN_DTYPE (default bfloat16)")
    parser.add_argument("--split", action="store_true",
                        help="the browser on a core of its own, the servers on the others")
    args = parser.parse_args()
    global DTYPE, SPLIT
    if args.dtype:
        DTYPE = args.dtype
    if args.split:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            raise SystemExit("--split needs at least 2 cores")
        SPLIT = (set(cores[:-1]), {cores[-1]})
        os.sched_setaffinity(0, SPLIT[1])  # this harness and Chromium (its children)
    text = run(args.model, 1 if args.smoke else args.reps, args.smoke)
    print(text)
    if not args.smoke:
        write_section(ROOT / "bench" / "RESULTS.md", text)


def write_section(path: Path, text: str) -> None:
    """Put this table in RESULTS.md in place of the last run's for the same model, where
    that one was (a new model's at the end; the other sections, bench/run.py's among them,
    stay as they are; so does the prose written between the old table's heading and the
    table, to be brought up to date by hand)."""
    heading = text.splitlines()[0].split(":")[0]  # "### Browser, pocket model"
    old = path.read_text() if path.exists() else ""
    parts = [p.rstrip("\n") + "\n\n" for p in re.split(r"(?m)^(?=### )", old) if p.strip()]
    mine = [i for i, p in enumerate(parts) if p.split(":")[0] == heading]  # (not a longer one)
    prose = next((parts[i].split("\n| ")[0].split("\n", 1)[1].strip("\n") for i in mine), "")
    title, table = text.split("\n", 1)
    new = title + "\n\n" + (prose + "\n\n" if prose else "") + table.strip("\n") + "\n\n"
    at = mine[0] if mine else len(parts)
    parts = [p for i, p in enumerate(parts) if i not in mine]
    parts.insert(at, new)
    path.write_text("".join(parts).rstrip("\n") + "\n")
    print(f"wrote {path}")


def run(model: str, reps: int, smoke: bool = False) -> str:
    """The browser table for `model` ("pocket" or "qwen3", the Qwen3-0.6B shape)."""
    import tiny_model
    if smoke:
        model_dir, title = ROOT / "bench" / ".tiny-model", "Browser (smoke run, tiny model)"
        if not (model_dir / "config.json").exists():
            tiny_model.build(model_dir)
    elif model == "pocket":
        from token_by_token.model import POCKET_DIR
        model_dir, title = POCKET_DIR, "Browser, pocket model"
    else:
        model_dir = ROOT / "bench" / ".qwen3-0.6b-model"
        title = f"Browser, Qwen3-0.6B shape (random weights, {DTYPE})"
        if not (model_dir / "config.json").exists():
            tiny_model.build(model_dir, "qwen3-0.6b")
    if SPLIT is not None:
        title += (f", the browser on a core of its own, the servers on "
                  f"{len(SPLIT[0])} core{'s' if len(SPLIT[0]) > 1 else ''}")
    rows, notes = measure(model_dir, reps)
    return table(rows, notes, f"{title}: Chromium 1400 × 1000, medians of {reps}")


if __name__ == "__main__":
    main()
