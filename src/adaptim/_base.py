"""The shared optimizer shell: validation, parameter groups, lazy state, complex views and
checked checkpoint loading. The math lives in :mod:`adaptim.functional`; subclasses only say
which state they keep and which update rule to call."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor

from adaptim import _fused, _guard, conventions
from adaptim import _validation as V
from adaptim._tensors import real_view, scalar_dtype

__all__ = ["AdaptimOptimizer", "common_defaults"]

NONFINITE_POLICIES = ("propagate", "skip", "raise")
# Options that only the constructor can set: a parameter group giving another value is refused.
_WIDE = "it applies to the whole optimizer (all groups' gradients together); pass it to the " \
        "constructor"
CONSTRUCTOR_ONLY = {
    "max_grad_norm": _WIDE,
    "on_nonfinite": _WIDE,
    "convention": "a convention is resolved into hyperparameters when the optimizer is built; "
                  "give this group its hyperparameters (eps, alpha, ...) explicitly",
}
# Top-level state_dict key for adaptim's optimizer-wide counters; torch.optim ignores it.
EXTRA_STATE_KEY = "adaptim"
# State keys (of any adaptim optimizer) that are sums or averages of squares: never negative.
NONNEGATIVE_STATE = frozenset({"sum", "square_avg", "acc_delta", "exp_avg_sq", "max_exp_avg_sq"})


def common_defaults(state_dtype, max_grad_norm, on_nonfinite) -> dict:
    """The options every adaptim optimizer has beyond torch's: state precision (fused steps),
    clipping inside step() and the non-finite gradient policy."""
    return dict(state_dtype=state_dtype, max_grad_norm=max_grad_norm, on_nonfinite=on_nonfinite)


class AdaptimOptimizer(torch.optim.Optimizer):
    """Base class of every adaptim optimizer (a :class:`torch.optim.Optimizer`).

    Keyword options every adaptim optimizer takes beyond torch's arguments:

    - ``fused``: None (default) runs the fused C kernel for CPU float32/float64 groups (one pass
      over memory; equal to the reference path to rounding) and the reference path elsewhere;
      True asks for a fused step (C on CPU, Triton on CUDA; a warning where none can run);
      False is the reference path (the functional rule per tensor: torch.optim's bits).
    - ``state_dtype``: keep state in another dtype (e.g. torch.bfloat16), arithmetic in float32.
    - ``max_grad_norm``: clip the global gradient norm inside step() (as clip_grad_norm_).
    - ``on_nonfinite``: "propagate" (torch's behaviour), "skip" the step, or "raise".

    Subclasses define:

    - ``name``: the registry name of the algorithm;
    - ``state_tensor_keys``: per-parameter state tensors shaped like the parameter;
    - ``_validate_group(group)``: raise ValueError/TypeError for a bad hyperparameter;
    - ``_required_state(group)``: the state keys a parameter with state must have;
    - ``_init_state(param, state, group)``: fill a new parameter's state;
    - ``_update(group, params, grads, states)``: apply the functional rule (real tensors);
    - ``_torch_group_defaults``: values of adaptim-only group keys that reproduce torch.optim,
      used when a checkpoint written by torch.optim lacks them.
    """

    name: str = ""
    # Squares of complex numbers are taken elementwise on the real view, as torch.optim does.
    views_complex_as_real: bool = True
    state_tensor_keys: tuple[str, ...] = ()
    _torch_group_defaults: dict[str, object] = {}

    def __init__(self, params, defaults: dict) -> None:
        self._validate_common(defaults)
        self._validate_group(defaults)
        super().__init__(params, defaults)
        # Steps that on_nonfinite="skip" refused; saved in state_dict under EXTRA_STATE_KEY.
        self.skipped_steps = 0

    # ---------------------------------------------------------------- validation
    def _validate_common(self, group: dict) -> None:
        V.check_lr(group["lr"])
        if "weight_decay" in group:
            V.check_finite_nonneg("weight_decay", group["weight_decay"])
        if "maximize" in group:
            V.check_bool("maximize", group["maximize"])
        for flag in ("foreach", "fused"):
            if flag in group:
                V.check_optional_bool(flag, group[flag])
        for flag in ("differentiable", "capturable"):
            if group.get(flag):
                name = type(self).__name__
                raise ValueError(f"{flag}=True is not supported by adaptim.{name}; use "
                                 f"torch.optim.{name} for {flag} steps")
        if group.get("max_grad_norm") is not None:
            V.check_finite_nonneg("max_grad_norm", group["max_grad_norm"])
        conventions.check(group.get("convention", "torch"))  # a param group's or a checkpoint's
        policy = group.get("on_nonfinite", "propagate")
        if policy not in NONFINITE_POLICIES:
            raise ValueError(f"Invalid on_nonfinite: {policy!r} (valid: "
                             f"{', '.join(NONFINITE_POLICIES)})")
        state_dtype = group.get("state_dtype")
        if state_dtype is not None and (not isinstance(state_dtype, torch.dtype)
                                        or not state_dtype.is_floating_point):
            raise ValueError(f"Invalid state_dtype: {state_dtype!r} (a floating torch.dtype, "
                             "e.g. torch.bfloat16, or None for the parameter's dtype)")

    def _validate_group(self, group: dict) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def add_param_group(self, param_group: dict) -> None:
        # Validate the merged group before torch stores it, so a bad group leaves nothing behind.
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        for key, why in CONSTRUCTOR_ONLY.items():
            if key in param_group and param_group[key] != self.defaults.get(key):
                raise ValueError(f"{key} cannot differ between parameter groups: {why}")
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self._validate_common(merged)
        self._validate_group(merged)
        super().add_param_group(param_group)

    # ---------------------------------------------------------------- state
    def _required_state(self, group: dict) -> set[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _init_state(self, param: Tensor, state: dict, group: dict) -> None:  # pragma: no cover
        raise NotImplementedError

    def _stateless(self, group: dict) -> bool:
        """True when this group's rule keeps no per-parameter state (plain SGD)."""
        return False

    @staticmethod
    def _new_step() -> Tensor:
        return torch.tensor(0.0, dtype=scalar_dtype())

    # ---------------------------------------------------------------- step
    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor],
                states: list[dict]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _make_state(self, param: Tensor, state: dict, group: dict) -> None:
        """The optimizer's ``_init_state``, stored in the group's ``state_dtype`` from birth (so
        no step has to look for state in another dtype)."""
        self._init_state(param, state, group)
        if group.get("state_dtype") is not None:
            _fused.cast_state(self, group, [state])

    def _gather(self, group: dict):
        """Parameters with gradients, their gradients and states (lazily initialised); complex
        tensors are viewed as real, as torch.optim does, so the update rules see real tensors."""
        params, grads, states = [], [], []
        # Loop invariants hoisted: this loop runs once per tensor per step (5,000-tensor models).
        stateless = self._stateless(group)
        state_of = self.state
        view = real_view if self.views_complex_as_real else None
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError(
                    f"adaptim.{type(self).__name__} does not support sparse gradients; use "
                    "torch.optim.SparseAdam or torch.optim.Adagrad for sparse embeddings")
            if not stateless or p in state_of:
                state = state_of[p]
                if not state:
                    self._make_state(p, state, group)
            else:
                state = {}  # nothing to keep: no empty entry in state_dict, as torch.optim
            if view is not None and p.is_complex():
                p, grad = view(p), view(grad)
            params.append(p)
            grads.append(grad)
            states.append(state)
        return params, grads, states

    @staticmethod
    def _state_list(states: list[dict], key: str) -> list[Tensor | None]:
        """The real views of one state tensor across parameters (None where absent)."""
        return [real_view(s.get(key)) for s in states]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """Perform one optimization step. ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Clipping and the non-finite policy look at the gradients before any state is made, so
        # a skipped step leaves parameters and state exactly as they were.
        grad_scale = _guard.before_update(self)
        if grad_scale is None:
            return loss
        for group in self.param_groups:
            if _fused.planned_step(self, group, grad_scale):
                continue  # the group's cached kernel call still holds: nothing to gather
            params, grads, states = self._gather(group)
            if not params:
                continue
            # fused=None (the default) means "the fastest exact path": the C kernel for CPU
            # tensors where it builds, else the reference path. state_dtype (bfloat16 state) is
            # implemented by the fused module's paths.
            fused = group.get("fused")
            if fused is None:
                fused = _fused.kernel_suits(params, self, group)
            if fused or group.get("state_dtype") is not None:
                _fused.fused_update(self, group, params, grads, states, grad_scale, fused,
                                    plan=True)
            else:
                if grad_scale != 1.0:
                    torch._foreach_mul_(grads, grad_scale)
                self._update(group, params, grads, states)
        return loss

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """torch.optim's state_dict plus ``{"adaptim": {"skipped_steps": n}}``, a top-level key
        that torch.optim's ``load_state_dict`` ignores (checkpoints stay loadable into torch)."""
        state_dict = super().state_dict()
        state_dict[EXTRA_STATE_KEY] = {"skipped_steps": int(self.skipped_steps)}
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a checkpoint from adaptim or from torch.optim's optimizer of the same name.

        Unlike torch.optim, the checkpoint is checked first — group count and sizes, every
        hyperparameter, every state key and every state tensor's shape — and on any mismatch a
        ValueError is raised with the optimizer left exactly as it was.
        """
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise ValueError("not an optimizer state_dict: expected a dict with 'state' and "
                             "'param_groups'")
        state_dict = copy.deepcopy(state_dict)
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, list) or len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"checkpoint has {len(saved_groups) if isinstance(saved_groups, list) else '?'} "
                f"parameter groups, this optimizer has {len(self.param_groups)}")
        id_to_param = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict) or len(saved.get("params", ())) != len(group["params"]):
                raise ValueError(f"parameter group {i}: checkpoint has "
                                 f"{len(saved.get('params', ())) if isinstance(saved, dict) else '?'}"
                                 f" parameters, this optimizer has {len(group['params'])}")
            # A checkpoint from torch.optim lacks adaptim's own keys: fill them with the values
            # that reproduce torch.optim; keys that do not change the math come from this group.
            for key, value in group.items():
                if key != "params" and key not in saved:
                    saved[key] = self._torch_group_defaults.get(key, value)
            try:
                self._validate_common(saved)
                self._validate_group(saved)
            except (ValueError, TypeError) as err:
                raise ValueError(f"parameter group {i} of the checkpoint is invalid: {err}") from err
            for pid, p in zip(saved["params"], group["params"]):
                id_to_param[pid] = (p, saved)
        saved_state = state_dict["state"]
        if not isinstance(saved_state, dict):
            raise ValueError("checkpoint 'state' must be a dict")
        for pid, st in saved_state.items():
            if pid not in id_to_param:
                raise ValueError(f"checkpoint has state for parameter {pid!r}, which is in no group")
            p, saved_group = id_to_param[pid]
            self._check_param_state(pid, p, st, saved_group)
        skipped = self._saved_skipped_steps(state_dict)
        super().load_state_dict(state_dict)
        self.skipped_steps = skipped
        # torch casts floating state to the parameter's dtype; restore a group's state_dtype
        for group in self.param_groups:
            _fused.cast_state(self, group)

    @staticmethod
    def _saved_skipped_steps(state_dict: dict) -> int:
        # A torch.optim checkpoint has no such key: torch never skips a step.
        extra = state_dict.get(EXTRA_STATE_KEY, {})
        skipped = extra.get("skipped_steps", 0) if isinstance(extra, dict) else None
        if isinstance(skipped, bool) or not isinstance(skipped, int) or skipped < 0:
            raise ValueError(f"checkpoint {EXTRA_STATE_KEY!r} entry must be a dict with an "
                             f"integer 'skipped_steps' >= 0, got {extra!r}")
        return skipped

    def _check_param_state(self, pid, p: Tensor, st: dict, group: dict) -> None:
        if not isinstance(st, dict):
            raise ValueError(f"state of parameter {pid!r} must be a dict")
        if not st:
            return
        allowed = set(self.state_tensor_keys) | {"step"}
        unknown = set(st) - allowed
        if unknown:
            raise ValueError(f"state of parameter {pid!r} has keys {sorted(unknown)} that "
                             f"{type(self).__name__} does not use (expected {sorted(allowed)})")
        missing = self._required_state(group) - set(st)
        if missing:
            raise ValueError(f"state of parameter {pid!r} lacks {sorted(missing)} needed with "
                             "this group's options")
        required = self._required_state(group)
        for key, value in st.items():
            if key == "step":
                if not ((isinstance(value, (int, float)) and not isinstance(value, bool)) or
                        (isinstance(value, Tensor) and value.numel() == 1
                         and not value.is_complex())):
                    raise ValueError(f"state of parameter {pid!r}: 'step' must be a number")
                count = float(value.item() if isinstance(value, Tensor) else value)
                if not (math.isfinite(count) and count >= 0 and count == int(count)):
                    raise ValueError(f"state of parameter {pid!r}: 'step' must be a whole "
                                     f"number >= 0, got {count!r}")
            elif value is None:
                if key in required:
                    raise ValueError(f"state of parameter {pid!r}: {key!r} is None but this "
                                     "group's options need it")
            else:
                if not isinstance(value, Tensor):
                    raise ValueError(f"state of parameter {pid!r}: {key!r} must be a tensor")
                if value.shape != p.shape:
                    raise ValueError(
                        f"state of parameter {pid!r}: {key!r} has shape {tuple(value.shape)}, "
                        f"the parameter has shape {tuple(p.shape)}")
                self._check_state_values(pid, p, key, value)

    @staticmethod
    def _check_state_values(pid, p: Tensor, key: str, value: Tensor) -> None:
        """A state tensor's dtype kind must match the parameter's (torch.optim would cast an
        integer tensor silently and drop a complex one's imaginary part); it must hold no NaN,
        and running sums/averages of squares must be >= 0, or the next step is garbage."""
        if not (value.is_floating_point() or value.is_complex()):
            raise ValueError(f"state of parameter {pid!r}: {key!r} has dtype {value.dtype}; "
                             "optimizer state is floating point")
        if value.is_complex() != p.is_complex():
            raise ValueError(f"state of parameter {pid!r}: {key!r} is "
                             f"{'complex' if value.is_complex() else 'real'} ({value.dtype}) "
                             f"but the parameter is {p.dtype}")
        local = value.to_local() if hasattr(value, "to_local") else value  # DTensor shard
        local = real_view(local)
        if key in NONNEGATIVE_STATE:
            if not bool((local >= 0).all()):
                raise ValueError(f"state of parameter {pid!r}: {key!r} (a sum or average of "
                                 "squares) has negative or NaN entries")
        elif bool(local.isnan().any()):
            raise ValueError(f"state of parameter {pid!r}: {key!r} has NaN entries")

    def __getstate__(self) -> dict:
        # torch.optim pickles only defaults/state/param_groups; keep the skip counter too.
        return {**super().__getstate__(), "skipped_steps": self.skipped_steps}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        _fused.forget_plans(self)  # load_state_dict replaces groups and state through here
        self.__dict__.setdefault("skipped_steps", 0)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, self._torch_group_defaults.get(key, value))

