"""Live values beside the lesson code: what each line of a lesson function produced.

`traced(fn, *args)` calls a lesson function the way the page needs it called anyway, and notes,
line by line, the values its local variables took (as short descriptions, made at that moment:
a tensor changed later in place can't rewrite what was shown). `with_values(trace)` gives the
function's source with those values written under the lines that produced them, as comments,
so the block is still valid Python to copy. Only the lesson function's own frame is followed;
the code it calls (torch, transformers) runs untraced.
"""

import inspect
import sys
import textwrap
from dataclasses import dataclass, field
from functools import cache, cached_property

import torch

WIDTH = 64  # characters of one value description at most
LINE = 86  # a line of values longer than this puts each value on its own line (and is cut)


@dataclass(frozen=True)
class Trace:
    """One call of a lesson function: the values each of its lines produced, in order."""
    function: object
    arguments: tuple[tuple[str, str], ...]  # (name, description) of each argument
    lines: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # line -> values
    returned: str = ""

    @cached_property
    def code(self) -> str:
        """The source with the values written in (made once per trace)."""
        return with_values(self)


def traced(function, *args, **kwargs):
    """`function(*args, **kwargs)` and its Trace."""
    code, lines = function.__code__, {}
    seen, last, returned, arguments = {}, None, [], []

    def note(frame):  # the names bound anew, or changed in place, since the last line
        changed = []
        for name, value in frame.f_locals.items():
            text = describe(value)
            if name not in seen or seen[name][0] is not value or seen[name][1] != text:
                seen[name] = (value, text)  # holds the value: its id can't be reused
                changed.append((name, text))
        return changed

    def follow(frame, event, arg):
        nonlocal last
        changed = note(frame)
        if last is not None and changed:
            lines.setdefault(last, []).extend(changed)
        last = frame.f_lineno
        if event == "return":
            returned.append(describe_returned(arg, frame.f_locals))
        return follow

    def on_call(frame, event, arg):
        if frame.f_code is not code:
            return None
        arguments.extend(note(frame))  # as they came in: shown with the def line
        return follow

    before = sys.gettrace()
    sys.settrace(on_call)
    try:
        result = function(*args, **kwargs)
    finally:
        sys.settrace(before)
    return result, Trace(function, tuple(arguments), lines, returned[0] if returned else "")


def describe(value) -> str:
    """A value as a debugger would show it beside a line, in one short line."""
    if isinstance(value, torch.Tensor):
        return describe_tensor(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return describe_ids(value)
    if isinstance(value, torch.Generator):
        return f"torch.Generator(seed={value.initial_seed()})"
    if isinstance(value, (int, float, bool, type(None))):
        return repr(value)
    if isinstance(value, str):
        return shorten(repr(value))
    if isinstance(value, (list, tuple)):
        inner = ", ".join(describe(v) for v in value)
        if len(inner) > WIDTH - 2:  # too long: the items' kinds only
            inner = ", ".join(type(getattr(v, "shown_as", v)).__name__ for v in value)
        return shorten(f"[{inner}]" if isinstance(value, list) else f"({inner})")
    if hasattr(value, "shown_as"):  # a wrapper that stands for the value it wraps
        return describe(value.shown_as)
    return describe_object(value)


def describe_returned(value, local_values: dict) -> str:
    """What a return statement gave back; a tuple of local variables by their names, whose
    values the lines above show already."""
    if isinstance(value, tuple):
        names = [next((n for n, v in local_values.items() if v is item), None)
                 for item in value]
        if all(names):
            return f"({', '.join(names)})"
    return describe(value)


def describe_tensor(t: torch.Tensor) -> str:
    """Shape, dtype and first values; how many are finite (-inf: filtered out) or non-zero
    when that is what the tensor is about."""
    dtype = str(t.dtype).removeprefix("torch.")
    flat = t.detach().reshape(-1)
    first = ", ".join(_number(v) for v in flat[:3].tolist())
    if flat.numel() <= 3:
        return f"tensor([{first}]) {dtype}"
    shape = "×".join(f"{s:,}" for s in t.shape)
    text = f"[{shape}] {dtype} [{first}, …]"
    if t.is_floating_point():
        finite = int(torch.isfinite(flat).sum())
        nonzero = int(torch.count_nonzero(flat))
        if finite < flat.numel():
            text += f" {finite:,} finite"
        elif nonzero * 2 < flat.numel():
            text += f" {nonzero:,} non-zero"
    return shorten(text)


def _number(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def describe_ids(ids) -> str:
    if len(ids) <= 6:
        return f"{list(ids)}"
    head = ", ".join(str(i) for i in ids[:3])
    tail = ", ".join(str(i) for i in ids[-2:])
    return f"[{head}, …, {tail}] ({len(ids):,} ids)"


def describe_object(value) -> str:
    """Objects the lessons meet: transformers' warpers, caches, model outputs, the model."""
    name = type(value).__name__
    if isinstance(value, torch.nn.Module):
        count = sum(p.numel() for p in value.parameters())
        return f"{name}({count / 1e6:,.1f}M parameters)"
    if hasattr(value, "encode") and hasattr(value, "decode") and hasattr(value, "__len__"):
        return f"{name}({len(value):,} tokens)"  # a tokenizer
    if hasattr(value, "layers") and hasattr(value, "get_seq_length"):  # a KV cache
        return f"{name}({len(value.layers)} layers, {value.get_seq_length():,} positions)"
    if hasattr(value, "logits") and isinstance(value.logits, torch.Tensor):  # model output
        shape = "×".join(f"{s:,}" for s in value.logits.shape)
        return f"{name}(logits=[{shape}] {str(value.logits.dtype).removeprefix('torch.')})"
    if hasattr(value, "__dict__") and not isinstance(value, torch.nn.Module):
        for key, setting in vars(value).items():  # its first number: what it is set to
            if isinstance(setting, (int, float)) and not key.startswith("_"):
                return shorten(f"{name}({key}={setting:g})")
    return name


def shorten(text: str, width: int = WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@cache
def source(*functions) -> str:
    """The source of lesson functions, as shown on the page (read once per process)."""
    return "\n\n".join(inspect.getsource(function) for function in functions)


@cache
def source_lines(function) -> tuple[int, list[str]]:
    """The function's source lines (dedented) and the line number of the first."""
    lines, start = inspect.getsourcelines(function)
    return start, textwrap.dedent("".join(lines)).splitlines()


def with_values(trace: Trace) -> str:
    """The lesson's source with each line's values written under it as `# →` comments."""
    start, lines = source_lines(trace.function)
    out = []
    for offset, line in enumerate(lines):
        out.append(line)
        indent = " " * (len(line) - len(line.lstrip()) + (4 if offset == 0 else 0))
        if offset == 0:
            values = list(trace.arguments)
        else:
            values = trace.lines.get(start + offset, [])
        runs = _runs(values)
        for number, run in enumerate(runs, start=1):
            mark = f"[{number}] " if len(runs) > 1 else ""
            shown = [f"{name} = {text}" for name, text in run]
            if len(indent) + len(", ".join(shown)) > LINE:  # one value per line
                out.extend(shorten(f"{indent}# → {mark}{one}", LINE) for one in shown)
            else:
                out.append(f"{indent}# → {mark}{', '.join(shown)}")
        if line.lstrip().startswith("return ") and trace.returned:
            out.append(f"{indent}# → returns {trace.returned}")
    return "\n".join(out)


def _runs(values: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """A line's values, one group per time the line ran (a name seen again starts a group)."""
    runs: list[list[tuple[str, str]]] = []
    for name, text in values:
        if not runs or any(name == n for n, _ in runs[-1]):
            runs.append([])
        runs[-1].append((name, text))
    return runs
