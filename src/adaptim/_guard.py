"""Gradient guards that run inside ``step()`` before any update: clipping (``max_grad_norm``)
and the non-finite policy (``on_nonfinite``). Placeholder until the gradient-health issue."""

from __future__ import annotations


def before_update(optimizer, work) -> bool:
    """Return False to skip this step entirely (no parameter or state changes)."""
    for group, *_ in work:
        if group.get("max_grad_norm") is not None or group.get("on_nonfinite", "propagate") != "propagate":
            raise NotImplementedError("max_grad_norm and on_nonfinite are not implemented yet")
    return True
