"""Live values beside the lesson code: what each line of a lesson function produced.

`traced(fn, *args)` calls a lesson function the way the page needs it called anyway, and notes,
statement by statement, the values its local variables took (as short descriptions, made at
that moment: a tensor changed in place later can't rewrite what was shown). `with_values(trace)`
gives the function's source with those values written under the lines that produced them, as
comments, so the block is still valid Python to copy.

How: the lesson's own source is compiled once more with a note after each statement (the way
pytest rewrites asserts), and that copy runs. Nothing else is slowed down: the torch and
transformers code it calls runs as usual (sys.settrace would slow every Python call the model
makes, measured 1.7× on the pocket model's forward).
"""

import ast
import copy
import inspect
import textwrap
from dataclasses import dataclass, field
from functools import cache, cached_property

import numpy as np
import torch

from token_by_token.precision import PIECE

WIDTH = 64  # characters of one value description at most
LINE = 86  # a line of values longer than this puts each value on its own line (and is cut)
RETURNS = "returns"  # the name under which a line's returned value is noted
NUMPY_FLOATS = (torch.float32, torch.float64, torch.float16)  # the dtypes numpy reads


@dataclass(frozen=True)
class Trace:
    """One call of a lesson function: the values each of its lines produced, in order."""
    function: object
    lines: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # line -> values
    # (lines counted from the def line, 0)

    @cached_property
    def code(self) -> str:
        """The source with the values written in (made once per trace)."""
        return with_values(self)


def traced(function, *args, **kwargs):
    """`function(*args, **kwargs)` and its Trace."""
    lines, seen = {}, {}

    def note(line, local_values, returned=None, returns=False):
        """Note the names bound anew, or changed in place, since the last note."""
        changed = []
        for name, value in local_values.items():
            if name == "__note__":  # the note itself, a free variable of the copy
                continue
            before = seen.get(name)
            if (before is not None and before[0] is value and isinstance(value, torch.Tensor)
                    and before[2] == version_of(value)):  # not even changed in place
                continue
            text = describe(value)
            if before is None or before[0] is not value or before[1] != text:
                seen[name] = (value, text, version_of(value))  # held: its id stays unique
                changed.append((name, text))
        if returns:
            changed.append((RETURNS, describe_returned(returned, local_values)))
        lines.setdefault(line, []).extend(changed)
        return returned

    result = instrumented(function)(note)(*args, **kwargs)
    return result, Trace(function, lines)


class _Notes(ast.NodeTransformer):
    """Adds `__note__(line, locals())` after every statement of a function (with the line
    where the statement ends), at the start of every loop body (the loop's header line: its
    variable), and around every returned value. `indents` gets, for each noted line, the
    indentation of the statement the note is about."""

    def __init__(self):
        self.indents = {}

    def call(self, line, indent, *extra):
        offset = line - 1  # lines are counted from the def line, 0
        self.indents[offset] = indent
        return ast.Call(ast.Name("__note__", ast.Load()), [
            ast.Constant(offset), ast.Call(ast.Name("locals", ast.Load()), [], []), *extra], [])

    def body(self, statements):
        out = []
        for statement in statements:
            self.visit(statement)
            out.append(statement)
            if not isinstance(statement, (ast.Return, ast.For, ast.While, ast.If, ast.With,
                                          ast.Try, ast.FunctionDef, ast.Pass)):
                out.append(ast.Expr(self.call(statement.end_lineno, statement.col_offset)))
        return out

    def visit_FunctionDef(self, node):
        """The arguments, noted under the signature's last line (inside the body)."""
        parts = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                 node.args.vararg, node.args.kwarg, node.returns]
        signature_end = max([node.lineno] + [p.end_lineno for p in parts if p is not None])
        docstring = node.body[:1] if ast.get_docstring(node) else []
        rest = self.body(node.body[len(docstring):])
        arguments = self.call(signature_end, node.body[0].col_offset)
        node.body = [*docstring, ast.Expr(arguments), *rest]
        return node

    def visit_For(self, node):
        header = self.call(node.iter.end_lineno, node.col_offset)
        node.body = [ast.Expr(header), *self.body(node.body)]
        node.orelse = self.body(node.orelse)
        return node

    def visit_If(self, node):
        node.body, node.orelse = self.body(node.body), self.body(node.orelse)
        return node

    def visit_With(self, node):
        node.body = self.body(node.body)
        return node

    visit_While = visit_For

    def visit_Return(self, node):
        node.value = self.call(node.end_lineno, node.col_offset,
                               node.value or ast.Constant(None), ast.Constant(True))
        return node


@cache
def parsed(function) -> tuple[ast.FunctionDef, dict[int, int]]:
    """The function's definition with the notes added, and each noted line's indentation
    (line numbers counted from the def line, 0)."""
    _, lines = source_lines(function)
    definition = ast.parse("\n".join(lines)).body[0]
    definition.decorator_list = []
    notes = _Notes()
    notes.visit(definition)
    return definition, notes.indents


@cache
def instrumented(function):
    """make(note) -> a copy of `function` that calls note(...) after each statement. It runs
    in the function's own module (its globals), with its default arguments."""
    start, _ = source_lines(function)
    definition = copy.deepcopy(parsed(function)[0])
    maker = ast.FunctionDef("make", ast.arguments([], [ast.arg("__note__")], None, [], [], None,
                                                  []), [definition, ast.Return(ast.Name(
                                                      definition.name, ast.Load()))], [])
    module = ast.fix_missing_locations(ast.Module([maker], []))
    ast.increment_lineno(module, start - 1)
    namespace = {}
    exec(compile(module, inspect.getsourcefile(function), "exec"), function.__globals__,
         namespace)

    def make(note):
        twin = namespace["make"](note)
        twin.__defaults__, twin.__kwdefaults__ = function.__defaults__, function.__kwdefaults__
        return twin
    return make


def version_of(value):
    """A tensor's in-place change counter (None: not a tensor, or made under
    torch.inference_mode(), which keeps no counter: such a tensor is taken as unchanged)."""
    if isinstance(value, torch.Tensor) and not value.is_inference():
        return value._version
    return None


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


SCAN = 1 << 25  # values counted at most (the embedding table, 155M values, is not scanned)


def describe_tensor(t: torch.Tensor) -> str:
    """Shape, dtype and first values; how many are finite (-inf: filtered out) or non-zero
    when that is what the tensor is about (tensors up to SCAN values)."""
    dtype = str(t.dtype).removeprefix("torch.")
    flat = t.detach().reshape(-1)
    first = ", ".join(_number(v) for v in flat[:3].tolist())
    if flat.numel() <= 3:
        return f"tensor([{first}]) {dtype}"
    shape = "×".join(f"{s:,}" for s in t.shape)
    text = f"[{shape}] {dtype} [{first}, …]"
    if t.is_floating_point() and flat.numel() <= SCAN:
        finite, nonzero = counts(flat)
        if finite < flat.numel():
            text += f" {finite:,} finite"
        elif nonzero * 2 < flat.numel():
            text += f" {nonzero:,} non-zero"
    return shorten(text)


def counts(flat: torch.Tensor) -> tuple[int, int]:
    """How many values are finite, and how many non-zero. By numpy where it can read the
    dtype (torch.isfinite took 0.41 ms over 151,936 float32 scores, numpy 0.013 ms:
    measured). numpy has no bfloat16: its bits are read as int16 instead (a bfloat16 is
    finite unless its 8 exponent bits are all ones, zero when all but the sign bit are 0;
    7 x faster than torch's two counts, measured: describe() was a quarter of the tracing
    of Chapter 2's first open). Piece by piece (precision.PIECE): no temporary of the
    whole tensor's size."""
    if flat.dtype in NUMPY_FLOATS:
        values = flat.numpy()
        finite = sum(int(np.count_nonzero(np.isfinite(values[i: i + PIECE])))
                     for i in range(0, values.size, PIECE))
        return finite, int(np.count_nonzero(values))
    if flat.dtype == torch.bfloat16:
        bits = flat.contiguous().view(torch.int16).numpy()
        pieces = [bits[i: i + PIECE] for i in range(0, bits.size, PIECE)]
        return (sum(int(np.count_nonzero((b & 0x7F80) != 0x7F80)) for b in pieces),
                sum(int(np.count_nonzero(b & 0x7FFF)) for b in pieces))
    return int(torch.count_nonzero(torch.isfinite(flat))), int(torch.count_nonzero(flat))


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
    _, lines = source_lines(trace.function)
    _, indents = parsed(trace.function)
    out = []
    for offset, line in enumerate(lines):
        out.append(line)
        indent = " " * indents.get(offset, 0)
        runs = _runs(trace.lines.get(offset, []))
        for number, run in enumerate(runs, start=1):
            mark = f"[{number}] " if len(runs) > 1 else ""
            shown = [f"returns {text}" if name == RETURNS else f"{name} = {text}"
                     for name, text in run]
            if len(indent) + len(", ".join(shown)) > LINE:  # one value per line
                out.extend(shorten(f"{indent}# → {mark}{one}", LINE) for one in shown)
            else:
                out.append(f"{indent}# → {mark}{', '.join(shown)}")
    return "\n".join(out)


def _runs(values: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """A line's values, one group per time the line ran (a name seen again starts a group)."""
    runs: list[list[tuple[str, str]]] = []
    for name, text in values:
        if not runs or any(name == n for n, _ in runs[-1]):
            runs.append([])
        runs[-1].append((name, text))
    return runs
