"""The built-in pocket model: loads offline, runs all of Chapter 1, and stands in for Qwen3
when the hub can't be reached. Its training script runs (a smoke run) in CI."""

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import ROOT, run_app

from token_by_token import model as models

POCKET = ROOT / "token_by_token" / "pocket"


@pytest.fixture
def pocket(monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "pocket")
    return models._load("pocket")


def test_pocket_is_small_and_loads_fast():
    assert (POCKET / "model.safetensors").stat().st_size <= 20 * 2**20
    import torch
    from transformers import AutoModelForCausalLM
    start = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(POCKET, dtype=torch.bfloat16)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("text", ["Return the number of items in the list.",
                                  "def f(x):\n    return x ** 2  # square",
                                  "日本語 👍🏽 <|endoftext|> ünïcödé"])
def test_pocket_tokenizer_round_trips(pocket, text):
    ids = pocket.tokenizer.encode(text, add_special_tokens=False)
    assert pocket.tokenizer.decode(ids) == text


def test_pocket_has_qwen_special_tokens_and_a_chat_template(pocket):
    tokenizer = pocket.tokenizer
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                           tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>user\nhi<|im_end|>") and prompt.endswith(
        "<|im_start|>assistant\n")
    assert pocket.eos_ids == {tokenizer.convert_tokens_to_ids("<|im_end|>"),
                              tokenizer.convert_tokens_to_ids("<|endoftext|>")}


def test_pocket_predictions_are_peaked_not_uniform(pocket):
    import torch

    from chapter1.logits import logits
    from chapter1.tokenizer import tokenize
    last = logits(pocket.model, tokenize(pocket.tokenizer, "Return the number of"))[-1]
    assert torch.softmax(last, -1).max() > 0.05  # uniform would be 1/vocab


# Documentation English written for this test, so it is in no training document.
UNSEEN = ("This function reads the configuration file and returns a dictionary that maps "
          "each section name to its options. If the file does not exist, a FileNotFoundError "
          "is raised. The optional encoding argument is passed to open(); by default the "
          "file is read as UTF-8. Use the write() method to save the changes back to disk.")


def test_pocket_predicts_unseen_documentation_text(pocket):
    """Next-token top-1 accuracy on text it never saw (a random model scores about 0)."""
    from chapter1.logits import logits
    from chapter1.tokenizer import tokenize
    ids = tokenize(pocket.tokenizer, UNSEEN)
    predicted = logits(pocket.model, ids)[:-1].argmax(-1).tolist()
    accuracy = sum(p == t for p, t in zip(predicted, ids[1:], strict=True)) / (len(ids) - 1)
    assert accuracy >= 0.25, accuracy  # 31.5% measured; the model it replaced scored 20.8%


def test_all_of_chapter_one_runs_on_the_pocket_model(pocket):
    at = run_app(autoregressive=True)
    headers = [h.value for h in at.header]
    assert sum(h[:2] in ("1.", "2.", "3.", "4.", "5.") for h in headers) == 5
    for n in range(1, 6):
        at.sidebar.button(key="generate").click().run()
        assert not at.exception
        assert len(at.session_state["generated"]) == n or at.session_state["generated"][-1] \
            in pocket.eos_ids
    assert not at.warning or all("pocket" not in w.value for w in at.warning)


FALLBACK = """
import sys, time
sys.path.insert(0, {root!r})
from streamlit.testing.v1 import AppTest
start = time.perf_counter()
at = AppTest.from_file({main!r}, default_timeout=120).run()
assert not at.exception, at.exception
print(repr(time.perf_counter() - start))
print(repr([w.value for w in at.warning]))
print(repr([c.value for c in at.sidebar.caption]))
"""


def test_unreachable_hub_with_empty_cache_falls_back_to_pocket(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TOKEN_BY_TOKEN_MODEL"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path))
    code = FALLBACK.format(root=str(ROOT), main=str(ROOT / "main.py"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    seconds, warnings, captions = float(out[-3]), eval(out[-2]), eval(out[-1])
    assert any("Running on the pocket model" in w and "Qwen/Qwen3-0.6B" in w
               and "one-time download" in w for w in warnings), (warnings, out[-8:])
    assert any("pocket" in c and "built in" in c for c in captions), captions
    assert seconds < 60  # imports included; the fallback itself is immediate offline


def test_training_script_smoke_run(tmp_path):
    out = tmp_path / "pocket"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_pocket_model.py"), "--smoke",
         "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "training_report.json").read_text())
    held_out = report["held_out_bfloat16"]
    assert {"loss", "perplexity", "top1_accuracy"} <= set(held_out)
    assert 0 <= held_out["top1_accuracy"] <= 1 and held_out["perplexity"] > 1
    loaded = models._from_dir(str(out), "smoke")
    assert loaded.tokenizer.decode(loaded.tokenizer.encode("hello world")) == "hello world"
