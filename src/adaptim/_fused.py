"""Fused optimizer steps. Placeholder until the fused-steps issue."""

from __future__ import annotations


def fused_update(optimizer, group, params, grads, states) -> None:
    if group.get("state_dtype") is not None:
        raise NotImplementedError("state_dtype is not implemented yet")
    raise NotImplementedError("fused=True is not implemented yet")
