"""The model layer: loading once, bf16 and eval, and a clear message whenever loading fails."""

import gc
import shutil
import time
import weakref

import pytest
import torch
from helpers import run_app

from token_by_token import model


def test_the_model_is_set_aside_from_the_collector_and_later_garbage_is_still_collected(loaded):
    """Streamlit collects garbage after every script run: the model and the modules, alive as
    long as the process, are frozen out of those collections once the model is loaded (a
    full walk of them took 0.25 s per slider move); cycles made later are still collected."""
    tracked = {id(o) for o in gc.get_objects()}
    assert id(loaded.model) not in tracked
    assert not any(id(m) in tracked for m in loaded.model.modules())

    class Node:
        pass
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    gc.collect(2)
    assert gone() is None


def test_tiny_model_loads_in_bf16_eval_mode_with_its_facts(loaded, tiny_dir):
    assert loaded.model.dtype == torch.bfloat16
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.eos_ids == {loaded.tokenizer.convert_tokens_to_ids(t)
                              for t in ("<|im_end|>", "<|endoftext|>")}
    assert loaded.max_tokens == 1024
    assert model._load(str(tiny_dir)) is loaded  # loaded once per process


def test_model_id_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("TOKEN_BY_TOKEN_MODEL")
    assert model.model_id() == "Qwen/Qwen3-0.6B"
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "some/model")
    assert model.model_id() == "some/model"


def error_of(at) -> str:
    assert not at.exception, [e.value for e in at.exception]
    assert at.error, "expected an error message in the page"
    return at.error[0].value


def test_a_chosen_hub_model_offline_says_what_to_do_quickly(monkeypatch, tmp_path):
    """A model the learner chose explicitly is not replaced by the pocket model."""
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "Qwen/Qwen3-1.7B")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    start = time.perf_counter()
    at = run_app()
    took = time.perf_counter() - start
    message = error_of(at)
    assert "not in the local Hugging Face cache" in message
    assert "Connect to the internet once" in message and "TOKEN_BY_TOKEN_MODEL" in message
    assert took < 10, took  # no long retries when the hub is unreachable


def test_not_a_directory_nor_an_id(monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "/no/such/directory")
    assert "neither a local directory nor a Hugging Face model id" in error_of(run_app())


@pytest.mark.parametrize("damage", ["missing weights", "corrupt weights", "missing tokenizer"])
def test_a_damaged_model_directory_is_explained(damage, tiny_dir, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    if damage == "missing weights":
        (broken / "model.safetensors").unlink()
    elif damage == "corrupt weights":
        (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    else:
        (broken / "tokenizer.json").unlink()
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(broken))
    message = error_of(run_app())
    assert f"The model in `{broken}` could not be loaded" in message
    assert "model.safetensors" in message


def test_download_progress_drives_a_progress_bar(monkeypatch, tiny_dir):
    """A first download shows bytes done of bytes in total, updated from hub threads."""
    seen = []

    def fake_download(name, allow_patterns, local_files_only=False, tqdm_class=None):
        if local_files_only:
            raise model.LocalEntryNotFoundError("not cached")
        import threading
        bar = tqdm_class(total=3_000_000_000, unit="B")

        def work():
            bar.update(1_500_000_000)
            seen.append(bar._bar is not None)
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        return str(tiny_dir)

    monkeypatch.setattr(model, "snapshot_download", fake_download)
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", "fake/model")
    at = run_app()
    assert seen == [True]
    assert not at.error
    assert at.title[0].value.startswith("Chapter 1")
