r"""AdaGrad (Duchi, Hazan & Singer, 2011).

Update rule, step t (1-based)::

    g ← ±∇f(θ) + λ θ
    η_t ← η / (1 + (t − 1) · lr_decay)
    G ← G + g²                                   (state ``sum``)
    θ ← θ − η_t g / (√G + ε)        eps_in_sqrt=False  (PyTorch)
    θ ← θ − η_t g / √(G + ε)        eps_in_sqrt=True   (Keras, optax)

G starts at ``initial_accumulator_value`` (torch 0, TF1/Keras/optax 0.1). State: ``step``,
``sum``, made for every parameter when the optimizer is built, as torch.optim.Adagrad does.
Effective step size per coordinate: η_t / (√G + ε).

Sparse gradients update only the rows they touch, as torch.optim.Adagrad (no weight decay).
``differentiable=True`` builds the update from ops autograd can differentiate (torch's
differentiable mode).
"""

from __future__ import annotations

from adaptim import _validation as V
from adaptim._tensors import real_view
from adaptim.algorithms._spec import (COMMON_FIELDS, Algorithm, check_flags, common_fields,
                                      filled, hyper, number, state_list)
from adaptim.functional.adagrad import adagrad, adagrad_foreach

__all__ = ["SPEC", "AdagradSpec", "decayed_lr"]


def decayed_lr(lr: float, lr_decay: float, step):
    """η_t = η / (1 + (t − 1) · lr_decay) for the 1-based step t (a number or a numpy array)."""
    return lr / (1 + (step - 1) * lr_decay)


class AdagradSpec(Algorithm):
    name = "adagrad"
    state_keys = ("sum",)
    nonnegative = frozenset({"sum"})
    hp_fields = COMMON_FIELDS + ("lr", "lr_decay", "eps", "eps_in_sqrt")
    eager_state = True
    sparse_refusal = None
    arg_docs = {
        "lr_decay": "decay of the learning rate: η_t = η / (1 + (t − 1) lr_decay)",
        "initial_accumulator_value": "where the sum of squares G starts",
        "eps": "ε added to the denominator",
        "eps_in_sqrt": "True: ε inside the square root, √(G + ε) (Keras, optax); False: "
                       "√G + ε (PyTorch); None: the convention's",
    }
    torch_group_defaults = dict(eps_in_sqrt=False, convention="torch")
    presets = {
        "torch": dict(lr=1e-2, eps=1e-10, eps_in_sqrt=False, initial_accumulator_value=0.0),
        "tf1": dict(lr=1e-2, eps=0.0, eps_in_sqrt=True, initial_accumulator_value=0.1),
        "keras": dict(lr=1e-3, eps=1e-7, eps_in_sqrt=True, initial_accumulator_value=0.1),
        "optax": dict(lr=1e-2, eps=1e-7, eps_in_sqrt=True, initial_accumulator_value=0.1),
    }

    def validate(self, group):
        V.check_finite_nonneg("lr_decay", group["lr_decay"])
        V.check_finite_nonneg("eps", group["eps"])
        V.check_finite_nonneg("initial_accumulator_value", group["initial_accumulator_value"])
        check_flags(group, "eps_in_sqrt")

    def hyperparameters(self, group, grad_scale, init):
        # η_t is computed per tensor in the kernel from its step
        return {**common_fields(group, grad_scale), "lr": number(group["lr"]),
                "lr_decay": number(group["lr_decay"]), "eps": number(group["eps"]),
                "eps_in_sqrt": float(group["eps_in_sqrt"])}

    def kernel_flags(self, group):
        return dict(HAS_WD=number(group["weight_decay"]) != 0,
                    EPS_IN_SQRT=bool(group["eps_in_sqrt"]))

    def tensor_scalars(self, group, steps, init):
        lr_t = decayed_lr(number(group["lr"]), number(group["lr_decay"]), steps)
        return (-lr_t).reshape(-1, 1)

    def init_state(self, param, state, group):
        state["step"] = self.new_step()
        state["sum"] = filled(param, group["initial_accumulator_value"])

    def reference_step(self, group, params, grads, states, foreach=False):
        rule = adagrad_foreach if foreach else adagrad
        rule(params, grads, state_list(states, "sum"), [st["step"] for st in states],
             lr=hyper(group, group["lr"]), lr_decay=number(group["lr_decay"]),
             weight_decay=hyper(group, group["weight_decay"]), eps=hyper(group, group["eps"]),
             maximize=group["maximize"], eps_in_sqrt=group["eps_in_sqrt"],
             differentiable=group["differentiable"])

    def effective_step(self, state, group):
        if "sum" not in state:
            return None
        eps = number(group["eps"])
        step = float(state["step"]) if "step" in state else 0.0
        lr_t = decayed_lr(number(group["lr"]), number(group["lr_decay"]), max(step, 1.0))
        v = real_view(state["sum"]).float()
        if group.get("eps_in_sqrt"):
            return lr_t / (v + eps).sqrt(), v < eps
        root = v.sqrt()
        return lr_t / (root + eps), root < eps


SPEC = AdagradSpec()
