"""Small tensor helpers shared by the optimizer shell, the fused path, the flat layout, the
guard and the diagnostics (one definition each)."""

from __future__ import annotations

import operator

import torch
from torch import Tensor

__all__ = ["DTYPE", "GRAD", "IS_CPU", "LAYOUT", "group_cache", "keep_for_group", "real_view",
           "scalar_dtype"]

# Getters for map() over tensor lists (C-level iteration instead of a Python loop per tensor)
DTYPE = operator.attrgetter("dtype")
GRAD = operator.attrgetter("grad")
IS_CPU = operator.attrgetter("is_cpu")
LAYOUT = operator.attrgetter("layout")


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim keeps ``step`` in: float32 unless the default dtype is float64.
    Matching it keeps checkpoints interchangeable."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def real_view(t: Tensor | None) -> Tensor | None:
    """``t`` viewed as real (complex -> trailing dimension of 2), as torch.optim does before its
    elementwise squares; real tensors and None pass through."""
    return torch.view_as_real(t) if t is not None and t.is_complex() else t


def group_cache(optimizer, key: str) -> dict:
    """The per-group cache ``key`` of ``optimizer`` (group id -> entry), made on first use. It
    lives in the instance dict, so it is never part of ``state_dict()``."""
    cache = optimizer.__dict__.get(key)
    if cache is None:
        cache = optimizer.__dict__[key] = {}
    return cache


def keep_for_group(optimizer, key: str, group: dict, entry) -> None:
    """Store ``entry`` for ``group`` in cache ``key``, dropping the entries of groups that are no
    longer the optimizer's (their ids could be reused by new groups)."""
    cache = group_cache(optimizer, key)
    live = set(map(id, optimizer.param_groups))
    for gid in [gid for gid in cache if gid not in live]:
        del cache[gid]
    cache[id(group)] = entry
