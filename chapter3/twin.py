"""A twin of the shared model: new module objects, the same weights (nothing copied).

Sections 4 and 5 need models that differ from the loaded one in a few modules (quantized
matrices; only the first layers). The loaded model is shared by every learner and never
changed, so they change a twin instead: its modules can be replaced freely, while every
parameter and buffer is the loaded model's own tensor.
"""

import copy

import torch


def twin(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model`'s modules (and config) that shares all its tensors. Hooks put on
    the loaded model (a test's forward counter) are not carried over: the twin is another
    model."""
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    double = copy.deepcopy(model, shared)
    for module in double.modules():
        for name, hooks in vars(module).items():
            if name.startswith(("_forward_hooks", "_forward_pre_hooks")) and isinstance(hooks,
                                                                                      dict):
                hooks.clear()
    return double
