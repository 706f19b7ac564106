"""Checks for hyperparameters. Every rule raises ValueError (or TypeError for a wrong type) with
a message naming the argument, the value and what is allowed.

Messages start with torch.optim's own wording for the same mistake ("Invalid learning rate:
-0.1", "Invalid beta parameter at index 0: 1.0", "Tensor lr must be 1-element"), so code and
tests that match torch's errors match adaptim's; the explanation follows in parentheses.
adaptim is stricter than torch.optim in one respect: it also refuses NaN and infinite values
(and alpha/rho outside [0, 1]) that torch.optim accepts silently.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

__all__ = [
    "check_bool", "check_finite_nonneg", "check_lr", "check_unit_closed", "check_unit_open",
    "invalid", "to_float", "tensor_with_foreach",
]

# torch.optim's wording for "Invalid <what>: <value>", by argument name; other arguments read
# "Invalid <name> value: <value>" (torch's form for momentum, weight_decay, rho, lr_decay, ...).
_TORCH_WHAT = {
    "lr": "learning rate",
    "eps": "epsilon value",
    "betas[0]": "beta parameter at index 0",
    "betas[1]": "beta parameter at index 1",
}
_ALIAS = {"betas[0]": "beta1 = betas[0]", "betas[1]": "beta2 = betas[1]"}


def invalid(name: str, value, allowed: str) -> ValueError:
    """The ValueError for a bad value of argument ``name``: torch.optim's message, then what
    adaptim allows."""
    what = _TORCH_WHAT.get(name, f"{name} value")
    shown = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
    return ValueError(f"Invalid {what}: {shown} ({_ALIAS.get(name, name)} must be {allowed})")


def tensor_with_foreach(name: str) -> ValueError:
    """torch.optim.Adam's refusal of a Tensor hyperparameter with foreach=True (its foreach
    kernels take numbers unless capturable=True)."""
    return ValueError(f"{name} as a Tensor is not supported for capturable=False and foreach=True")


def to_float(value) -> float:
    """A Python float from a number or a 1-element tensor (tensor lr, as torch allows)."""
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return float(value)


def as_real(name: str, value) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor {name} must be 1-element, got a tensor of shape "
                             f"{tuple(value.shape)}")
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
        raise invalid(name, value, "a finite number >= 0")


def check_lr(value) -> None:
    check_finite_nonneg("lr", value)


def check_unit_closed(name: str, value) -> None:
    """``value`` must lie in [0, 1]."""
    v = as_real(name, value)
    if not (0.0 <= v <= 1.0):
        raise invalid(name, value, "in [0, 1]")


def check_unit_open(name: str, value) -> None:
    """``value`` must lie in [0, 1)."""
    v = as_real(name, value)
    if not (0.0 <= v < 1.0):
        raise invalid(name, value, "in [0, 1)")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_optional_bool(name: str, value) -> None:
    if value is not None:
        check_bool(name, value)
