"""Shared fixtures: the tiny offline model (built once per run) and AppTest helpers."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import tiny_model  # noqa: E402

MAIN = str(ROOT / "main.py")
CHAPTER1 = str(ROOT / "chapter1" / "page.py")
CHAPTER2 = str(ROOT / "chapter2" / "page.py")
README = str(ROOT / "readme.py")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny offline model, built once per test run."""
    return tiny_model.build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def use_tiny(tiny_dir, monkeypatch):
    """Every test runs the app on the tiny model unless it says otherwise."""
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(tiny_dir))


@pytest.fixture
def loaded(tiny_dir):
    """The shared model and tokenizer exactly as the app loads them."""
    from token_by_token import model
    return model._load(str(tiny_dir))


def run_app(page: str | None = None, **state):
    """A fresh learner session: main.py, optionally switched to a page, after setting state."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(MAIN, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def chapter1():
    return run_app(CHAPTER1)


def is_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
