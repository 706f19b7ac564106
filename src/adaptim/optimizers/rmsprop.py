"""adaptim.RMSprop; math in adaptim.functional.rmsprop."""

from __future__ import annotations

import torch

from adaptim import _validation as V
from adaptim._base import AdaptimOptimizer, common_defaults
from adaptim.conventions import Default, resolve
from adaptim.functional.rmsprop import rmsprop

__all__ = ["RMSprop"]


class RMSprop(AdaptimOptimizer):
    r"""RMSProp (Tieleman & Hinton 2012); drop-in for torch.optim.RMSprop.

    ``E[g²] ← α E[g²] + (1 − α) g² ;  θ ← θ − η g / (√E[g²] + ε)`` with PyTorch's defaults
    (α = 0.99, ε = 1e-8 outside the root, η = 0.01). Options torch lacks:

    - ``eps_in_sqrt``: ε inside the root, ``√(E[g²] + ε)`` — TensorFlow, Keras, optax and the
      textbook equation. Default: outside (PyTorch and the textbook code).
    - ``initial_accumulator_value``: where E[g²] starts (TF1 starts at 1.0).
    - ``lr_in_momentum``: ``b ← μ b + η g / r ; θ ← θ − b`` (TF/Keras/optax) instead of
      ``b ← μ b + g / r ; θ ← θ − η b`` (PyTorch).
    - ``convention``: ``"torch" | "tf1" | "keras" | "optax"`` sets all of the above, α and ε (and
      the default η) to reproduce that framework; explicit arguments win. See
      :mod:`adaptim.conventions` for the sources.

    State keys as torch: ``step``, ``square_avg``, ``momentum_buffer``, ``grad_avg``.

    Example::

        >>> opt = adaptim.RMSprop(model.parameters(), lr=1e-3, convention="keras")
    """

    name = "rmsprop"
    _sparse_refusal = "RMSprop does not support sparse gradients"
    state_tensor_keys = ("square_avg", "momentum_buffer", "grad_avg")
    _torch_group_defaults = dict(eps_in_sqrt=False, initial_accumulator_value=0.0,
                                 lr_in_momentum=False, convention="torch")

    def __init__(self, params, lr: float | torch.Tensor = Default(1e-2),
                 alpha: float = Default(0.99), eps: float = Default(1e-8),
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, *, eps_in_sqrt: bool | None = None,
                 initial_accumulator_value: float = Default(0.0),
                 lr_in_momentum: bool | None = None, convention: str = "torch",
                 fused: bool | None = None, state_dtype: torch.dtype | None = None,
                 max_grad_norm: float | None = None, on_nonfinite: str = "propagate") -> None:
        hp = resolve("rmsprop", convention, dict(
            lr=lr, alpha=alpha, eps=eps, eps_in_sqrt=eps_in_sqrt,
            initial_accumulator_value=initial_accumulator_value, lr_in_momentum=lr_in_momentum))
        defaults = dict(**hp, weight_decay=weight_decay, momentum=momentum, centered=centered,
                        capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, convention=convention, fused=fused,
                        **common_defaults(state_dtype, max_grad_norm, on_nonfinite))
        super().__init__(params, defaults)

    def _validate_group(self, group: dict) -> None:
        V.check_unit_closed("alpha", group["alpha"])
        V.check_finite_nonneg("eps", group["eps"])
        V.check_finite_nonneg("momentum", group["momentum"])
        V.check_finite_nonneg("initial_accumulator_value", group["initial_accumulator_value"])
        for flag in ("centered", "eps_in_sqrt", "lr_in_momentum"):
            V.check_bool(flag, group[flag])

    def _required_state(self, group: dict) -> set[str]:
        keys = {"step", "square_avg"}
        if V.to_float(group["momentum"]) > 0:
            keys.add("momentum_buffer")
        if group["centered"]:
            keys.add("grad_avg")
        return keys

    def _init_state(self, param, state, group) -> None:
        state["step"] = self._new_step()
        state["square_avg"] = torch.full_like(
            param, group["initial_accumulator_value"], memory_format=torch.preserve_format)
        if param.is_complex():
            # E[g²] is kept per real component (the real view), so both the real and the
            # imaginary part start at the value; full_like alone gives complex(v, 0).
            torch.view_as_real(state["square_avg"]).fill_(group["initial_accumulator_value"])
        if V.to_float(group["momentum"]) > 0:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def _update(self, group, params, grads, states) -> None:
        s = self._state_list
        h = lambda key: self._hyper(group, group[key])
        rmsprop(params, grads, s(states, "square_avg"), s(states, "grad_avg"),
                s(states, "momentum_buffer"), [st["step"] for st in states],
                lr=h("lr"), alpha=V.to_float(group["alpha"]), eps=h("eps"),
                weight_decay=h("weight_decay"), differentiable=group["differentiable"],
                momentum=V.to_float(group["momentum"]), centered=group["centered"],
                maximize=group["maximize"], eps_in_sqrt=group["eps_in_sqrt"],
                lr_in_momentum=group["lr_in_momentum"])
