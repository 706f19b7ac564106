"""An adaptim optimizer's update as a PyTorch operator (``torch.ops.adaptim.step``), so that a
``torch.compile``-d ``optimizer.step()`` holds one opaque operator instead of the host code of
the update, which the compiler cannot trace without breaking the graph or recompiling:

- building a C-kernel call (ctypes, numpy pointer buffers) and the Triton launch;
- the gradient guard (``max_grad_norm``, ``on_nonfinite``), which needs values on the host;
- per-tensor step counts read as Python numbers (bias corrections, lr decay);
- hyperparameters as Python floats: each new value a scheduler sets would be a new constant of
  the graph, so a recompile.

The operator's inputs are the parameters that have gradients (updated in place) and those
gradients (scaled in place by clipping on the per-tensor path). Declaring them is what keeps a
larger compiled function right: code before the step that changes gradients or parameters
(``clip_grad_norm_``, ``p.grad.mul_``) runs before it, and code after it reads the updated
parameters. The optimizer is found by its id; its state, hyperparameters and step counts are
read when the operator runs, exactly as an eager step reads them. So a compiled step is the
eager step, bit for bit, for every option and every path (C kernel, Triton, multi-tensor,
per-tensor).

The compiler may hand the operator other tensors than the parameters' own: the new values of
gradients assigned or changed earlier in the compiled function, or copies (a backend that does
not update inputs in place, such as ``aot_eager``, passes copies and writes them back after the
operator). The operator then updates those tensors, with the state of the parameters they stand
for (``positions`` in the optimizer's parameter list).
"""

from __future__ import annotations

import operator
import weakref
from itertools import repeat

import torch
from torch import Tensor

from adaptim._tensors import GRAD as _GRAD

__all__ = ["compiled_step", "register"]

# The live adaptim optimizers by id, for the operator (weak references: registering keeps
# nothing alive).
_OPTIMIZERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

# torch.library.Library rather than torch.library.custom_op: the latter's Python dispatch layers
# (autograd wrapper, default filling, version bumps) cost more per call than a small model's
# whole update. The update runs under no_grad, as an eager step does.
_LIB = torch.library.Library("adaptim", "DEF")
# cudagraph_unsafe: the update is host code (kernel launches, guard decisions) that a CUDA graph
# must not capture; the compiler runs it between graphs.
_LIB.define("step(int optimizer_id, int[] positions, Tensor(a!)[] params, Tensor(b!)[] grads)"
            " -> ()", tags=(torch.Tag.cudagraph_unsafe,))


def register(optimizer) -> None:
    """Make ``optimizer`` reachable from the operator by its id (done when it is built or
    unpickled, outside any compiled code)."""
    _OPTIMIZERS[id(optimizer)] = optimizer


def _as_eager(optimizer, params: list[Tensor], grads: list[Tensor]) -> bool:
    """Whether ``params``/``grads`` are what an eager step gathers now: the optimizer's own
    parameters, all those that have a gradient, each with its gradient (a copy's ``grad`` is
    None, so the second check also finds copies)."""
    groups = optimizer.param_groups
    if len(params) != sum(len(group["params"]) for group in groups):
        live = 0
        for group in groups:
            live += sum(map(operator.is_not, map(_GRAD, group["params"]), repeat(None)))
        if live != len(params):
            return False
    return all(map(operator.is_, map(_GRAD, params), grads))


def _step(optimizer_id: int, positions: list[int], params: list[Tensor],
          grads: list[Tensor]) -> None:
    """``torch.ops.adaptim.step``: the update of optimizer ``optimizer_id`` applied to
    ``params`` with ``grads``, which stand for its parameters at ``positions`` (counted over
    its groups in order; empty: all of them)."""
    optimizer = _OPTIMIZERS[optimizer_id]
    if _as_eager(optimizer, params, grads):
        optimizer._update_all()
        return
    # The optimizer's parameters take the given values and gradients (the others none) for the
    # update, and give the results back; their own gradients are put back after.
    flat = [p for group in optimizer.param_groups for p in group["params"]]
    owners = [flat[i] for i in positions] if positions else flat
    saved = list(map(_GRAD, flat))
    try:
        with torch.no_grad():
            for p in flat:
                p.grad = None
            for owner, param, grad in zip(owners, params, grads):
                if param is not owner:
                    owner.copy_(param)
                owner.grad = grad
            optimizer._update_all()
            for owner, param in zip(owners, params):
                if param is not owner:
                    param.copy_(owner)
    finally:
        for p, grad in zip(flat, saved):
            p.grad = grad


_LIB.impl("step", _step, "CompositeExplicitAutograd")


@torch.library.register_fake("adaptim::step", lib=_LIB)
def _(optimizer_id, positions, params, grads) -> None:
    return None


def compiled_step(optimizer) -> None:
    """``optimizer``'s update as one ``adaptim::step`` call, for a step being compiled.

    The groups are read from the instance dict: torch.compile guards every hyperparameter of
    every group when ``param_groups`` is read as an optimizer attribute, so each new learning
    rate would recompile."""
    flat = [p for group in vars(optimizer)["param_groups"] for p in group["params"]]
    positions = [i for i, p in enumerate(flat) if p.grad is not None]
    params = [flat[i] for i in positions]
    if len(params) == len(flat):
        positions = []  # all of them: nothing for the operator's call to convert
    torch.ops.adaptim.step(id(optimizer), positions, params, [p.grad for p in params])
