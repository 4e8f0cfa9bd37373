"""What one element costs a Streamlit rerun in Chromium, apart from any app: the price list
behind bench/browser.py's rows.

`uv run python bench/message_cost.py [--reps 9]` serves this same file as a page (a slider in
a fragment that draws N elements of one kind, then a line with the slider's value) for a few
N and kinds, moves each page's slider in turn in one Chromium, and prints the medians: key
press to the value on screen. The slope over N is what one more element costs a rerun.
"""

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
from pathlib import Path

import streamlit as st
from streamlit import runtime

ROOT = Path(__file__).resolve().parent.parent
KINDS = {  # what each of the N elements is
    "empty": lambda i, v: st.empty(),
    "unchanged markdown": lambda i, v: st.markdown(f"Paragraph {i}, the same at every move."),
    "changing markdown": lambda i, v: st.markdown(f"Paragraph {i}, at value {v}."),
    "changing code": lambda i, v: st.code(f"def f(x):\n    # → x = {v}\n    return x * {i}",
                                          language="python"),
}
COUNTS = (10, 60, 120)


def page() -> None:
    count, kind = int(os.environ["BENCH_N"]), KINDS[os.environ["BENCH_KIND"]]

    @st.fragment
    def part() -> None:
        value = st.sidebar.slider("Temperature", 0.0, 2.0, 0.7, 0.01, key="t")
        for i in range(count):
            kind(i, value)
        st.markdown(f"Value now {value:.2f} end")
    part()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=9)
    reps = parser.parse_args().reps
    sys.path[:0] = [str(ROOT / "tests")]
    from browser import chromium, streamlit_server
    spec = importlib.util.spec_from_file_location("bench_browser", ROOT / "bench/browser.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    configs = [(n, kind) for kind in KINDS for n in COUNTS]
    with contextlib.ExitStack() as stack:
        urls = {c: stack.enter_context(streamlit_server(None, script=Path(__file__),
                                                        BENCH_N=str(c[0]), BENCH_KIND=c[1]))
                for c in configs}
        browser = stack.enter_context(chromium())
        pages = {c: bench.open_page(browser, url, "Value now") for c, url in urls.items()}
        seconds = {c: [] for c in configs}
        for rep in range(reps):
            for c, p in pages.items():  # 0.70 -> 0.71 -> 0.70 …, pages in turns
                up = rep % 2 == 0
                figures = bench.slider_step(p, "Temperature",
                                            rf"Value now {0.71 if up else 0.70:.2f} end", up)
                seconds[c].append(figures["latency"])
    print(f"Key press to the value on screen, medians of {reps} (Chromium; "
          f"{os.cpu_count()} cores shared with the server):")
    for kind in KINDS:
        times = [statistics.median(seconds[n, kind]) for n in COUNTS]
        slope = (times[-1] - times[0]) / (COUNTS[-1] - COUNTS[0])
        print(f"- {kind}: " + ", ".join(f"{n} elements {t:.3f} s" for n, t in
                                        zip(COUNTS, times, strict=True))
              + f"; {slope * 1000:.2f} ms per element")


if runtime.exists():
    page()
elif __name__ == "__main__":
    main()
