"""Shared fixtures: the tiny offline model (built once per run) on which every test runs, the
model as the app loads it, a forward counter. Helpers every test may use are in helpers.py."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import tiny_model  # noqa: E402
from helpers import CHAPTER1, counting_forwards, run_app  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from chapter1 import ahead  # noqa: E402


def _settled(run):
    """AppTest's run, returning once the steps it launched ahead (chapter1/ahead.py) are made:
    each action's forwards are counted with it, whatever the machine's speed. A served page
    does not wait (the browser tests and test_chapter1_page.py take the other orders)."""
    def settled_run(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        finally:
            ahead.settled()
    return settled_run


AppTest._run = _settled(AppTest._run)
ahead.READING = 0  # a test's next action comes at once: no pause for a reader


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny offline model, built once per test run."""
    return tiny_model.build(tmp_path_factory.mktemp("tiny"))


DTYPE = os.environ.get("TEST_DTYPE", "bfloat16")  # the dtype the app loads models in


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    """A tiny GPT-2: the model Chapter 2's last section compares with (offline)."""
    return tiny_model.build(tmp_path_factory.mktemp("gpt2"), arch="gpt2")


@pytest.fixture(autouse=True)
def use_tiny(tiny_dir, gpt2_dir, monkeypatch):
    """Every test runs the app on the tiny model, in TEST_DTYPE (default bfloat16: the probe's
    choice would depend on the CPU and its load), unless it says otherwise. `TEST_DTYPE=
    float32 uv run pytest …` runs the same tests in float32."""
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(tiny_dir))
    monkeypatch.setenv("TOKEN_BY_TOKEN_DTYPE", DTYPE)
    monkeypatch.setenv("TOKEN_BY_TOKEN_COMPARE", str(gpt2_dir))


@pytest.fixture(scope="session")
def peaked_dir(tmp_path_factory):
    """A tiny Qwen3 with large random weights (--init-std 0.5): attention far from uniform."""
    return tiny_model.build(tmp_path_factory.mktemp("peaked"), init_std=0.5)


@pytest.fixture
def loaded(tiny_dir):
    """The shared model and tokenizer exactly as the app loads them."""
    from token_by_token import model
    return model._load(str(tiny_dir))


@pytest.fixture
def forwards(loaded):
    """Every forward of the shared model during the test: the input ids it received."""
    with counting_forwards(loaded.model) as calls:
        yield calls


@pytest.fixture
def chapter1():
    return run_app(CHAPTER1)
