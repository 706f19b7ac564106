"""Measurements read from an optimizer; they never change it."""

from __future__ import annotations

import math

import torch

__all__ = ["effective_lr", "eps_dominated_share", "state_bytes", "step_factors"]


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in ``optimizer.state`` tensors (step counters included), i.e. the optimizer's
    memory on top of the parameters and gradients."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += value.numel() * value.element_size()
    return total


def step_factors(optimizer: torch.optim.Optimizer) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
    """The effective per-coordinate step size: for every parameter, the factor its gradient is
    multiplied by in the next update, as ``(param, factors, group)``. The lab's one place that
    knows each algorithm's step size:

    - SGD family: ``η`` (momentum's ``η / (1 − μ)`` long-run gain is not included);
    - AdaGrad: ``η_t / (√G + ε)``, ``η_t = η / (1 + (t − 1) lr_decay)``;
    - RMSProp: ``η / (√E[g²] + ε)``;
    - AdaDelta: ``η √(E[Δθ²] + ε) / √(E[g²] + ε)``;
    - Adam/AdamW: ``η / (√v̂ + ε)``, ``v̂ = v / (1 − β₂ᵗ)``.
    """
    out = []
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        eps = float(group.get("eps", 0.0) or 0.0)
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            if "sum" in st:  # AdaGrad
                t = float(st["step"]) if "step" in st else 1.0
                lr_t = lr / (1 + max(t - 1, 0) * group.get("lr_decay", 0.0))
                factors = lr_t / (st["sum"].sqrt() + eps)
            elif "acc_delta" in st:  # AdaDelta
                factors = lr * (st["acc_delta"] + eps).sqrt() / (st["square_avg"] + eps).sqrt()
            elif "square_avg" in st:  # RMSProp
                factors = lr / (st["square_avg"].sqrt() + eps)
            elif "exp_avg_sq" in st:  # Adam, AdamW
                t = float(st["step"])
                beta2 = group["betas"][1]
                v_hat = st["exp_avg_sq"] / (1 - beta2 ** t)
                factors = lr / (v_hat.sqrt() + eps)
            else:
                factors = torch.full((1,), lr)
            out.append((p, factors, group))
    return out


def effective_lr(optimizer: torch.optim.Optimizer, params=None) -> float:
    """Median over all parameter entries (of ``params``, default all) of :func:`step_factors`."""
    keep = None if params is None else {id(p) for p in params}
    values = [f.reshape(-1).float().cpu() for p, f, _ in step_factors(optimizer)
              if keep is None or id(p) in keep]
    if not values:
        return math.nan
    return float(torch.cat(values).median())


def eps_dominated_share(optimizer: torch.optim.Optimizer, params=None) -> float:
    """Share of entries whose adaptive denominator is dominated by ε (the factor is at least
    half of ``η / ε``, i.e. the gradient statistic is below ε); 0 for the SGD family."""
    keep = None if params is None else {id(p) for p in params}
    hits = total = 0
    for p, factors, group in step_factors(optimizer):
        if keep is not None and id(p) not in keep:
            continue
        eps = float(group.get("eps", 0.0) or 0.0)
        total += factors.numel()
        if eps > 0 and factors.numel() == p.numel():
            hits += int((factors >= 0.5 * float(group["lr"]) / eps).sum())
    return hits / total if total else math.nan
