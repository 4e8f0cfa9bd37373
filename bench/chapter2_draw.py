"""Chapter 2's first open in Chromium, split: the app's own work against the browser's drawing.

`uv run python bench/chapter2_draw.py [--smoke] [--reps 5]`

The app (served through bench/recorder.py) opens Chapter 2 from Chapter 1 as a learner does,
in a fresh page each time (the server's first open untimed): from the click to the chapter's
last DOM change.
Then bench/replay_chapter2.py sends the elements of that very open again, nothing computed,
whole and with each kind of element left out (`st.empty()` in its place), and the same with
every kind left out (what Streamlit and the browser cost for the messages alone). The app's
time beyond the whole replay is the app's own work; the replay's beyond an element kind's
variant is what that kind costs the browser. Prints a table; the model is the Qwen3-0.6B shape
(--smoke: the tiny model, one repetition).
"""

import argparse
import collections
import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path

from recorded import main_area  # bench/, this script's folder

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_browser", ROOT / "bench" / "browser.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # bench/browser.py (its name clashes with tests/browser.py)

PAGE = ROOT / "bench" / "replay_chapter2.py"
KINDS = {"charts": "vega_lite_chart,graphviz_chart", "dataframes": "dataframe",
         "static tables": "table",
         "code": "code", "markdown": "markdown", "headings, alerts, bars": "heading,alert,progress"}
EVERY = ",".join(KINDS.values())
QUIET = "performance.now() - window.__bench.lastMutation > 400"


def last_change(page) -> float:
    """Seconds from the armed input event to the page's last DOM change, once its pattern
    was seen and the page is quiet."""
    page.wait_for_function("window.__bench.seen !== null", timeout=600_000)
    page.wait_for_selector(bench.IDLE, timeout=600_000)
    page.wait_for_function(QUIET, timeout=600_000, polling=50)
    return page.evaluate("window.__bench.lastMutation - window.__bench.start") / 1000


def kinds_of(record: Path) -> dict:
    """Element kind -> (messages, KB) in a recorded run's main area."""
    count, size = collections.Counter(), collections.Counter()
    for msg in main_area(record):
        kind = msg.delta.WhichOneof("type")
        kind = msg.delta.new_element.WhichOneof("type") if kind == "new_element" else kind
        count[kind] += 1
        size[kind] += msg.ByteSize()
    return {kind: (n, size[kind] / 1000) for kind, n in count.most_common()}


def measure(model_dir: Path, reps: int) -> str:
    records = tempfile.mkdtemp(prefix="bench-chapter2-")
    env = {"TOKEN_BY_TOKEN_MODEL": str(model_dir), "TOKEN_BY_TOKEN_DTYPE": bench.DTYPE,
           "BENCH_RECORDS": records}
    with bench.streamlit_server(model_dir, launcher=[sys.executable, str(bench.RECORDER),
                                                     records], **env) as app, \
            bench.streamlit_server(model_dir, script=PAGE, **env) as replay, \
            bench.chromium() as browser:
        opens = []
        for _ in range(reps + 1):  # the server's first open has first-time costs: untimed
            page = bench.open_page(browser, app, "Conclusion")
            bench.arm(page, r"1\. Embeddings — ")
            page.get_by_test_id("stSidebarNavLink").filter(has_text="Chapter 2").click()
            page.wait_for_selector("h2:has-text('Conclusion')", timeout=600_000)
            opens.append(last_change(page))
            page.close()
        record = [run for run in sorted(Path(records).glob("*-page.pb"))
                  if "1. Embeddings — ".encode() in run.read_bytes()][-1]
        variants = {"whole": "", **{f"without {k}": v for k, v in KINDS.items()},
                    "every kind left out": EVERY}
        pages = {name: bench.open_page(browser, f"{replay}/?skip={skip}", "draws = 0")
                 for name, skip in variants.items()}
        times = {name: [] for name in variants}
        for rep in range(reps + 1):  # the first round fetches each element's code: not timed
            for name, page in pages.items():
                bench.arm(page, r"draws = \d*[13579]\b")
                page.get_by_role("button", name="Draw").click()
                seconds = last_change(page)
                if name == "whole":  # the chapter, drawn again
                    page.wait_for_selector("h2:has-text('Conclusion')", timeout=10_000)
                if rep:
                    times[name].append(seconds)
                bench.arm(page, r"draws = \d*[02468]\b")  # clear it for the next round
                page.get_by_role("button", name="Draw").click()
                last_change(page)
    whole = statistics.median(times["whole"])
    app = statistics.median(opens[1:])
    lines = [f"App, Chapter 2's first open from Chapter 1 (click to the last DOM change): "
             f"{app:.3f} s {[round(t, 3) for t in opens[1:]]} (the server's first: "
             f"{opens[0]:.3f} s).",
             "Its main area: " + ", ".join(f"{kind} {n} ({kb:.1f} KB)"
                                          for kind, (n, kb) in kinds_of(record).items()) + ".",
             "", "| Replay of that open | Last DOM change | Less than the whole replay |",
             "|---|---|---|"]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.3f} s | {whole - median:+.3f} s |")
    lines += ["", f"The app's own work: {app - whole:.3f} s of the {app:.3f} s "
                  f"(app − whole replay); medians of {reps}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, 1 repetition")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    import tiny_model
    name, shape = ((".tiny-model", "tiny") if args.smoke
                   else (".qwen3-0.6b-model", "qwen3-0.6b"))
    model_dir = ROOT / "bench" / name
    if not (model_dir / "config.json").exists():
        tiny_model.build(model_dir, shape)
    print(measure(model_dir, 1 if args.smoke else args.reps))


if __name__ == "__main__":
    main()
