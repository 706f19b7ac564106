"""Fused optimizer steps. Placeholder until the fused-steps issue implements them."""

from __future__ import annotations


def fused_update(optimizer, group, params, grads, states, grad_scale: float) -> None:
    """Apply ``optimizer``'s update rule to one group in one fused pass, multiplying gradients by
    ``grad_scale`` on the fly (clipping). ``params``/``grads`` are real views."""
    raise NotImplementedError("fused=True is not implemented yet")
