"""Measurements read from an optimizer; they never change it."""

from __future__ import annotations

import math

import torch

__all__ = ["state_bytes", "effective_lr"]


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in ``optimizer.state`` tensors (step counters included), i.e. the optimizer's
    memory on top of the parameters and gradients."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += value.numel() * value.element_size()
    return total


def _median(values: list[torch.Tensor]) -> float:
    if not values:
        return math.nan
    return float(torch.cat([v.reshape(-1).float().cpu() for v in values]).median())


def effective_lr(optimizer: torch.optim.Optimizer) -> float:
    """Median over all parameter entries of the factor the gradient is multiplied by.

    - SGD family: ``η`` (momentum's ``η / (1 − μ)`` long-run gain is not included);
    - AdaGrad: ``η_t / (√G + ε)``, ``η_t = η / (1 + (t − 1) lr_decay)``;
    - RMSProp: ``η / (√E[g²] + ε)``;
    - AdaDelta: ``η √(E[Δθ²] + ε) / √(E[g²] + ε)``;
    - Adam/AdamW: ``η / (√v̂ + ε)``, ``v̂ = v / (1 − β₂ᵗ)``.
    """
    factors: list[torch.Tensor] = []
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        eps = float(group.get("eps", 0.0) or 0.0)
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            if "sum" in st:  # AdaGrad
                t = float(st["step"]) if "step" in st else 1.0
                lr_t = lr / (1 + max(t - 1, 0) * group.get("lr_decay", 0.0))
                factors.append(lr_t / (st["sum"].sqrt() + eps))
            elif "acc_delta" in st:  # AdaDelta
                factors.append(lr * (st["acc_delta"] + eps).sqrt() / (st["square_avg"] + eps).sqrt())
            elif "square_avg" in st:  # RMSProp
                factors.append(lr / (st["square_avg"].sqrt() + eps))
            elif "exp_avg_sq" in st:  # Adam, AdamW
                t = float(st["step"])
                beta2 = group["betas"][1]
                v_hat = st["exp_avg_sq"] / (1 - beta2 ** t)
                factors.append(lr / (v_hat.sqrt() + eps))
            else:
                factors.append(torch.full((1,), lr))
    return _median(factors)
