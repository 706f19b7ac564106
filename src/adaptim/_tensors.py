"""Small tensor helpers shared by the optimizer shell, the fused path, the guard and the
diagnostics (one definition each)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["real_view", "scalar_dtype"]


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim keeps ``step`` in: float32 unless the default dtype is float64.
    Matching it keeps checkpoints interchangeable."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def real_view(t: Tensor | None) -> Tensor | None:
    """``t`` viewed as real (complex -> trailing dimension of 2), as torch.optim does before its
    elementwise squares; real tensors and None pass through."""
    return torch.view_as_real(t) if t is not None and t.is_complex() else t
