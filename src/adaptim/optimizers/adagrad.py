"""adaptim.Adagrad; math in adaptim.functional.adagrad."""

from __future__ import annotations

import torch

from adaptim import _validation as V
from adaptim._base import AdaptimOptimizer, common_defaults
from adaptim.conventions import Default, resolve
from adaptim.functional.adagrad import adagrad

__all__ = ["Adagrad"]


class Adagrad(AdaptimOptimizer):
    r"""AdaGrad (Duchi et al. 2011); drop-in for torch.optim.Adagrad.

    ``G ← G + g² ;  θ ← θ − η_t g / (√G + ε)``, ``η_t = η / (1 + (t − 1) lr_decay)``, with
    PyTorch's defaults (η = 0.01, ε = 1e-10, G₀ = 0). ``eps_in_sqrt=True`` puts ε inside the root
    (Keras, optax); ``convention="torch" | "tf1" | "keras" | "optax"`` reproduces that framework
    (see :mod:`adaptim.conventions`). State keys as torch: ``step``, ``sum`` (made at
    construction, as torch does).

    Example::

        >>> opt = adaptim.Adagrad(model.parameters(), lr=0.1, convention="keras")
    """

    name = "adagrad"
    supports_sparse_grads = True
    state_tensor_keys = ("sum",)
    _torch_group_defaults = dict(eps_in_sqrt=False, convention="torch")

    def __init__(self, params, lr: float | torch.Tensor = Default(1e-2), lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = Default(0.0),
                 eps: float = Default(1e-10), foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False,
                 fused: bool | None = None, state_dtype: torch.dtype | None = None,
                 max_grad_norm: float | None = None, on_nonfinite: str = "propagate",
                 eps_in_sqrt: bool | None = None, convention: str = "torch") -> None:
        hp = resolve("adagrad", convention, dict(
            lr=lr, eps=eps, eps_in_sqrt=eps_in_sqrt,
            initial_accumulator_value=initial_accumulator_value))
        defaults = dict(**hp, lr_decay=lr_decay, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused,
                        convention=convention,
                        **common_defaults(state_dtype, max_grad_norm, on_nonfinite))
        super().__init__(params, defaults)

    def _validate_group(self, group: dict) -> None:
        V.check_finite_nonneg("lr_decay", group["lr_decay"])
        V.check_finite_nonneg("eps", group["eps"])
        V.check_finite_nonneg("initial_accumulator_value", group["initial_accumulator_value"])
        V.check_bool("eps_in_sqrt", group["eps_in_sqrt"])

    def add_param_group(self, param_group: dict) -> None:
        # torch.optim.Adagrad creates its state eagerly; so do we, so checkpoints match.
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            if not self.state[p]:
                self._make_state(p, self.state[p], group)

    def _required_state(self, group: dict) -> set[str]:
        return {"step", "sum"}

    def _init_state(self, param, state, group) -> None:
        state["step"] = self._new_step()
        state["sum"] = torch.full_like(param, group["initial_accumulator_value"],
                                       memory_format=torch.preserve_format)
        if param.is_complex():
            # complex(v, v), as torch: both real and imaginary parts start at the value
            torch.view_as_real(state["sum"]).fill_(group["initial_accumulator_value"])

    def _update(self, group, params, grads, states) -> None:
        h = lambda key: self._hyper(group, group[key])
        adagrad(params, grads, self._state_list(states, "sum"), [st["step"] for st in states],
                lr=h("lr"), lr_decay=V.to_float(group["lr_decay"]),
                weight_decay=h("weight_decay"), eps=h("eps"), maximize=group["maximize"],
                eps_in_sqrt=group["eps_in_sqrt"], differentiable=group["differentiable"])
