"""Errors raised by adaptim's gradient guards."""

from __future__ import annotations

__all__ = ["NonFiniteGradientError"]


class NonFiniteGradientError(FloatingPointError):
    """Raised by ``optimizer.step()`` under ``on_nonfinite="raise"`` when a gradient holds NaN
    or Inf. Nothing has been changed when it is raised (no parameter, no state).

    ``offenders`` lists one ``(group_index, param_index, name, nan_count, inf_count)`` per
    offending parameter; ``name`` is ``None`` unless the optimizer was built from
    ``model.named_parameters()`` (torch >= 2.6 keeps the names in ``group["param_names"]``).
    A subclass of FloatingPointError (hence ArithmeticError).
    """

    def __init__(self, offenders: list[tuple[int, int, str | None, int, int]]):
        self.offenders = list(offenders)
        parts = []
        for group, index, name, n_nan, n_inf in self.offenders[:10]:
            label = f"group {group} param {index}" + (f" ({name!r})" if name else "")
            parts.append(f"{label}: {n_nan} NaN, {n_inf} Inf")
        more = f"; and {len(self.offenders) - 10} more" if len(self.offenders) > 10 else ""
        super().__init__(
            f"non-finite gradient in {len(self.offenders)} parameter(s): " + "; ".join(parts)
            + more + ". Use on_nonfinite='skip' to skip such steps, max_grad_norm= or a lower "
            "learning rate against explosion, torch.amp.GradScaler for fp16 overflow.")

    @property
    def names(self) -> list[str]:
        """The offending parameters' names, or ``"group G param I"`` where unnamed."""
        return [name or f"group {g} param {i}" for g, i, name, _, _ in self.offenders]
