"""Gradient guards that run inside ``step()`` before any state is touched: clipping
(``max_grad_norm``) and the non-finite policy (``on_nonfinite``).

Placeholder until the gradient-health issue implements them.
"""

from __future__ import annotations


def before_update(optimizer) -> float | None:
    """Decide what this step does with the current gradients.

    Returns ``None`` to skip the step entirely (no parameter, no state changes), otherwise the
    factor every gradient is multiplied by before the update (1.0: unchanged). The fused path
    applies the factor inside its kernel; the unfused path multiplies the gradients in place.
    """
    for group in optimizer.param_groups:
        if group.get("max_grad_norm") is not None or group.get("on_nonfinite") != "propagate":
            raise NotImplementedError("max_grad_norm and on_nonfinite are not implemented yet")
    return 1.0
