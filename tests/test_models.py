"""Any model, in the page: the sidebar's picker (per learner, in the share link), the first
download (against a stand-in for the hub on a loopback port: one bar for all the files, the
tokenizer first, a connection cut mid-file resumed on Retry), the models a process keeps
(least recently used dropped, and the page says so), what a served app refuses, and the dtype
chosen for this CPU."""

import shutil
import time

import pytest
import torch
from helpers import CHAPTER2, MAIN, code_starting, page_text, run_app
from standin import COMMIT, Hub
from streamlit import config as streamlit_config
from streamlit.testing.v1 import AppTest

from chapter1.tokenizer import tokenize
from token_by_token import catalog, dtypes, hub
from token_by_token import model as models
from token_by_token.tokens import markdown_literal


@pytest.fixture
def served():
    """The app as a server for a class: listening on every interface."""
    before = streamlit_config.get_option("server.address")
    streamlit_config.set_option("server.address", "0.0.0.0")
    yield
    streamlit_config.set_option("server.address", before)


@pytest.fixture
def standin(tiny_dir, tmp_path, monkeypatch):
    """A stand-in hub serving the tiny model as `test/tiny` (and a gated `test/gated`), and an
    empty Hugging Face cache."""
    stand = Hub({"test/tiny": tiny_dir}, gated={"test/gated"}).start()
    monkeypatch.setenv("HF_ENDPOINT", stand.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(catalog.MODELS, f"{tiny_dir},test/tiny,test/gated,pocket")
    yield stand
    stand.stop()
    hub.forget("test/tiny")
    models.SHELF.clear("test/tiny")


def errors(at) -> str:
    assert not at.exception, [e.value for e in at.exception]
    return "\n".join(e.value for e in at.error)


def picker(at):
    return at.sidebar.selectbox(key="model")


# --- the picker ---------------------------------------------------------------------------

def test_the_picker_offers_the_built_in_models_with_where_they_are(tiny_dir):
    at = run_app()
    box = picker(at)
    ids = [catalog.BUILT_IN[i].id for i in range(len(catalog.BUILT_IN))]
    assert box.value == str(tiny_dir)  # TOKEN_BY_TOKEN_MODEL: the default
    labels = "\n".join(box.options)
    for entry in ids:
        assert entry in labels
    assert "pocket — built in, 5.2 MB" in labels or "pocket — built in, 5.3 MB" in labels
    assert "google/gemma-3-270m — " in labels and "needs a Hugging Face login" in labels
    assert f"{tiny_dir} — a directory on this machine" in labels


def test_a_learners_model_is_theirs_and_travels_in_the_share_link(loaded):
    a = run_app(text="Learner A")
    b = run_app(text="Learner B", autoregressive=True)
    b.sidebar.button(key="generate").click().run()
    picker(b).set_value("pocket").run()  # B picks the pocket model
    assert errors(b) == ""
    pocket = models.load("pocket")
    assert b.session_state["text"] == "Learner B"  # the text stays
    assert b.session_state["generated"] == []  # ids of the old vocabulary are gone
    assert code_starting(b, "tokens = ").startswith(
        f"tokens = {tokenize(pocket.tokenizer, 'Learner B')}")
    assert b.query_params["model"] == "pocket"
    a.run()  # A still reads the tiny model
    assert code_starting(a, "tokens = ").startswith(
        f"tokens = {tokenize(loaded.tokenizer, 'Learner A')}")
    opened = AppTest.from_file(MAIN, default_timeout=60)  # B's link, opened by someone
    opened.query_params["model"] = "pocket"
    opened.query_params["text"] = "Learner B"
    opened.run()
    assert opened.session_state["model"] == "pocket"
    assert code_starting(opened, "tokens = ").startswith(
        f"tokens = {tokenize(pocket.tokenizer, 'Learner B')}")


def test_a_teacher_fixes_the_list_and_one_entry_hides_the_picker(monkeypatch, tiny_dir):
    monkeypatch.setenv(catalog.MODELS, f"pocket, {tiny_dir}")
    at = run_app()
    assert [o.split(" — ")[0] for o in picker(at).options] == ["pocket", str(tiny_dir)]
    monkeypatch.setenv(catalog.MODELS, str(tiny_dir))
    at = run_app()
    assert not [s for s in at.sidebar.selectbox if s.key == "model"]
    assert errors(at) == "" and at.header  # the page is drawn, on that model


def test_every_page_keeps_working_when_the_model_changes(monkeypatch):
    at = run_app(text="The quick brown fox")
    at.switch_page(CHAPTER2).run()
    at.sidebar.slider(key="layer").set_value(1).run()
    picker(at).set_value("pocket").run()  # 4 layers: the layer picked stays valid
    assert errors(at) == ""
    assert "Conclusion" in [h.value for h in at.header]
    picker(at).set_value(next(o for o in catalog.choices() if o.startswith("/"))).run()
    assert errors(at) == "" and "Conclusion" in [h.value for h in at.header]


# --- a served class -----------------------------------------------------------------------

@pytest.mark.parametrize("typed", ["someone/any-model", "/etc", "..", "../../etc"])
def test_a_served_app_refuses_what_a_learner_types(served, typed, standin):
    for how in ("state", "link"):
        at = AppTest.from_file(MAIN, default_timeout=60)
        if how == "state":
            at.session_state["model"] = typed
        else:
            at.query_params["model"] = typed
        at.run()
        message = errors(at)
        assert "served to a class" in message and "TOKEN_BY_TOKEN_ALLOW_ANY_MODEL=1" in message
        if typed != "someone/any-model":
            assert "TOKEN_BY_TOKEN_MODEL_DIRS" in message
        assert [b.label for b in at.button if b.label.startswith("Back to")]
    assert standin.requests == []  # nothing was asked of the hub


@pytest.mark.parametrize("typed", ["/etc", "..", "/tmp/../etc"])
def test_where_any_model_is_allowed_a_directory_must_be_under_the_allowed_ones(
        served, typed, monkeypatch, tmp_path):
    monkeypatch.setenv(catalog.ALLOW_ANY, "1")
    monkeypatch.setenv(catalog.MODEL_DIRS, str(tmp_path))
    message = errors(run_app(model=typed))
    assert "not under a directory this app may read models from" in message
    assert "TOKEN_BY_TOKEN_MODEL_DIRS" in message and str(tmp_path) in message


def test_where_any_model_is_allowed_an_allowed_directory_opens(served, monkeypatch, tmp_path,
                                                               tiny_dir):
    monkeypatch.setenv(catalog.ALLOW_ANY, "1")
    monkeypatch.setenv(catalog.MODEL_DIRS, str(tmp_path))
    shutil.copytree(tiny_dir, tmp_path / "mine")
    at = run_app(model=str(tmp_path / "mine"))
    assert errors(at) == "" and "Conclusion" in [h.value for h in at.header]


def test_on_this_machine_the_free_field_is_on_and_on_a_server_off(served, monkeypatch):
    assert not catalog.free_field()
    monkeypatch.setenv(catalog.ALLOW_ANY, "1")
    assert catalog.free_field()


def test_no_model_is_opened_with_remote_code(tiny_dir, monkeypatch):
    calls = []
    real = models.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        calls.append(kwargs.get("trust_remote_code"))
        return real(*args, **kwargs)
    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", spy)
    models.SHELF.clear(str(tiny_dir))
    models.load(str(tiny_dir))
    assert calls == [False]


# --- the first download ---------------------------------------------------------------

def test_a_download_larger_than_the_cap_is_refused_before_any_byte(standin, monkeypatch):
    monkeypatch.setenv(catalog.MAX_DOWNLOAD, "0.0001")  # 100 kB: the tiny model is 539 kB
    message = errors(run_app(model="test/tiny"))
    assert "`test/tiny` is 0.5 MB to download, more than this app allows (0.1 MB" in message
    assert "TOKEN_BY_TOKEN_MAX_DOWNLOAD_GB" in message
    assert not [r for r in standin.requests if "/resolve/" in r[1]]


def test_a_gated_model_says_how_to_get_access(standin):
    message = errors(run_app(model="test/gated"))
    assert "gated model" in message and "hf auth login" in message


def wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_first_download_shows_one_bar_and_section_1_before_the_weights(standin):
    standin.rate = 300_000  # bytes per second: the weights (413 kB) take over a second
    at = run_app(model="test/tiny")
    assert errors(at) == ""
    wait_for(lambda: hub.running("test/tiny").tokenizer_ready.is_set())
    at.run()
    bars = [p for p in at.get("progress") if "Downloading test/tiny" in p.proto.text]
    assert len(bars) == 1  # one bar for every file
    assert "MB/s" in bars[0].proto.text and "left" in bars[0].proto.text
    assert hub.running("test/tiny").state == "running"  # the weights are still coming
    headers = [h.value for h in at.header]
    assert headers == ["1. Tokenizer — Byte Pair Encoding"], headers  # Section 1 only
    assert code_starting(at, "tokens = ")  # the tokenizer works
    assert any("need the model's weights" in i.value for i in at.info)
    wait_for(lambda: hub.running("test/tiny").state == "done")
    at.run()
    assert errors(at) == "" and "Conclusion" in [h.value for h in at.header]
    files = [r[1].rsplit("/", 1)[-1] for r in standin.requests if r[0] == "GET"
             and "/resolve/" in r[1]]
    assert files[-1] == "model.safetensors" and "tokenizer.json" in files  # tokenizer first
    assert models.in_cache("test/tiny")  # filed as huggingface_hub files it: offline next


def test_a_connection_cut_mid_file_says_so_and_retry_goes_on_from_there(standin):
    standin.cut_after = 200_000  # bytes of the weights, then the network is down
    at = run_app(model="test/tiny")
    wait_for(lambda: hub.running("test/tiny").state == "failed", 60)
    at.run()
    message = errors(at)
    assert "stopped at" in message and "the connection dropped" in message
    assert "press Retry and it goes on from there" in message
    assert code_starting(at, "tokens = ")  # Section 1 still works meanwhile
    standin.down = False
    at.button(key="download_retry").click().run()
    wait_for(lambda: hub.running("test/tiny").state == "done")
    at.run()
    assert errors(at) == "" and "Conclusion" in [h.value for h in at.header]
    ranges = [r[2] for r in standin.requests if r[2] and r[1].endswith("model.safetensors")]
    assert ranges and ranges[-1] == "bytes=200000-"  # the rest only
    theirs = models.load(str(standin.repos["test/tiny"]))
    mine = models.load("test/tiny")
    ids = [5, 6, 7]
    with torch.inference_mode():
        assert torch.equal(mine.model(torch.tensor([ids])).logits,
                           theirs.model(torch.tensor([ids])).logits)
    assert (hub.storage("test/tiny") / "snapshots" / COMMIT / "model.safetensors").exists()


# --- the models a process keeps ------------------------------------------------------

def test_the_least_recently_used_model_is_dropped_and_the_page_says_so(
        tiny_dir, tmp_path, monkeypatch):
    other = tmp_path / "other"
    shutil.copytree(tiny_dir, other)
    monkeypatch.setenv(catalog.MODELS, f"{tiny_dir},{other},pocket")
    models.SHELF.clear()
    first = models.load(str(tiny_dir))  # the only one: room for it and half another
    monkeypatch.setenv(catalog.MEMORY, str(first.nbytes * 1.5 / 1e9))
    at = run_app()
    picker(at).set_value(str(other)).run()  # loading it drops the least recently used
    assert str(tiny_dir) in models.SHELF.dropped
    assert models.SHELF.used() <= catalog.memory_budget()
    back = run_app()  # a learner on the dropped model: reloaded, and told why
    info = "\n".join(i.value for i in back.info)
    assert f"{tiny_dir} had been unloaded to make room for {other}" in info
    assert models.load(str(tiny_dir)) is not first  # another load of it
    memo = back.session_state["_memo"]
    assert memo.serial == models.load(str(tiny_dir)).serial  # the learner's memo follows it


def test_a_model_over_the_whole_budget_is_refused(monkeypatch, tiny_dir, tmp_path):
    other = tmp_path / "big"
    shutil.copytree(tiny_dir, other)
    monkeypatch.setenv(catalog.MODELS, f"{tiny_dir},{other}")
    monkeypatch.setenv(catalog.MEMORY, "0.0001")
    message = errors(run_app(model=str(other)))
    assert "more than this app's budget" in message and "TOKEN_BY_TOKEN_MEMORY_GB" in message


# --- the dtype for this CPU -------------------------------------------------------------

def test_the_dtype_setting_overrides_and_the_sidebar_says_which_runs(monkeypatch, tiny_dir):
    monkeypatch.setenv(dtypes.SETTING, "float32")
    loaded = models.load(str(tiny_dir))
    assert loaded.model.dtype == torch.float32
    at = run_app()
    said = markdown_literal("float32: set by TOKEN_BY_TOKEN_DTYPE")
    assert any(said in c.value for c in at.sidebar.caption), [c.value for c in at.sidebar.caption]


def test_auto_measures_both_types_once_per_process_and_keeps_the_faster(monkeypatch):
    monkeypatch.setenv(dtypes.SETTING, "auto")
    dtypes.measured.cache_clear()
    choice = dtypes.choose(64, 128, 10_000, 10**9)
    assert set(choice.seconds) == {(n, r) for n in dtypes.CHOICES for r in dtypes.ROWS}
    cost = {n: sum(choice.seconds[n, r] for r in dtypes.ROWS) for n in dtypes.CHOICES}
    if choice.name == "float32":
        assert cost["float32"] * dtypes.CLEAR <= cost["bfloat16"]
    assert "measured" in choice.reason
    dtypes.choose(64, 128, 10_000, 10**9)
    assert dtypes.measured.cache_info().hits >= 1


def test_float32_is_chosen_only_when_clearly_faster_and_within_the_budget(monkeypatch):
    monkeypatch.setenv(dtypes.SETTING, "auto")
    fast32 = {("bfloat16", 1): 3.0, ("bfloat16", 64): 9.0, ("float32", 1): 1.0,
              ("float32", 64): 2.0}
    monkeypatch.setattr(dtypes, "measured", lambda *a: fast32)
    choice = dtypes.choose(64, 128, 1000, budget=10**9)
    assert choice.dtype == torch.float32 and choice.reason.startswith(
        "float32: on this CPU, against bfloat16, reading a text 4.5 × faster, a generation "
        "step 3.0 × faster; measured")
    # a CPU without bfloat16 instructions: float32 reads a text faster, bfloat16 steps faster
    # (its half the bytes); the sidebar says both, not one ratio of their sum
    mixed = {("bfloat16", 1): 0.86, ("bfloat16", 64): 38.0, ("float32", 1): 1.29,
             ("float32", 64): 7.6}
    monkeypatch.setattr(dtypes, "measured", lambda *a: mixed)
    choice = dtypes.choose(64, 128, 1000, budget=10**9)
    assert choice.dtype == torch.float32 and (
        "reading a text 5.0 × faster, a generation step 1.5 × slower" in choice.reason)
    monkeypatch.setattr(dtypes, "measured", lambda *a: fast32)
    choice = dtypes.choose(64, 128, parameters=10**9, budget=2 * 10**9)  # 4 GB in float32
    assert choice.dtype == torch.bfloat16 and "would pass the memory budget" in choice.reason
    tie = dict.fromkeys(fast32, 1.0)
    monkeypatch.setattr(dtypes, "measured", lambda *a: tie)
    assert dtypes.choose(64, 128, 1000, 10**9).dtype == torch.bfloat16


def test_the_page_follows_the_models_dtype(monkeypatch):
    """Chapter 2's sentences and its checks are told in the dtype the model runs in."""
    monkeypatch.setenv(dtypes.SETTING, "float32")
    at = run_app(CHAPTER2)
    text = page_text(at)
    assert "float32" in text and "to the last bits of float32" in text
    assert "bfloat16" not in text.replace("for a bfloat16 model", "")
    from chapter2.pipeline import INSIDE
    seen = at.session_state["_memo"].latest(INSIDE)
    assert seen.stream.dtype == torch.float32
    assert seen.agree == len(seen.ids)  # in float32 no near-tie flips
    for opened in seen.layers:  # every check within float32's last bits
        for what, (_, difference, size) in opened.checks.items():
            assert difference.dtype == torch.float32
            assert difference <= 1e-5 * max(size, 1.0), (what, difference.said())
