"""What every algorithm spec provides, and the defaults most of them share.

A spec is the one place that knows an algorithm: the optimizer shell (:mod:`adaptim._base`)
asks it to validate, start and check state; the reference path, the C kernel and the Triton
kernels ask it for the update rule, the named hyperparameter fields and the kernel options;
the diagnostics and the lab ask it for the effective step size. No backend names an algorithm.
"""

from __future__ import annotations

import torch
from torch import Tensor

from adaptim import _validation as V
from adaptim._tensors import real_view, scalar_dtype

__all__ = ["Algorithm", "COMMON_FIELDS", "check_flags", "common_fields", "filled", "hyper",
           "number", "state_list"]

# The first hyperparameter fields of every rule (the gradient preparation all rules share):
# g ← grad · grad_scale [+ weight_decay · θ]; grad_scale is negative when maximizing.
COMMON_FIELDS = ("grad_scale", "weight_decay", "has_weight_decay")


def number(value) -> float:
    """A Python float from a number or a 1-element tensor (a tensor lr, as torch allows)."""
    return float(value.item()) if isinstance(value, Tensor) else float(value)


def hyper(group: dict, value):
    """A hyperparameter as the reference rule takes it: a float; in differentiable mode the value
    as given, so a tensor lr (or betas) stays in the autograd graph, as in torch.optim."""
    if not group.get("differentiable"):
        return number(value)
    # torch.optim's _to_scalar: a 1-element tensor of any shape becomes 0-dimensional
    return value.squeeze() if isinstance(value, Tensor) and value.dim() else value


def common_fields(group: dict, grad_scale: float) -> dict[str, float]:
    """The values of :data:`COMMON_FIELDS` for one group."""
    wd = number(group.get("weight_decay", 0.0))
    return {"grad_scale": -grad_scale if group["maximize"] else grad_scale,
            "weight_decay": wd, "has_weight_decay": float(wd != 0)}


class Algorithm:
    """The spec of one algorithm. Subclasses set the class attributes and the methods marked
    "every algorithm"; the rest have defaults that fit an algorithm whose state tensors are all
    made when a parameter first gets a gradient."""

    #: the rule's name: the spec module, the C function ``adaptim_<name>``, the Triton kernel
    #: ``<name>_kernel``
    name: str = ""
    #: per-parameter state tensors shaped like the parameter, in the kernels' operand order
    state_keys: tuple[str, ...] = ()
    #: state keys that are sums or averages of squares: never negative
    nonnegative: frozenset[str] = frozenset()
    #: named hyperparameter fields the compiled kernels read, in their order (``hp[ADAM_LR]``
    #: in C, ``ADAM_LR`` in Triton: generated from this tuple, see :mod:`adaptim.algorithms`)
    hp_fields: tuple[str, ...] = COMMON_FIELDS
    #: whether the state has a ``step`` counter (the kernels then increment it)
    counts_steps: bool = True
    #: a state tensor the first step makes from the gradient (torch.optim.SGD's momentum buffer)
    #: instead of ``init_state``; the kernels write it from the gradient on that step
    grad_initialised_state: str | None = None
    #: whether state is made for every parameter when it joins (torch.optim.Adagrad does)
    eager_state: bool = False
    #: torch.optim's RuntimeError message for a sparse gradient; None: sparse gradients are
    #: taken (by the reference rule, as torch.optim's SGD and Adagrad take them)
    sparse_refusal: str | None = "this optimizer does not support sparse gradients"
    #: whether complex tensors are updated as real views (squares are taken elementwise on the
    #: real view, as torch.optim does)
    views_complex_as_real: bool = True
    #: values of adaptim-only group keys that reproduce torch.optim, for torch checkpoints
    torch_group_defaults: dict[str, object] = {}
    #: framework conventions: convention -> hyperparameters (see :mod:`adaptim.conventions`)
    presets: dict[str, dict[str, object]] = {}
    #: what each of this algorithm's own constructor arguments means (for the class docstring;
    #: the arguments every optimizer shares are documented in adaptim.optimizers._docs)
    arg_docs: dict[str, str] = {}

    # ---------------------------------------------------------------- hyperparameters
    def validate(self, group: dict) -> None:  # every algorithm
        """Raise ValueError (TypeError for a wrong type) naming the bad hyperparameter."""
        raise NotImplementedError

    def hyperparameters(self, group: dict, grad_scale: float, init: bool) -> dict[str, float]:
        """The value of every field of :attr:`hp_fields` (every algorithm with a kernel)."""
        raise NotImplementedError

    def hp(self, group: dict, grad_scale: float, init: bool = False) -> list[float]:
        """:meth:`hyperparameters` as the list the kernels receive (float64, field order)."""
        values = self.hyperparameters(group, grad_scale, init)
        return [values[field] for field in self.hp_fields]

    def kernel_flags(self, group: dict) -> dict[str, object]:  # every algorithm with a kernel
        """The options the Triton kernel is specialised on (its ``tl.constexpr`` arguments)."""
        raise NotImplementedError

    def tensor_scalars(self, group: dict, steps, init) -> object:
        """Per-tensor step-dependent scalars for kernels that take them precomputed (Triton): a
        float64 array of one row per tensor, or None. ``steps``: the new step counts (float64
        array, None without a counter); ``init``: 1.0 where :attr:`grad_initialised_state` is
        made by this step."""
        return None

    # ---------------------------------------------------------------- state
    def required_state(self, group: dict) -> set[str]:
        """The state keys a parameter with state must have under this group's options."""
        return {"step", *self.state_keys} if self.counts_steps else set(self.state_keys)

    def stateless(self, group: dict) -> bool:
        """True when this group's rule keeps no per-parameter state (plain SGD)."""
        return False

    @staticmethod
    def new_step() -> Tensor:
        """A step counter as torch.optim keeps it (a 0-d CPU float tensor)."""
        return torch.tensor(0.0, dtype=scalar_dtype())

    def init_state(self, param: Tensor, state: dict, group: dict) -> None:
        """Fill a new parameter's state (default: the step and zeros for every required key)."""
        state["step"] = self.new_step()
        for key in self.state_keys:
            if key in self.required_state(group):
                state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)

    # ---------------------------------------------------------------- rule and measurements
    def reference_step(self, group: dict, params: list[Tensor], grads: list[Tensor],
                       states: list[dict], foreach: bool = False) -> None:  # every algorithm
        """The reference rule (:mod:`adaptim.functional`) on real tensors and their states:
        per tensor, or with ``foreach`` its multi-tensor form (torch.optim's foreach bits)."""
        raise NotImplementedError

    def effective_step(self, state: dict, group: dict) -> tuple[Tensor, Tensor] | None:
        """(per-coordinate effective step size, mask of the coordinates where ε dominates the
        denominator), in float32, from a parameter's state; None for a rule that does not
        scale coordinates (SGD) or a parameter without state."""
        return None


def filled(param: Tensor, value: float) -> Tensor:
    """A state tensor like ``param`` filled with ``value``; a complex one gets ``value`` in both
    the real and the imaginary part (its squares are kept per real component), as torch does."""
    out = torch.full_like(param, value, memory_format=torch.preserve_format)
    if param.is_complex():
        torch.view_as_real(out).fill_(value)
    return out


def state_list(states: list[dict], key: str) -> list[Tensor | None]:
    """The real views of one state tensor across parameters (None where absent)."""
    return [real_view(s.get(key)) for s in states]


def check_flags(group: dict, *names: str) -> None:
    for name in names:
        V.check_bool(name, group[name])
