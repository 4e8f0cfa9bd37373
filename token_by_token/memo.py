"""One learner's derived values, kept in their session between reruns.

Nothing here is a choice: all of it can be recomputed from the choices in token_by_token.state.
It is what makes a rerun cheap: the model's forward (with its KV cache) for the current ids,
the last view of a page. Each chapter declares its own slots; a slot keeps one value, with the
key it was computed for, so a learner's memory never grows with the number of reruns.
"""

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Slot(Generic[T]):
    """A named place in a learner's Memo for values of one type, e.g.
    `FORWARD: Slot[Forward] = Slot("chapter1.forward")`."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Slot({self.name!r})"


class Memo:
    """A learner's slots. Mutated in place, never re-assigned in st.session_state: a plain
    attribute write can't be interrupted by a Streamlit rerun, a session-state write can."""

    def __init__(self):
        self.lock = threading.RLock()  # for callbacks that read and then change the choices
        self.model_id = None
        self.serial = None  # which load of the model (token_by_token/model.py's shelf)
        self._slots: dict[str, tuple[object, object]] = {}

    def get(self, slot: Slot[T], key) -> T | None:
        """The slot's value if it was computed for `key`, else None."""
        entry = self._slots.get(slot.name)
        return entry[1] if entry is not None and entry[0] == key else None

    def latest(self, slot: Slot[T]) -> T | None:
        """The slot's value, whatever it was computed for (to build the next one from)."""
        entry = self._slots.get(slot.name)
        return None if entry is None else entry[1]

    def put(self, slot: Slot[T], key, value: T) -> T:
        self._slots[slot.name] = (key, value)
        return value

    def for_model(self, model_id: str) -> "Memo":
        """Forget everything when another model was loaded: nothing carries over."""
        if self.model_id != model_id:
            self.model_id, self._slots = model_id, {}
        return self

    def for_loaded(self, loaded) -> "Memo":
        """The same, for one load of a model: a model dropped from memory and loaded again
        is another object, and nothing made with the old one is kept (it would keep the
        old weights alive)."""
        if (self.model_id, self.serial) != (loaded.model_id, loaded.serial):
            self.model_id, self.serial, self._slots = loaded.model_id, loaded.serial, {}
        return self

    def forget(self) -> None:
        """Let go of every value (the model they were made with was dropped)."""
        self.model_id, self.serial, self._slots = None, None, {}


def memo_of(state) -> Memo:
    """The learner's Memo in their session state (a mapping), made on first use."""
    if "_memo" not in state:
        state["_memo"] = Memo()
    return state["_memo"]
