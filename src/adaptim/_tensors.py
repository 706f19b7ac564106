"""Small tensor helpers shared by the optimizer shell, the fused path, the guard and the
diagnostics (one definition each)."""

from __future__ import annotations

import operator

import torch
from torch import Tensor

__all__ = ["DTYPE", "IS_CPU", "real_view", "scalar_dtype"]

# Getters for map() over tensor lists (C-level iteration instead of a Python loop per tensor)
DTYPE = operator.attrgetter("dtype")
IS_CPU = operator.attrgetter("is_cpu")


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim keeps ``step`` in: float32 unless the default dtype is float64.
    Matching it keeps checkpoints interchangeable."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def real_view(t: Tensor | None) -> Tensor | None:
    """``t`` viewed as real (complex -> trailing dimension of 2), as torch.optim does before its
    elementwise squares; real tensors and None pass through."""
    return torch.view_as_real(t) if t is not None and t.is_complex() else t
