"""The shared optimizer shell: validation, parameter groups, lazy state, complex views and
checked checkpoint loading. Everything about an algorithm (its state, hyperparameters and rule)
comes from its spec in :mod:`adaptim.algorithms`; a subclass names its spec and its signature."""

from __future__ import annotations

import copy
import math
import operator
import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import _default_to_fused_or_foreach

from adaptim import _flat, _fused, _guard, conventions
from adaptim._fused import _ops
from adaptim import _validation as V
from adaptim._tensors import real_view, scalar_dtype
from adaptim.algorithms import Algorithm

__all__ = ["AdaptimOptimizer", "common_defaults"]

NONFINITE_POLICIES = ("propagate", "skip", "raise")
_IS_SPARSE = operator.attrgetter("is_sparse")
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
# The same counter, also written into every saved parameter group: torch.distributed.checkpoint
# (get_/set_optimizer_state_dict) keeps only "state" and "param_groups" of a state_dict.
GROUP_SKIPPED_KEY = "adaptim_skipped_steps"
# Execution options: choices of *how* a step runs, not *what* it computes. The optimizer's own
# value (constructor or add_param_group) always wins over a loaded checkpoint's, so loading a
# torch.optim checkpoint (fused=None, foreach=None) never changes the path the user chose.
EXECUTION_OPTIONS = ("fused", "foreach", "differentiable", "capturable", "flat")
# Devices some adaptim kernel serves for fused=True (C on CPU, Triton on CUDA).
FUSED_DEVICES = ("cpu", "cuda")


def _check_fused_params(params) -> None:
    """torch.optim's refusal of fused=True for parameters no fused kernel takes, with its
    wording; adaptim checks when the group is added (torch.optim: at the first step). Complex
    parameters pass: they take the kernel as their real view, or the reference path."""
    for p in params:
        if not (p.device.type in FUSED_DEVICES and (p.is_floating_point() or p.is_complex())):
            raise RuntimeError(
                "`fused=True` requires all the params to be floating point Tensors of "
                f"supported devices: {list(FUSED_DEVICES)} but {p.dtype} and {p.device.type}")


_sparse_fused_warned = False


def _warn_sparse_fused(name: str) -> None:
    global _sparse_fused_warned
    if not _sparse_fused_warned:
        _sparse_fused_warned = True
        warnings.warn(f"adaptim.{name}(fused=True): no fused kernel takes sparse gradients; "
                      "groups with sparse gradients take the reference path (torch.optim's "
                      "semantics)", RuntimeWarning, stacklevel=4)


def common_defaults(state_dtype, max_grad_norm, on_nonfinite, flat=False) -> dict:
    """The options every adaptim optimizer has beyond torch's: state precision (fused steps),
    clipping inside step(), the non-finite gradient policy and the flat layout."""
    return dict(state_dtype=state_dtype, max_grad_norm=max_grad_norm, on_nonfinite=on_nonfinite,
                flat=flat)


class AdaptimOptimizer(torch.optim.Optimizer):
    """Base class of every adaptim optimizer (a :class:`torch.optim.Optimizer`).

    A subclass sets ``algorithm``, its spec (:class:`adaptim.algorithms.Algorithm`: state,
    validation, reference rule, kernel fields), and a constructor with torch's signature plus
    adaptim's options (documented in each class, see :mod:`adaptim.optimizers._docs`).

    Execution options (``fused``, ``foreach``, ``differentiable``, ``capturable``, ``flat``) say
    how a step runs; ``load_state_dict`` keeps this optimizer's values for them.
    """

    algorithm: Algorithm

    def __init__(self, params, defaults: dict) -> None:
        self._validate_common(defaults)
        self.algorithm.validate(defaults)
        super().__init__(params, defaults)
        # Steps that on_nonfinite="skip" refused; saved in state_dict under EXTRA_STATE_KEY.
        self.skipped_steps = 0
        _ops.register(self)

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
        for flag in ("differentiable", "capturable", "flat"):
            if flag in group:
                V.check_bool(flag, group[flag])
        if group.get("capturable"):
            # Steps read the step count and bias corrections on the host, which a CUDA graph
            # cannot capture; torch.optim's CPU steps refuse capturable=True too.
            name = type(self).__name__
            raise ValueError(f"capturable=True is not supported by adaptim.{name} (on any "
                             f"device); use torch.optim.{name}(..., capturable=True) for "
                             "CUDA-graph capture")
        if group.get("fused"):  # torch.optim's errors, same type and wording
            if group.get("differentiable"):
                raise RuntimeError("`fused` does not support `differentiable`")
            if group.get("foreach"):
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        if group.get("differentiable") and group.get("state_dtype") is not None:
            raise ValueError("differentiable=True runs the reference path, which keeps state in "
                             "the parameter's dtype; state_dtype must be None")
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

    def add_param_group(self, param_group: dict) -> None:
        # Validate the merged group before torch stores it, so a bad group leaves nothing behind.
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        for key, why in CONSTRUCTOR_ONLY.items():
            if key in param_group and param_group[key] != self.defaults.get(key):
                raise ValueError(f"{key} cannot differ between parameter groups: {why}")
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self._validate_common(merged)
        self.algorithm.validate(merged)
        super().add_param_group(param_group)
        if merged.get("fused"):
            try:
                _check_fused_params(self.param_groups[-1]["params"])
            except RuntimeError:
                self.param_groups.pop()
                raise
        if merged.get("flat"):
            try:
                _flat.check_group(self, self.param_groups[-1])
            except (ValueError, TypeError):
                self.param_groups.pop()
                raise
        if self.algorithm.eager_state:
            # torch.optim.Adagrad creates its state eagerly; so do we, so checkpoints match.
            group = self.param_groups[-1]
            for p in group["params"]:
                if not self.state[p]:
                    self._make_state(p, self.state[p], group)
        if merged.get("flat"):
            _flat.lay_out(self, self.param_groups[-1])

    # ---------------------------------------------------------------- state
    def _make_state(self, param: Tensor, state: dict, group: dict) -> None:
        """The spec's ``init_state``, stored in the group's ``state_dtype`` from birth (so no
        step has to look for state in another dtype)."""
        self.algorithm.init_state(param, state, group)
        if group.get("state_dtype") is not None:
            _fused.cast_state(self, group, [state])

    def _gather(self, group: dict):
        """Parameters with gradients, their gradients and states (lazily initialised); complex
        tensors are viewed as real, as torch.optim does, so the update rules see real tensors."""
        params, grads, states = [], [], []
        # Loop invariants hoisted: this loop runs once per tensor per step (5,000-tensor models).
        stateless = self.algorithm.stateless(group)
        differentiable = group.get("differentiable", False)
        state_of = self.state
        view = real_view if self.algorithm.views_complex_as_real else None
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse and self.algorithm.sparse_refusal is not None:
                raise RuntimeError(self.algorithm.sparse_refusal)
            if not stateless or p in state_of:
                state = state_of[p]
                if not state:
                    self._make_state(p, state, group)
                if differentiable and "step" in state and state["step"].requires_grad:
                    raise RuntimeError(
                        "`requires_grad` is not supported for `step` in differentiable mode")
            else:
                state = {}  # nothing to keep: no empty entry in state_dict, as torch.optim
            if view is not None and p.is_complex():
                p, grad = view(p), view(grad)
            params.append(p)
            grads.append(grad)
            states.append(state)
        return params, grads, states

    @staticmethod
    def _foreach_chosen(group: dict, params: list[Tensor], grads: list[Tensor]) -> bool:
        """Whether the rule runs multi-tensor (``*_foreach``) for these tensors: foreach=True asks
        for it, foreach=False or fused=False asks for the per-tensor rule; otherwise it is
        torch.optim's own default for the tensors' device (multi-tensor on CUDA, per-tensor on
        CPU). Sparse gradients and differentiable steps take the per-tensor rule."""
        foreach = group.get("foreach")
        if foreach is None:  # torch's helper says False for CPU tensors: skip its cost there
            foreach = group.get("fused") is not False and not params[0].is_cpu \
                and _default_to_fused_or_foreach(params, differentiable=False)[1]
        return bool(foreach) and not group.get("differentiable") \
            and not any(map(_IS_SPARSE, grads))

    def step(self, closure: Callable[[], float] | None = None):
        """Perform one optimization step. ``closure`` re-evaluates the model and returns the loss.

        Runs under ``torch.no_grad()``, or with autograd recording when the optimizer was built
        with ``differentiable=True`` (as torch.optim: the update then is part of the graph)."""
        with torch.set_grad_enabled(bool(self.defaults.get("differentiable"))):
            return self._step(closure)

    def _step(self, closure):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if torch.compiler.is_compiling():
            _ops.compiled_step(self)  # the update below as one operator, opaque to the compiler
        else:
            self._update_all()
        return loss

    def _update_all(self) -> None:
        """The update of every group with its current gradients (step() after the closure)."""
        self._opt_called = True  # what an LR scheduler checks (see the end of this class)
        # Clipping and the non-finite policy look at the gradients before any state is made, so
        # a skipped step leaves parameters and state exactly as they were.
        grad_scale = _guard.before_update(self)
        if grad_scale is None:
            return
        flat = _flat.prepare(self)  # flat groups checked before any group steps
        for group in self.param_groups:
            if flat is not None and group.get("flat"):
                _flat.step(self, group, grad_scale, flat)  # views of one buffer: adaptim._flat
                continue
            if _fused.planned_step(self, group, grad_scale):
                continue  # the group's cached plan still holds: nothing to gather
            params, grads, states = self._gather(group)
            if params:
                self._run_group(group, params, grads, states, grad_scale,
                                plan=_fused.planning)

    def _run_group(self, group: dict, params: list[Tensor], grads: list[Tensor],
                   states: list[dict], grad_scale: float, plan: bool) -> None:
        """One group's update on gathered tensors, by the path its options choose; ``plan``:
        let the fused or multi-tensor path cache its plan (only for the group's own tensors)."""
        # fused=None (the default) means "the fastest exact path": the C kernel for CPU
        # tensors where it builds, else the reference path. state_dtype (bfloat16 state) is
        # implemented by the fused module's paths.
        fused = group.get("fused")
        if any(map(_IS_SPARSE, grads)):
            # Sparse gradients (SGD, Adagrad) take the reference path: no kernel reads them.
            if fused:
                _warn_sparse_fused(type(self).__name__)
            fused = False
        elif group.get("differentiable"):
            fused = False
        elif fused is None:
            fused = not group.get("foreach") and _fused.kernel_suits(params, self, group)
        if fused or group.get("state_dtype") is not None:
            _fused.fused_update(self, group, params, grads, states, grad_scale, fused,
                                plan=plan)
        else:
            if grad_scale != 1.0:
                torch._foreach_mul_(grads, grad_scale)
            foreach = self._foreach_chosen(group, params, grads)
            self.algorithm.reference_step(group, params, grads, states, foreach)
            if plan and foreach:  # the multi-tensor step's lists, kept for the next steps
                _fused.plan_reference(self, group, params, grads, states)

    @torch._disable_dynamo  # as torch.optim's zero_grad
    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch.optim's ``zero_grad``. In ``flat`` groups, ``set_to_none=False`` zeroes the
        gradient buffer in one pass and puts each gradient back as its view of the buffer;
        ``set_to_none=True`` sets the gradients to None, as torch.optim does (the next step
        copies the new gradients into the buffer). See :mod:`adaptim._flat`."""
        rest = _flat.zero_grad(self, set_to_none)
        if rest is None:
            super().zero_grad(set_to_none)
        elif rest:
            groups = self.param_groups
            self.param_groups = rest  # torch's zero_grad for the groups that are not flat
            try:
                super().zero_grad(set_to_none)
            finally:
                self.param_groups = groups

    # An LR scheduler wraps ``optimizer.step`` (in a function torch.compile does not trace: a
    # graph break in every compiled step) only to record that step ran, in ``_opt_called``, unless
    # step carries this mark; step records it itself.
    step._wrapped_by_lr_sched = True

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """torch.optim's state_dict plus ``{"adaptim": {"skipped_steps": n}}``, a top-level key
        that torch.optim's ``load_state_dict`` ignores (checkpoints stay loadable into torch).
        Every saved parameter group also carries ``adaptim_skipped_steps: n``, the copy that
        survives torch.distributed.checkpoint, which keeps only "state" and "param_groups"."""
        state_dict = super().state_dict()
        _flat.plain_state(state_dict)  # flat groups' state: plain dicts, as torch.optim's
        skipped = int(self.skipped_steps)
        state_dict[EXTRA_STATE_KEY] = {"skipped_steps": skipped}
        for group in state_dict["param_groups"]:
            group[GROUP_SKIPPED_KEY] = skipped
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a checkpoint from adaptim or from torch.optim's optimizer of the same name.

        Unlike torch.optim, the checkpoint is checked first — group count and sizes, every
        hyperparameter, every state key and every state tensor's shape — and on any mismatch a
        ValueError is raised with the optimizer left exactly as it was.

        Execution options (``fused``, ``foreach``, ``differentiable``, ``capturable``, ``flat``)
        keep this optimizer's values: a checkpoint says what to compute, the constructor how to
        run it.
        A numeric ``step`` (older torch checkpoints) becomes a tensor, as torch.optim does.
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
        skipped = self._saved_skipped_steps(state_dict)
        id_to_param = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict) or len(saved.get("params", ())) != len(group["params"]):
                count = len(saved.get("params", ())) if isinstance(saved, dict) else "?"
                raise ValueError(f"parameter group {i}: checkpoint has {count} parameters, "
                                 f"this optimizer has {len(group['params'])}")
            # A checkpoint from torch.optim lacks adaptim's own keys: fill them with the values
            # that reproduce torch.optim; keys that do not change the math come from this group.
            for key, value in group.items():
                if key != "params" and key not in saved:
                    saved[key] = self.algorithm.torch_group_defaults.get(key, value)
            for key in EXECUTION_OPTIONS:
                if key in group:
                    saved[key] = group[key]
            try:
                self._validate_common(saved)
                self.algorithm.validate(saved)
            except (ValueError, TypeError) as err:
                raise ValueError(f"parameter group {i} of the checkpoint is invalid: "
                                 f"{err}") from err
            for pid, p in zip(saved["params"], group["params"]):
                id_to_param[pid] = (p, saved)
        saved_state = state_dict["state"]
        if not isinstance(saved_state, dict):
            raise ValueError("checkpoint 'state' must be a dict")
        for pid, st in saved_state.items():
            if pid not in id_to_param:
                raise ValueError(f"checkpoint has state for parameter {pid!r}, which is in no "
                                 "group")
            p, saved_group = id_to_param[pid]
            self._check_param_state(pid, p, st, saved_group)
        super().load_state_dict(state_dict)
        self.skipped_steps = skipped
        # torch casts floating state to the parameter's dtype; restore a group's state_dtype
        for group in self.param_groups:
            _fused.cast_state(self, group)
        _flat.after_load(self)  # flat groups: the loaded state is copied into their buffers

    @staticmethod
    def _saved_skipped_steps(state_dict: dict) -> int:
        """The checkpoint's skip counter, taken out of its parameter groups (the group copy is
        read when the top-level key is absent, as after torch.distributed.checkpoint). A
        torch.optim checkpoint has neither: torch never skips a step."""
        group_counts = [g.pop(GROUP_SKIPPED_KEY) for g in state_dict["param_groups"]
                        if isinstance(g, dict) and GROUP_SKIPPED_KEY in g]
        extra = state_dict.get(EXTRA_STATE_KEY)
        if extra is None:
            extra = {"skipped_steps": group_counts[0] if group_counts else 0}
        skipped = extra.get("skipped_steps", 0) if isinstance(extra, dict) else None
        if isinstance(skipped, bool) or not isinstance(skipped, int) or skipped < 0:
            raise ValueError(f"checkpoint {EXTRA_STATE_KEY!r} entry must be a dict with an "
                             f"integer 'skipped_steps' >= 0, got {extra!r}")
        if any(count != skipped or type(count) is not int for count in group_counts):
            raise ValueError(f"checkpoint parameter groups' {GROUP_SKIPPED_KEY!r} must all "
                             f"equal the skipped_steps count {skipped}, got {group_counts!r}")
        return skipped

    def _check_param_state(self, pid, p: Tensor, st: dict, group: dict) -> None:
        if not isinstance(st, dict):
            raise ValueError(f"state of parameter {pid!r} must be a dict")
        if not st:
            return
        allowed = set(self.algorithm.state_keys) | {"step"}
        unknown = set(st) - allowed
        if unknown:
            raise ValueError(f"state of parameter {pid!r} has keys {sorted(unknown)} that "
                             f"{type(self).__name__} does not use (expected {sorted(allowed)})")
        required = self.algorithm.required_state(group)
        missing = required - set(st)
        if missing:
            raise ValueError(f"state of parameter {pid!r} lacks {sorted(missing)} needed with "
                             "this group's options")
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

    def _check_state_values(self, pid, p: Tensor, key: str, value: Tensor) -> None:
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
        if key in self.algorithm.nonnegative:
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
        _ops.register(self)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, self.algorithm.torch_group_defaults.get(key, value))
        # torch.optim's load_state_dict ends here too. A numeric step (older torch checkpoints)
        # becomes a tensor, as each torch.optim class's __setstate__ does, so every path can
        # count in place.
        for param_state in self.state.values():
            step = param_state.get("step") if isinstance(param_state, dict) else None
            if step is not None and not isinstance(step, Tensor):
                param_state["step"] = torch.tensor(float(step), dtype=scalar_dtype())

