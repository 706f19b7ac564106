"""adaptim.Adadelta; math in adaptim.functional.adadelta."""

from __future__ import annotations

import torch

from adaptim import _validation as V
from adaptim._base import AdaptimOptimizer, common_defaults
from adaptim.conventions import Default, resolve
from adaptim.functional.adadelta import adadelta

__all__ = ["Adadelta"]


class Adadelta(AdaptimOptimizer):
    r"""AdaDelta (Zeiler 2012); drop-in for torch.optim.Adadelta.

    ``Δ ← √(E[Δθ²] + ε) / √(E[g²] + ε) · g ;  θ ← θ − η Δ`` with PyTorch's defaults (η = 1.0,
    ρ = 0.9, ε = 1e-6). ``convention="tf1" | "keras"`` gives ρ = 0.95, η = 0.001 and their ε (see
    :mod:`adaptim.conventions`). State keys as torch: ``step``, ``square_avg``, ``acc_delta``.

    Example::

        >>> opt = adaptim.Adadelta(model.parameters())   # no learning rate to tune
    """

    name = "adadelta"
    _sparse_refusal = "Adadelta does not support sparse gradients"
    state_tensor_keys = ("square_avg", "acc_delta")
    _torch_group_defaults = dict(convention="torch")

    def __init__(self, params, lr: float | torch.Tensor = Default(1.0),
                 rho: float = Default(0.9), eps: float = Default(1e-6), weight_decay: float = 0,
                 foreach: bool | None = None, *, capturable: bool = False,
                 maximize: bool = False, differentiable: bool = False,
                 convention: str = "torch", fused: bool | None = None,
                 state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None, on_nonfinite: str = "propagate") -> None:
        hp = resolve("adadelta", convention, dict(lr=lr, rho=rho, eps=eps))
        defaults = dict(**hp, weight_decay=weight_decay, foreach=foreach, capturable=capturable,
                        maximize=maximize, differentiable=differentiable, convention=convention,
                        fused=fused,
                        **common_defaults(state_dtype, max_grad_norm, on_nonfinite))
        super().__init__(params, defaults)

    def _validate_group(self, group: dict) -> None:
        V.check_unit_closed("rho", group["rho"])
        V.check_finite_nonneg("eps", group["eps"])

    def _required_state(self, group: dict) -> set[str]:
        return {"step", "square_avg", "acc_delta"}

    def _init_state(self, param, state, group) -> None:
        state["step"] = self._new_step()
        state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["acc_delta"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def _update(self, group, params, grads, states) -> None:
        s = self._state_list
        adadelta(params, grads, s(states, "square_avg"), s(states, "acc_delta"),
                 [st["step"] for st in states], lr=self._hyper(group, group["lr"]),
                 rho=V.to_float(group["rho"]), eps=self._hyper(group, group["eps"]),
                 weight_decay=self._hyper(group, group["weight_decay"]),
                 maximize=group["maximize"], differentiable=group["differentiable"])
