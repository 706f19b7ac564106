"""Checks for hyperparameters. Every rule raises ValueError (or TypeError for a wrong type) with
a message naming the argument, the value and what is allowed; torch.optim accepts several of
these silently (lr=nan, alpha=1.5)."""

from __future__ import annotations

import math
from numbers import Real

import torch

__all__ = [
    "check_bool", "check_finite_nonneg", "check_lr", "check_unit_closed", "check_unit_open",
    "to_float",
]


def to_float(value) -> float:
    """A Python float from a number or a 1-element tensor (tensor lr, as torch allows)."""
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return float(value)


def as_real(name: str, value) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number or a 1-element tensor, got a tensor of "
                             f"shape {tuple(value.shape)}")
        if value.is_complex():
            raise TypeError(f"{name} must be real, got a complex tensor")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def check_finite_nonneg(name: str, value) -> None:
    """``value`` must be a finite number >= 0."""
    v = as_real(name, value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"Invalid {name}: {v!r} (must be a finite number >= 0)")


def check_lr(value) -> None:
    check_finite_nonneg("learning rate (lr)", value)


def check_unit_closed(name: str, value) -> None:
    """``value`` must lie in [0, 1]."""
    v = as_real(name, value)
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"Invalid {name}: {v!r} (must be in [0, 1])")


def check_unit_open(name: str, value) -> None:
    """``value`` must lie in [0, 1)."""
    v = as_real(name, value)
    if not (0.0 <= v < 1.0):
        raise ValueError(f"Invalid {name}: {v!r} (must be in [0, 1))")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_optional_bool(name: str, value) -> None:
    if value is not None:
        check_bool(name, value)
