"""What the tests and the benchmark share: the AppTest driver, the forward counter, readers of
what a page shows, and a count of the memory a learner's session really holds."""

import gc
import types
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
MAIN = str(ROOT / "main.py")
CHAPTER1 = str(ROOT / "chapter1" / "page.py")
CHAPTER2 = str(ROOT / "chapter2" / "page.py")
CHAPTER3 = str(ROOT / "chapter3" / "page.py")
README = str(ROOT / "readme.py")


IDS = [(37 * i + 11) % 1500 for i in range(40)]  # 40 positions, ids below every vocab
_MODELS = {}


def load(path, dtype, eager=False):
    """A model of its own (not the app's shared one), loaded once per (path, dtype);
    eager=True: a deep copy on eager attention, the library's plain-torch reference."""
    import copy

    from transformers import AutoModelForCausalLM
    key = (str(path), dtype, eager)
    if key not in _MODELS:
        if eager:
            model = copy.deepcopy(load(path, dtype))
            model.set_attn_implementation("eager")
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval()
            model.requires_grad_(False)
        _MODELS[key] = model
    return _MODELS[key]


def logits_of(model, ids):
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float()


def run_app(page: str | None = None, timeout: float = 60, **state):
    """A fresh learner session: main.py, optionally switched to a page, after setting state.
    Fails on any exception the page raised."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(MAIN, default_timeout=timeout)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@contextmanager
def counting_forwards(model):
    """Every forward of `model` while inside: the list of input ids each one received; its
    `ahead`, those of the steps taken ahead among them (chapter1/ahead.py: run while the
    learner reads, not while they wait)."""
    from chapter1 import ahead
    calls = Forwards()

    def note(module, args, kwargs):
        ids = args[0] if args else kwargs["input_ids"]
        calls.note(ids[0].tolist(), ahead.RUNNING.get())

    hook = model.register_forward_pre_hook(note, with_kwargs=True)
    try:
        yield calls
    finally:
        hook.remove()


class Forwards(list):
    """The input ids of forwards, in order; `ahead` and `waited` tell them apart."""

    def __init__(self):
        super().__init__()
        self._taken_ahead = []

    def note(self, ids: list[int], taken_ahead: bool) -> None:
        self.append(ids)
        self._taken_ahead.append(taken_ahead)

    def clear(self) -> None:
        super().clear()
        self._taken_ahead.clear()

    @property
    def ahead(self) -> list:
        """The steps taken ahead (run while the learner reads)."""
        return [ids for ids, taken in zip(self, self._taken_ahead, strict=True) if taken]

    @property
    def waited(self) -> list:
        """The forwards the learner waited for."""
        return [ids for ids, taken in zip(self, self._taken_ahead, strict=True) if not taken]


# --- what a page shows ---------------------------------------------------------------

def code_starting(at, prefix: str) -> str:
    return next(c.value for c in at.code if c.value.startswith(prefix))


def shown_next_id(at) -> int:
    """The id Section 4 says was sampled (its `next_id = …` line)."""
    return int(code_starting(at, "next_id = ").split()[2])


def generated_ids(at) -> list[int]:
    return list(at.session_state["generated"])


def forward_of(at):
    """The learner's current forward, as their session keeps it."""
    from chapter1.pipeline import FORWARD
    return at.session_state["_memo"].latest(FORWARD)


def chips_blocks(at) -> list[str]:
    """The st.html blocks holding token chips (st-annotated-text's markup), in page order."""
    return [h.value for h in at.html if h.value.startswith("<span><span")]


class _ChipBodies(HTMLParser):
    """The text of each chip (its first text node) in st-annotated-text's markup."""

    def __init__(self):
        super().__init__()
        self.depth, self.bodies = 0, []

    def handle_starttag(self, tag, attrs):
        if tag == "span":
            self.depth += 1
            if self.depth == 2:
                self.bodies.append("")

    def handle_endtag(self, tag):
        if tag == "span":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth == 2:
            self.bodies[-1] += data


def chip_bodies(block: str) -> list[str]:
    """Each chip's body as the browser shows it (HTML entities decoded)."""
    parser = _ChipBodies()
    parser.feed(block)
    return parser.bodies


def page_text(at) -> str:
    """Everything the page rendered as Markdown, the places where markup could come alive."""
    parts = [e.value for e in [*at.markdown, *at.caption, *at.success, *at.info, *at.warning,
                               *at.error]]
    return "\n".join(parts)


def expected_next_id(loaded, at) -> int:
    """The sample, recomputed from the learner's choices with the lesson functions."""
    from chapter1.filters import probabilities, warpers
    from chapter1.logits import logits
    from chapter1.sampling import random_stream, sample
    from chapter1.tokenizer import tokenize
    s = at.session_state
    ids = (tokenize(loaded.tokenizer, s["text"]) + list(s["generated"]))[: loaded.max_tokens]
    last = logits(loaded.model, ids)[-1]
    probs = probabilities(last, warpers(s["temperature"], s["top_k"], s["top_p"], s["min_p"]))
    return sample(probs, random_stream(s["seed"], len(ids), s["resamples"]))


# --- what a session holds --------------------------------------------------------------

SHARED_OBJECTS = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
                  types.MethodType, torch.nn.Module)


def held_tensors(root) -> list[torch.Tensor]:
    """Every tensor reachable from `root` (a learner's session state), one per storage,
    found by walking the objects themselves (gc referents), not any list the code keeps.
    The walk stops at what is shared by the process: modules, classes, functions, the
    model, the tokenizer."""
    from transformers import PreTrainedTokenizerBase
    seen, storages, tensors, todo = set(), set(), [], [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (*SHARED_OBJECTS, PreTrainedTokenizerBase)):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in storages:
                storages.add(storage.data_ptr())
                tensors.append(obj)
            continue
        todo.extend(gc.get_referents(obj))
    return tensors


def held_bytes(root) -> int:
    return sum(t.untyped_storage().nbytes() for t in held_tensors(root))

