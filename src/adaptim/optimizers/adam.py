"""adaptim.Adam and adaptim.AdamW; math in adaptim.functional.adam."""

from __future__ import annotations

import torch

from adaptim import _validation as V
from adaptim._base import AdaptimOptimizer, common_defaults
from adaptim.conventions import Default, resolve
from adaptim.functional.adam import adam

__all__ = ["Adam", "AdamW"]


class Adam(AdaptimOptimizer):
    r"""Adam (Kingma & Ba 2015) with AMSGrad; drop-in for torch.optim.Adam.

    ``m ← β₁m + (1−β₁)g ; v ← β₂v + (1−β₂)g² ; θ ← θ − η m̂ / (√v̂ + ε)`` with PyTorch's
    defaults (η = 1e-3, β = (0.9, 0.999), ε = 1e-8). Options torch lacks:

    - ``eps_in_sqrt``: ``√(v̂ + ε)`` (optax's eps_root form);
    - ``eps_hat``: ε added to √v before bias correction, "epsilon hat" of the paper's §2, as
      TF1 and Keras do;
    - ``bias_correction=False``: drop m̂/v̂ correction (with β₁ = 0 this is RMSProp, α = β₂);
    - ``convention="torch" | "tf1" | "keras" | "optax"`` (see :mod:`adaptim.conventions`).

    ``weight_decay`` is L2 added to the gradient unless ``decoupled_weight_decay=True`` (AdamW).
    State keys as torch: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``.

    Example::

        >>> opt = adaptim.Adam(model.parameters(), lr=3e-4, amsgrad=True)
    """

    name = "adam"
    _sparse_refusal = "Adam does not support sparse gradients, please consider SparseAdam instead"
    state_tensor_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _torch_group_defaults = dict(eps_in_sqrt=False, eps_hat=False, bias_correction=True,
                                 convention="torch")

    def __init__(self, params, lr: float | torch.Tensor = Default(1e-3),
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = Default(1e-8),
                 weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None,
                 on_nonfinite: str = "propagate", decoupled_weight_decay: bool = False, eps_in_sqrt: bool | None = None,
                 eps_hat: bool | None = None, bias_correction: bool = True,
                 convention: str = "torch") -> None:
        if eps_in_sqrt is True and eps_hat is None:
            eps_hat = False  # an explicit ε placement wins over the convention's (ε̂ in tf1/keras)
        hp = resolve("adam", convention, dict(lr=lr, eps=eps, eps_in_sqrt=eps_in_sqrt,
                                              eps_hat=eps_hat))
        defaults = dict(**hp, betas=betas, weight_decay=weight_decay, amsgrad=amsgrad,
                        foreach=foreach, maximize=maximize, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay,
                        bias_correction=bias_correction, convention=convention,
                        **common_defaults(state_dtype, max_grad_norm, on_nonfinite))
        super().__init__(params, defaults)

    def _validate_group(self, group: dict) -> None:
        # torch.optim.Adam's checks, in its order: Tensor hyperparameters with foreach=True
        # (its foreach kernels take numbers unless capturable), then ranges, then the betas'
        # types. adaptim has no foreach path, but matches torch so code moves both ways.
        foreach = group.get("foreach") and not group.get("capturable")
        if foreach and isinstance(group["lr"], torch.Tensor):
            raise V.tensor_with_foreach("lr")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        V.check_finite_nonneg("eps", group["eps"])
        V.check_unit_open("betas[0]", betas[0])
        V.check_unit_open("betas[1]", betas[1])
        is_tensor = [isinstance(b, torch.Tensor) for b in betas]
        if is_tensor[0] != is_tensor[1]:
            # torch also refuses two ints (0, 0.99 is fine; (0, 1) is out of range anyway):
            # adaptim takes any two real numbers.
            raise ValueError("betas must be either both floats or both Tensors")
        for i, t in enumerate(is_tensor):
            if t and foreach:
                raise V.tensor_with_foreach(f"betas[{i}]")
        for flag in ("amsgrad", "decoupled_weight_decay", "eps_in_sqrt", "eps_hat",
                     "bias_correction"):
            V.check_bool(flag, group[flag])
        if group["eps_in_sqrt"] and group["eps_hat"]:
            raise ValueError("eps_in_sqrt and eps_hat are two placements of ε; choose one")

    def _required_state(self, group: dict) -> set[str]:
        keys = {"step", "exp_avg", "exp_avg_sq"}
        if group["amsgrad"]:
            keys.add("max_exp_avg_sq")
        return keys

    def _init_state(self, param, state, group) -> None:
        state["step"] = self._new_step()
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def _update(self, group, params, grads, states) -> None:
        s = self._state_list
        h = lambda value: self._hyper(group, value)
        beta1, beta2 = group["betas"]
        adam(params, grads, s(states, "exp_avg"), s(states, "exp_avg_sq"),
             s(states, "max_exp_avg_sq"), [st["step"] for st in states],
             lr=h(group["lr"]), beta1=h(beta1), beta2=h(beta2), eps=h(group["eps"]),
             weight_decay=h(group["weight_decay"]), differentiable=group["differentiable"],
             amsgrad=group["amsgrad"], maximize=group["maximize"],
             decoupled_weight_decay=group["decoupled_weight_decay"],
             eps_in_sqrt=group["eps_in_sqrt"], eps_hat=group["eps_hat"],
             bias_correction=group["bias_correction"])


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter 2019): Adam with weight decay decoupled from the adaptive step,
    ``θ ← θ (1 − η λ)`` before the Adam update; drop-in for torch.optim.AdamW (λ = 0.01).

    Example::

        >>> opt = adaptim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    """

    name = "adamw"

    def __init__(self, params, lr: float | torch.Tensor = Default(1e-3),
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = Default(1e-8),
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None,
                 on_nonfinite: str = "propagate", eps_in_sqrt: bool | None = None,
                 eps_hat: bool | None = None, bias_correction: bool = True,
                 convention: str = "torch") -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         state_dtype=state_dtype, max_grad_norm=max_grad_norm,
                         on_nonfinite=on_nonfinite, decoupled_weight_decay=True,
                         eps_in_sqrt=eps_in_sqrt, eps_hat=eps_hat,
                         bias_correction=bias_correction, convention=convention)
