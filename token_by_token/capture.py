"""Look inside one forward: record what chosen modules receive and return.

`capture(modules)` registers temporary forward hooks on the given modules and removes
them when the block ends, also when the forward raises. Nothing else about the model
changes (its attention implementation, its config and its weights stay as they are),
so the shared, read-only model stays shared and read-only.

The hooks record only the forwards run by the code inside the block: a forward that
another learner's thread runs meanwhile passes through them unrecorded (the same
context-variable trick transformers uses for `output_hidden_states`). Pass `lock=True`
to also hold `model.FORWARD_LOCK`, the lock every forward in the app holds, for the
block (not when the caller holds it already: it is not reentrant).

    with capture({"norm": model.model.norm}, lock=True) as seen:
        model(torch.tensor([ids]))
    x = seen.input("norm")       # the residual stream before the final norm
"""

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

from token_by_token.locks import FORWARD_LOCK


@dataclass
class Call:
    """One call of one module: its positional and keyword inputs and its output."""
    args: tuple
    kwargs: dict
    output: object

    @property
    def x(self) -> torch.Tensor:
        """The first input: Qwen3's attention takes it as `hidden_states=`."""
        return self.args[0] if self.args else next(iter(self.kwargs.values()))


@dataclass
class Captured:
    """The calls recorded per name, in the order the forward made them."""
    calls: dict[str, list[Call]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[Call]:
        return self.calls[name]

    def input(self, name: str, call: int = -1) -> torch.Tensor:
        """The first input of a module's call (the last call unless told)."""
        return self.calls[name][call].x

    def output(self, name: str, call: int = -1):
        """The output of a module's call (the last call unless told)."""
        return self.calls[name][call].output


# The captures active in this thread (or asyncio task): a hook records a call only when
# its capture is among them, so concurrent forwards on the shared model stay unrecorded.
_ACTIVE: ContextVar[tuple] = ContextVar("token_by_token_captures", default=())


def _named(modules) -> dict[str, torch.nn.Module]:
    if isinstance(modules, Mapping):
        return dict(modules)
    return {str(i): module for i, module in enumerate(modules)}


@contextmanager
def capture(modules, lock: bool = False) -> Iterator[Captured]:
    """Record the inputs and outputs of `modules` (a dict name -> module, or a list, named
    "0", "1", …) during the forwards run inside the block. The hooks are always removed.

    Tensors are kept as the modules produced them (no copies): run the forward under
    torch.inference_mode() so none of them keeps an autograd graph alive.
    """
    named = _named(modules)
    seen = Captured({name: [] for name in named})

    def recorder(name):
        def hook(module, args, kwargs, output):
            if any(active is seen for active in _ACTIVE.get()):
                seen.calls[name].append(Call(args, dict(kwargs), output))
        return hook

    with ExitStack() as stack:
        if lock:
            stack.enter_context(FORWARD_LOCK)
        for name, module in named.items():
            handle = module.register_forward_hook(recorder(name), with_kwargs=True)
            stack.callback(handle.remove)
        token = _ACTIVE.set((*_ACTIVE.get(), seen))
        stack.callback(_ACTIVE.reset, token)
        yield seen


def forward_capturing(model, ids, modules, lock: bool = False):
    """One forward of `ids` through `model`, returning its output and what `modules` saw."""
    with capture(modules, lock=lock) as seen, torch.inference_mode():
        output = model(torch.tensor([ids]))
    return output, seen
