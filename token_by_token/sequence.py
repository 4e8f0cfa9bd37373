"""The learner's sequence: the token ids every chapter reads, from the text and the ids
generation appended (no forward needed). Its lesson functions, `tokenize` and `chat`, are
Chapter 1's first section; every chapter reads the same ids through `sequence()`.
"""

from dataclasses import dataclass

from token_by_token.memo import Slot, memo_of
from token_by_token.trace import Trace, traced

TEXT = frozenset({"text", "chat", "thinking"})  # the choices the text's ids are made from
IDS = TEXT | {"generated"}  # ... and the sequence's: a section that shows them READS these


def tokenize(tokenizer, text: str) -> list[int]:
    """Text in, token ids out.

    tokenizer = AutoTokenizer.from_pretrained(model_id), loaded once.
    It cuts the text into pieces from its vocabulary (Byte Pair
    Encoding) and returns their ids.
    """
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids


def chat(tokenizer, text: str, thinking: bool = False) -> list[int]:
    """Your text as a chat app sends it: one user message, then the
    start of the assistant's turn, in the model's own chat template.

    The template adds special tokens and the role names around each
    turn; the model then writes the answer and ends it with an
    end-of-turn token.
    """
    messages = [{"role": "user", "content": text}]
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, enable_thinking=thinking)
    return encoded["input_ids"]


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def thinks(tokenizer) -> bool:
    """True when the chat template can switch the model's thinking on and off (Qwen3)."""
    return "enable_thinking" in (getattr(tokenizer, "chat_template", None) or "")


@dataclass(frozen=True)
class Sequence:
    """The ids the model reads, from the text and the generated ids: no forward needed."""
    text_ids: list[int]   # the text's ids (capped)
    cut: int              # how many of the text's tokens the cap left out
    ids: list[int]        # text ids + generated ids: the sequence the model reads
    stop: str | None      # why generation can't go on: "empty", "eos", "cap" or None
    tokenize: Trace       # the tokenize() call that read the text
    chat: Trace | None = None  # in chat mode, the chat() call: its ids are text_ids


SEQUENCE: Slot[Sequence] = Slot("sequence")


def sequence(loaded, state) -> Sequence:
    """The learner's token sequence, and whether generation may go on (cheap: no forward)."""
    memo = memo_of(state).for_model(loaded.model_id)
    chatting = bool(state.get("chat")) and has_chat_template(loaded.tokenizer)
    key = (state["text"], tuple(state["generated"]), chatting, bool(state.get("thinking")))
    if (same := memo.get(SEQUENCE, key)) is not None:
        return same
    text_ids, trace = traced(tokenize, loaded.tokenizer, state["text"])
    chat_trace = None
    if chatting:  # the model reads the text wrapped in its chat template
        text_ids, chat_trace = traced(chat, loaded.tokenizer, state["text"],
                                      bool(state.get("thinking")))
    cut = max(len(text_ids) - loaded.max_tokens, 0)
    text_ids = text_ids[: loaded.max_tokens]
    ids = (text_ids + list(state["generated"]))[: loaded.max_tokens]
    stop = None
    if not ids:
        stop = "empty"
    elif state["generated"] and state["generated"][-1] in loaded.eos_ids:
        stop = "eos"
    elif len(ids) >= loaded.max_tokens:
        stop = "cap"
    return memo.put(SEQUENCE, key, Sequence(text_ids, cut, ids, stop, trace, chat_trace))
