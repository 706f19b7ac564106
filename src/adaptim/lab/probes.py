"""Measurements read from an optimizer; they never change it."""

from __future__ import annotations

import math

import torch

from adaptim.algorithms import for_state

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


def step_factors(optimizer: torch.optim.Optimizer
                 ) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
    """The effective per-coordinate step size: for every parameter, the factor its gradient (or
    Adam's m̂) is multiplied by in the next update, as ``(param, factors, group)``. Each
    algorithm's spec computes it (:meth:`adaptim.algorithms.Algorithm.effective_step`, also
    read by the gradient monitor), for adaptim and torch.optim optimizers alike; the SGD family
    gets ``η`` (momentum's ``η / (1 − μ)`` long-run gain is not included)."""
    out = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            spec = for_state(st, optimizer) if st else None
            found = None if spec is None else spec.effective_step(st, group)
            factors = torch.full((1,), float(group["lr"])) if found is None else found[0]
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
