"""An adaptim optimizer's update as a PyTorch operator (``torch.ops.adaptim.step``), so that a
``torch.compile``-d ``optimizer.step()`` holds one opaque operator instead of the host code of
the update, which the compiler cannot trace without breaking the graph or recompiling:

- building a C-kernel call (ctypes, numpy pointer buffers) and the Triton launch;
- the gradient guard (``max_grad_norm``, ``on_nonfinite``), which needs values on the host;
- per-tensor step counts read as Python numbers (bias corrections, lr decay);
- hyperparameters as Python floats: each new value a scheduler sets would be a new constant of
  the graph, so a recompile.

The operator's inputs are the parameters that have gradients (updated in place) and those
gradients (scaled in place by clipping on the per-tensor path); the optimizer is found by its
id, and its state, hyperparameters and step counts are read when the operator runs, exactly as
an eager step reads them. So a compiled step is the eager step, bit for bit, for every option
and every path (C kernel, Triton, multi-tensor, per-tensor), with nothing for the compiler to
guard but which parameters have gradients.
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

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
_LIB.define("step(int optimizer_id, Tensor(a!)[] params, Tensor(b!)[] grads) -> ()",
            tags=(torch.Tag.cudagraph_unsafe,))


def register(optimizer) -> None:
    """Make ``optimizer`` reachable from the operator by its id (done when it is built or
    unpickled, outside any compiled code)."""
    _OPTIMIZERS[id(optimizer)] = optimizer


def _step(optimizer_id: int, params: list[Tensor], grads: list[Tensor]) -> None:
    """``torch.ops.adaptim.step``: the update of optimizer ``optimizer_id`` with its current
    gradients (``params``/``grads``: its parameters that have one, for the compiler's view of
    what the operator reads and writes)."""
    _OPTIMIZERS[optimizer_id]._update_all()


_LIB.impl("step", torch.compiler.disable(_step), "CompositeExplicitAutograd")


@torch.library.register_fake("adaptim::step", lib=_LIB)
def _(optimizer_id, params, grads) -> None:
    return None


def compiled_step(optimizer) -> None:
    """``optimizer``'s update as one ``adaptim::step`` call, for a step being compiled.

    The groups are read from the instance dict: torch.compile guards every hyperparameter of
    every group when ``param_groups`` is read as an optimizer attribute, so each new learning
    rate would recompile."""
    params = [p for group in vars(optimizer)["param_groups"] for p in group["params"]
              if p.grad is not None]
    torch.ops.adaptim.step(id(optimizer), params, [p.grad for p in params])
