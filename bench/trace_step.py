"""What Chromium does while the page's model step runs: its own trace of a Generate click.

`uv run python bench/trace_step.py [--tokens 500] [--reps 5]`: the app on the Qwen3-0.6B
shape (bfloat16) in Chromium, Autoregressive mode on a text of that many tokens; each click
traced (Playwright's browser.start_tracing). The page marks every websocket message in the
trace (console.timeStamp); the step runs between the rerun's first messages and its first
element, the longest gap among the first messages. In that window: how long each Chromium
thread was busy (its tasks' union), and what the renderer's main thread ran, by name.
"""

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import IDLE, chromium, streamlit_server  # noqa: E402

spec = importlib.util.spec_from_file_location("bench_browser", ROOT / "bench" / "browser.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

MARK = """(() => { const Native = window.WebSocket;
  window.WebSocket = class extends Native { constructor(...args) { super(...args);
    this.addEventListener("message", () => console.timeStamp("ws-message")); } }; })();"""
TASKS = ("ThreadControllerImpl::RunTask", "RunTask")


def window_of(events) -> tuple[float, float]:
    stamps = sorted(e["ts"] for e in events if e.get("name") == "TimeStamp"
                    and "ws-message" in json.dumps(e.get("args", {})))
    return max(((b - a, a, b) for a, b in zip(stamps[:5], stamps[1:6], strict=False)))[1:]


def busy(events, start: float, end: float) -> tuple[dict, dict]:
    """Seconds each thread was busy in [start, end] (nested tasks once), and the renderer
    main thread's events by name."""
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e.get("name") == "thread_name"}
    spans, ran = {}, {}
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        s, t = max(e["ts"], start), min(e["ts"] + e["dur"], end)
        thread = names.get((e["pid"], e["tid"]), str(e["tid"]))
        if t <= s:
            continue
        if e["name"] in TASKS:
            spans.setdefault(thread, []).append((s, t))
        elif thread == "CrRendererMain":
            ran[e["name"]] = ran.get(e["name"], 0) + (t - s) / 1e6
    threads = {}
    for thread, intervals in spans.items():
        total, reached = 0.0, start
        for s, t in sorted(intervals):
            s = max(s, reached)
            if t > s:
                total, reached = total + t - s, t
        threads[thread] = total / 1e6
    return threads, ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    import tiny_model
    from transformers import AutoTokenizer
    model = ROOT / "bench" / ".qwen3-0.6b-model"
    if not (model / "config.json").exists():
        tiny_model.build(model, "qwen3-0.6b")
    text = bench.text_of(AutoTokenizer.from_pretrained(model), args.tokens)
    with streamlit_server(model, TOKEN_BY_TOKEN_DTYPE="bfloat16") as app, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(MARK)
        page.add_init_script(bench.probe())
        page.goto(f"{app}/?text={quote(text)}&top_k=1")
        page.wait_for_selector("text=Conclusion", timeout=120_000)
        page.wait_for_selector(IDLE)
        bench.toggle_autoregression(page)
        for rep in range(2 + args.reps):
            trace = Path(f"/tmp/trace-step-{rep}.json")
            if rep >= 2:  # (two clicks first, untraced)
                browser.start_tracing(page=page, path=str(trace),
                                      categories=["devtools.timeline", "toplevel",
                                                  "disabled-by-default-devtools.timeline"])
            bench.click(page, "Generate next token", rf"(^|\D){rep + 1} generated so far")
            if rep < 2:
                continue
            browser.stop_tracing()
            caption = page.get_by_text("The last forward ran").inner_text()
            step = float(re.search(r"in ([\d.,]+) ms", caption)[1].replace(",", "")) / 1000
            events = json.loads(trace.read_text())["traceEvents"]
            start, end = window_of(events)
            threads, ran = busy(events, start, end)
            top = sorted(ran.items(), key=lambda x: -x[1])[:4]
            print(f"step window {(end - start) / 1e6:.3f} s (the page reports its step: "
                  f"{step:.3f} s); busy: " + ", ".join(
                      f"{k} {v:.3f} s" for k, v in sorted(threads.items(),
                                                          key=lambda x: -x[1])[:3])
                  + "; main thread ran: " + ", ".join(f"{k} {v:.3f} s" for k, v in top),
                  flush=True)


if __name__ == "__main__":
    main()
