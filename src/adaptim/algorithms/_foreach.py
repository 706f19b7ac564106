"""Pieces shared by the multi-tensor (``*_foreach``) rules: torch.optim's grouping of tensor
lists by device and dtype, and its step increment. Each ``*_foreach`` rule applies the same
equation as its per-tensor rule with torch's ``_foreach_*`` ops, in torch.optim's foreach
order, so that its bits are torch.optim's ``foreach=True`` bits."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["by_device_and_dtype", "increment_steps"]


def by_device_and_dtype(*tensor_lists: list, with_indices: bool = False) -> list:
    """The lists split into groups of one device and dtype (``None`` entries stay ``None``),
    as torch.optim's foreach rules do: a list of tuples of lists, one list per argument, or of
    ``(lists, indices)`` pairs with ``with_indices`` (each tensor's index in the arguments)."""
    grouped = torch.optim.Optimizer._group_tensors_by_device_and_dtype(
        list(tensor_lists), with_indices=with_indices)
    if with_indices:
        return [(tuple(lists), indices) for lists, indices in grouped.values()]
    return [tuple(lists) for lists, _ in grouped.values()]


def increment_steps(steps: list[Tensor]) -> None:
    """``step += 1`` for every step tensor of one device. CPU steps add a tensor one with
    alpha: the scalar overload would wrap 1 into a new tensor per step tensor."""
    if steps[0].is_cpu and not torch.compiler.is_compiling():
        torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
    else:
        torch._foreach_add_(steps, 1)
