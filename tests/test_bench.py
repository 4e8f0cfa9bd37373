"""The benchmark never rots: CI runs its smoke mode (tiny model) and checks every row is there.
Timings are not checked here; bench/RESULTS.md holds the real run on the Qwen3-0.6B shape."""

import subprocess
import sys

from helpers import ROOT


def test_benchmark_smoke_mode_measures_every_row(tmp_path):
    out = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--reps", "1",
         "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    table = out.read_text()
    for row in ["| a | slider rerun", "| b | Generate click", "| c | Generate click",
                "| b | Generate click after reading",
                "| b | Play, per token",
                "| d | cold start", "| e | peak RSS", "| f | per-step time",
                "| g | Chapter 2 first render", "| g | Chapter 2 layer change",
                "| g | Chapter 2 head change", "| g | Chapter 2 halfway toggle",
                "then Chapter 2"]:
        assert row in table, row
    assert "Forwards per slider change: 0." in table
    assert "Forwards per resample: 0." in table
    assert ("Forwards per Generate click: 1; after reading, forwards a click waited for: 0 "
            "(its step was taken while the page was read).") in table
    assert "Forwards per played token: 1." in table
    assert ("Forwards for Chapter 2's first render: 2 (1 of one token: section 9's cached "
            "step); per control change (layer, head, halfway): 0.") in table
    assert "### Vocabulary lookup" in table and "| first query" in table


def test_browser_benchmark_smoke_mode_measures_every_row():
    """Chromium against the floor page, one repetition on the tiny model (timings unchecked)."""
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "browser.py"), "--smoke"],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ["| first load of Chapter 1", "| Temperature slider: key press", "| Seed +/−",
                "| Resample", "| Generate next token at 10 tokens",
                "| Generate next token at 500 tokens", "bare cached step",
                "| Chapter 2: Layer slider, key press"]:
        assert row in result.stdout, row
    assert "Idle server CPU with a page open: app" in result.stdout
    # Chapter 1's rows have the second floor: the app's own elements, replayed
    row = next(line for line in result.stdout.splitlines() if line.startswith("| Resample"))
    replay = row.split(" | ")[3]
    assert replay.endswith(" s") and float(replay[:-2]) > 0, row


def test_message_cost_benchmark_prints_a_cost_per_element_of_each_kind():
    """bench/message_cost.py, one repetition (timings unchecked: a line per kind)."""
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "message_cost.py"),
                             "--reps", "1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("- ")]
    assert [line.split(":")[0] for line in lines] == [
        "- empty", "- unchanged markdown", "- changing markdown", "- changing code"]
    assert all(line.endswith("ms per element") for line in lines)


def test_chapter2_draw_benchmark_splits_the_first_open():
    """bench/chapter2_draw.py, its smoke mode: the app's first open of Chapter 2, then the
    replay of its elements, whole and without each kind (timings unchecked)."""
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "chapter2_draw.py"),
                             "--smoke"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split(" | ")[0] for line in result.stdout.splitlines()
            if line.startswith("| ") and line.endswith(" s |")]
    assert rows == ["| whole", "| without charts", "| without dataframes",
                    "| without static tables", "| without code",
                    "| without markdown", "| without headings, alerts, bars",
                    "| every kind left out"]
    assert "code " in result.stdout.split("Its main area:")[1].splitlines()[0]
    assert "The app's own work:" in result.stdout


def bench_browser():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_browser", ROOT / "bench" / "browser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_browser_benchmark_writes_its_own_section_and_keeps_the_others(tmp_path):
    """A run replaces the section of its own title only: the --split run's heading starts
    like the plain run's, and neither run's table may replace the other's."""
    bench = bench_browser()
    results = tmp_path / "RESULTS.md"
    plain = "### Browser, model (bfloat16)"
    split = "### Browser, model (bfloat16), the browser on a core of its own"
    results.write_text(f"# Results\n\n{plain}: medians of 7\n\nplain prose\n\n| old plain |\n\n"
                       f"{split}: medians of 7\n\nsplit prose\n\n| old split |\n")
    bench.write_section(results, f"{plain}: medians of 7\n\n| new plain |\n")
    text = results.read_text()
    assert "| new plain |" in text and "| old plain |" not in text
    assert "| old split |" in text and "split prose" in text and "plain prose" in text
    bench.write_section(results, f"{split}: medians of 5\n\n| new split |\n")
    text = results.read_text()
    assert "| new split |" in text and "| old split |" not in text and "| new plain |" in text
    assert text.count("split prose") == 1 and text.count("plain prose") == 1
    assert text.index("| new plain |") < text.index("| new split |")  # each in its place
    bench.write_section(results, f"{plain}: medians of 3\n\n| newer plain |\n")
    text = results.read_text()
    assert text.index("plain prose") < text.index("| newer plain |") < text.index("split prose")
    assert text.startswith("# Results\n\n### Browser") and text.endswith("| new split |\n")


def test_split_benchmark_puts_the_servers_and_their_bare_timings_on_their_own_cores():
    """--split: the servers' command runs under taskset on the servers' cores; the bare step's
    timing moves this process there (and to as many torch threads) and back."""
    import os

    import pytest
    import torch
    from browser import CI
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:  # CI runs on 2 cores: there, fewer is a failure, not a skip
        (pytest.fail if CI else pytest.skip)("--split needs 2 cores; this process has 1")
    bench = bench_browser()
    assert bench.server_side(["python", "-m", "streamlit"]) == ["python", "-m", "streamlit"]
    before, threads = os.sched_getaffinity(0), torch.get_num_threads()
    bench.SPLIT = (set(cores[:-1]), {cores[-1]})
    try:
        assert bench.server_side(["python"]) == [
            "taskset", "-c", ",".join(map(str, cores[:-1])), "python"]
        with bench.on_the_servers_cores():
            assert os.sched_getaffinity(0) == set(cores[:-1])
            assert torch.get_num_threads() == len(cores) - 1
        assert os.sched_getaffinity(0) == {cores[-1]}
        assert torch.get_num_threads() == threads
    finally:
        os.sched_setaffinity(0, before)
