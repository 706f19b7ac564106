"""Fused optimizer steps: every rule of :mod:`adaptim.functional` in one pass over memory.

``fused_update`` is what ``AdaptimOptimizer.step()`` calls for a group with ``fused=True`` (or a
``state_dtype``). It updates a whole parameter group with ONE call into a small C/OpenMP
library (``kernels.c``, compiled once per machine and cached, see :mod:`._ckernel`): each
element of parameter, gradient and state is read once and written once, the gradient scale
(clipping) and every option are applied on the fly, and hyperparameters are passed as numbers
so nothing recompiles when lr changes. The C code mirrors the functional rule operation by
operation; tests/test_fused.py checks it against the unfused path for every option set.
Nothing here names an algorithm: the optimizer's spec (``optimizer.algorithm``, see
:mod:`adaptim.algorithms`) gives the kernel's name, its state operands (``state_keys``) and its
named hyperparameter fields (``hp``).

With ``fused=True``, CUDA groups take the same rules as Triton kernels (:mod:`._triton`), one
launch per group and step, where triton imports (``fused=None`` on CUDA is the multi-tensor
reference rule, decided in ``AdaptimOptimizer``). Tensors no kernel takes (CUDA tensors without
triton, non-contiguous tensors, a parameter and state dtype pair with no kernel mode on CPU:
see ``_MODES``) go through the reference path: the
algorithm spec's
``reference_step``, on parameter-precision copies of the state when the state is stored in
another dtype. Where no C compiler works, every CPU tensor takes that path, after one warning.

A group the kernel takes whole is planned once: the call's pointers, sizes and step counters
sit in one buffer that later steps re-check and reuse (:func:`planned_step`, before the group
is gathered); a change that could leave a pointer stale drops the plan and the group is
gathered and planned again. The same holds for a group the Triton kernels take whole (its
launch table, :mod:`._triton`) and for a group whose step is the multi-tensor reference rule
(its tensor lists, :func:`plan_reference`). The check is one call into C++
(``plan_check.cpp``, about 0.1 µs per tensor, see :mod:`._plan_check`), or, until that is
built or where it cannot be, bulk checks in Python (about 0.5 µs per tensor).

``state_dtype=torch.bfloat16`` stores the state in bfloat16; each step loads it to float32,
runs the float32 rule and rounds the new state once (round to nearest even).

bfloat16 and float16 parameters (and their gradients, of the same dtype) take the CPU kernel
too, with float32, bfloat16 or float16 state (the parameter's dtype by default, as torch.optim
keeps it; ``state_dtype=torch.float32`` for full-precision state): parameter, gradient and state
are widened to float32, the float32 rule runs on them, and the new parameter and state are
rounded once (round to nearest even, bit-identical to torch's ``.to(dtype)``). That is exactly
the float32 kernel run on float32 copies, rounded after the step; it is not torch.optim's
for-loop, which computes in the parameter's dtype and rounds after every operation. The
reference path (``fused=False``) gives those bits.
"""

from __future__ import annotations

import ctypes
import operator
import os
import warnings
import weakref
from itertools import compress, repeat

import numpy as np
import torch
from torch import Tensor

from adaptim._fused import _ckernel, _debug, _plan_check
from adaptim._tensors import DTYPE as _DTYPE
from adaptim._tensors import GRAD as _GRAD
from adaptim._tensors import IS_CPU as _IS_CPU
from adaptim._tensors import LAYOUT as _LAYOUT
from adaptim._tensors import group_cache, keep_for_group, real_view, scalar_dtype

__all__ = ["fused_update", "planned_step", "plan_reference", "forget_plans", "kernel_available",
           "kernel_suits", "cast_state"]

_MODES = {  # (param dtype, state dtype) -> kernel mode (kernels.c, _ckernel.MODE_DTYPES)
    (getattr(torch, param), getattr(torch, state)): mode
    for mode, (param, state) in _ckernel.MODE_DTYPES.items()
}
_warned = False
# CUDA groups take the Triton kernels (_triton.py). Tests set this to run them on CPU groups
# under Triton's interpreter (also: ADAPTIM_TRITON_INTERPRET=1).
_TRITON_ON_CPU = os.environ.get("ADAPTIM_TRITON_INTERPRET") == "1"
_triton_warned = False
# Whether steps cache their group's plan (see planned_step). Benchmarks turn it off to time the
# step every group takes where no plan holds.
planning = True




def kernel_available(mode: int = 1) -> bool:
    """Whether the C kernel library of ``mode`` (default float32) is (or can be) built and
    loaded on this machine."""
    try:
        _ckernel.load(mode)
        return True
    except _ckernel.KernelUnavailable:
        return False


# fused=None leaves a group to the reference path where that is cheaper than a kernel call:
# plain SGD without weight decay is one torch op per tensor, and up to this many such ops cost
# less than the call's fixed cost (checks, hyperparameters, ctypes); every other rule makes
# several ops per tensor, so the kernel wins from one tensor on.
_SGD_REFERENCE_TENSORS = 2


def kernel_suits(params: list[Tensor], optimizer=None, group: dict | None = None) -> bool:
    """What ``fused=None`` (the default) resolves to for one group: True when its parameters
    are CPU float64, float32, bfloat16 or float16 tensors whose dtype, with the group's
    ``state_dtype`` (None: the parameter's), has a kernel mode (``_MODES``), and that mode's C
    library builds and loads on this machine (the first time: a compile of about 2 s, cached),
    else False, silently: the reference path is exact too, only slower. bfloat16/float16
    parameters on the kernel are computed in float32 and rounded once per step (torch.optim's
    for-loop, the reference path, rounds after every operation: ``fused=False`` gives its
    bits). CUDA groups take the multi-tensor reference rule, and a plain-SGD group of one or two
    tensors (given ``optimizer`` and ``group``) the per-tensor one, which is faster there than
    any kernel call."""
    if group is not None and len(params) <= _SGD_REFERENCE_TENSORS \
            and not group.get("weight_decay") and optimizer.algorithm.stateless(group):
        return False
    p = params[0]
    if not p.is_cpu or _is_dtensor(p):
        return False
    state_dtype = group.get("state_dtype") if group is not None else None
    mode = _MODES.get((p.dtype, state_dtype or p.dtype))
    return mode is not None and kernel_available(mode)


def _kernel_or_warn(mode: int):
    global _warned
    try:
        return _ckernel.load(mode)
    except _ckernel.KernelUnavailable as err:
        if not _warned:
            _warned = True
            advice = (" Set ADAPTIM_CC to a working C compiler with OpenMP (e.g. gcc) to enable "
                      "them." if err.compiler_problem else "")
            warnings.warn(
                "adaptim: the fused C kernels are unavailable, so fused=True falls back to the "
                f"unfused update (same results, slower). Reason: {err}.{advice}",
                RuntimeWarning, stacklevel=4)
        return None


def _triton_or_warn():
    """The Triton path (module), or None after one warning where triton does not import."""
    global _triton_warned
    try:
        from adaptim._fused import _triton
        return _triton
    except ImportError as err:
        if not _triton_warned:
            _triton_warned = True
            warnings.warn(
                "adaptim: fused=True on CUDA needs Triton (pip install triton), so it falls back "
                f"to the unfused update (same results, slower). Reason: {err}",
                RuntimeWarning, stacklevel=4)
        return None


def cast_state(optimizer, group: dict, states: list[dict] | None = None) -> None:
    """Store the floating state tensors of ``group`` in ``group["state_dtype"]`` (no-op when it
    is None). Complex parameters keep complex state (there is no complex bfloat16)."""
    dtype = group.get("state_dtype")
    if dtype is None:
        return
    if states is None:
        states = [optimizer.state[p] for p in group["params"] if p in optimizer.state]
    for st in states:
        for key in optimizer.algorithm.state_keys:
            v = st.get(key)
            if (isinstance(v, Tensor) and v.dtype != dtype and v.is_floating_point()):
                st[key] = v.to(dtype)


# ---------------------------------------------------------------- reference path
def _reference_update(spec, group, params, grads, states, grad_scale) -> None:
    """The spec's reference rule with the gradient scaled out of place and the
    state computed in the parameter's precision, then stored back in its own dtype."""
    if not params:
        return
    if grad_scale != 1.0:
        grads = torch._foreach_mul(grads, grad_scale)
    work = []
    for p, st in zip(params, states):
        if any(isinstance(v, Tensor) and k != "step" and v.dtype != p.dtype and not v.is_complex()
               for k, v in st.items()):
            work.append({k: (v.to(p.dtype) if isinstance(v, Tensor) and k != "step" else v)
                         for k, v in st.items()})
        else:
            work.append(st)
    spec.reference_step(group, params, grads, work)
    for st, tmp in zip(states, work):
        if tmp is st:
            continue
        for k, v in tmp.items():
            if k == "step" or not isinstance(v, Tensor):
                continue
            if k in st:
                st[k].copy_(v)
            else:  # made by this step (SGD's momentum buffer)
                st[k] = v.to(group.get("state_dtype") or v.dtype)


# ---------------------------------------------------------------- kernel path
_STEP_DTYPES = {torch.float32: 1, torch.float64: 2}


_COMPLEX = (torch.complex64, torch.complex128)


def _operands(p: Tensor, g: Tensor, st: dict, keys: tuple[str, ...]):
    """Real views of (param, grad, *state) and the kernel mode, or (None, None) if the kernel
    can't take this tensor (device, dtype, layout). Written for speed: it runs per tensor."""
    if not p.is_cpu:
        return None, None
    ops = [p, g]
    for k in keys:
        ops.append(st.get(k))
    first = ops[2]
    if p.is_complex() or (first is not None and first.is_complex()):
        ops = [real_view(t) for t in ops]
        p = ops[0]
    n = p.numel()
    sdtype = None
    for t in ops[2:]:
        if t is not None:
            if sdtype is None:
                sdtype = t.dtype
            elif t.dtype is not sdtype:
                return None, None
            # same element count and both contiguous: element i of one is element i of the other
            if t.numel() != n or not t.is_contiguous():
                return None, None
    mode = _MODES.get((p.dtype, sdtype or p.dtype))
    g = ops[1]
    if mode is None or g.dtype is not p.dtype or g.numel() != n or not p.is_contiguous() \
            or not g.is_contiguous():
        return None, None
    return ops, mode


def fused_update(optimizer, group, params, grads, states, grad_scale: float,
                 fused: bool | None = None, plan: bool = False) -> None:
    """Apply ``optimizer``'s update rule to one group in one fused pass, multiplying gradients by
    ``grad_scale`` on the fly (clipping). ``params``/``grads`` are real views (complex tensors of
    SGD are viewed as real here); ``states`` are initialised state dicts; ``state["step"]`` is
    incremented as on the unfused path. ``fused`` is the group's resolved choice (None: the
    group's own flag); False runs the reference path (bfloat16 state without the kernel). Results
    equal the unfused path's (float64 to ~1e-15, float32 to an ulp or two per step); bfloat16 and
    float16 parameters are computed in float32 and rounded once (see the module docstring).
    ``plan``: cache the group's kernel call for later steps (see :func:`planned_step`) where it
    can be.
    """
    spec = optimizer.algorithm
    if fused is None:
        fused = bool(group.get("fused"))
    if fused and params and not _is_dtensor(params[0]) \
            and (params[0].is_cuda or _TRITON_ON_CPU):
        triton_path = _triton_or_warn()
        if triton_path is not None:
            def fallback(rest):
                _reference_update(spec, group, [params[i] for i in rest],
                                  [grads[i] for i in rest], [states[i] for i in rest], grad_scale)
                cast_state(optimizer, group, [states[i] for i in rest])

            triton_path.update(spec, group, params, grads, states, grad_scale, fallback,
                               interpret_cpu=_TRITON_ON_CPU,
                               plan_for=optimizer if plan else None)
            return
    if not fused or _ckernel.failed():
        _reference_update(spec, group, params, grads, states, grad_scale)
        cast_state(optimizer, group, states)  # state made by this step (SGD's buffer)
        return
    # a state the first step makes from the gradient (SGD's momentum buffer), where used
    made = spec.grad_initialised_state
    if made is not None and made not in spec.required_state(group):
        made = None
    if any(map(_is_dtensor, params)):
        # FSDP2 / DTensor: the kernel works on each rank's local shard (same storage). A state
        # made by this step must be a DTensor: reference path.
        if made is not None and any(st.get(made) is None for st in states):
            _reference_update(spec, group, params, grads, states, grad_scale)
            return
        params, grads = list(map(_local, params)), list(map(_local, grads))
        states = [{k: _local(v) for k, v in st.items()} for st in states]
    nthreads = torch.get_num_threads()
    plan_from = group if plan else None
    whole = _whole_group_plan(params, grads, states, spec.state_keys, spec.counts_steps)
    if whole is not None and not (made is not None
                                  and whole[0][2 + spec.state_keys.index(made)] is None):
        columns, mode, steps, step_dtype = whole
        lib = _kernel_or_warn(mode)
        if lib is not None:
            kernel = getattr(lib, f"adaptim_{spec.name}")
            new_plan = None if plan_from is None else _make_plan(
                optimizer, plan_from, params, grads, states, columns, mode, steps, step_dtype,
                kernel, spec.hp, spec.state_keys)
            if new_plan is not None and new_plan.run(optimizer, group, grad_scale):
                return
            _call_columns(kernel, mode, columns, steps, step_dtype,
                          spec.hp(group, grad_scale, False), nthreads)
            return
    # The general path: tensor by tensor (first SGD step, mixed dtypes or layouts, complex).
    state_dtype = group.get("state_dtype")
    buckets: dict[tuple, list[int]] = {}
    rest: list[int] = []
    operands: list[list[Tensor | None]] = []
    for i, (p, g, st) in enumerate(zip(params, grads, states)):
        init = False
        if made is not None and st.get(made) is None:
            # torch.optim.SGD starts the buffer at the first gradient: the kernel writes v ← g
            st[made] = torch.empty_like(
                p, dtype=state_dtype if state_dtype is not None and not p.is_complex() else None)
            init = True
        ops, mode = _operands(p, g, st, spec.state_keys)
        step_dtype = 0
        if mode is not None and spec.counts_steps:
            step = st["step"]
            if not isinstance(step, Tensor):  # a number from an old checkpoint
                step = st["step"] = torch.tensor(float(step), dtype=scalar_dtype())
            step_dtype = _STEP_DTYPES.get(step.dtype, 0) if step.is_cpu and step.numel() == 1 \
                else 0
            if step_dtype == 0:
                mode = None
            else:
                ops.append(step)
        if mode is None:
            if init:
                del st[made]
            rest.append(i)
            operands.append(None)
            continue
        operands.append(ops)
        buckets.setdefault((mode, init, step_dtype), []).append(i)
    for (mode, init, step_dtype), idx in buckets.items():
        lib = _kernel_or_warn(mode)
        if lib is None:  # no compiler: the reference path, after one warning
            if init:
                for i in idx:
                    del states[i][made]
            rest.extend(idx)
            continue
        # one call for the whole bucket (normally the whole group): the kernel increments each
        # state["step"] and reads it for the bias corrections / lr decay
        _call(getattr(lib, f"adaptim_{spec.name}"), mode, [operands[i] for i in idx],
              2 + len(spec.state_keys), step_dtype, spec.hp(group, grad_scale, init), nthreads)
    if rest:
        _reference_update(spec, group, [params[i] for i in rest], [grads[i] for i in rest],
                          [states[i] for i in rest], grad_scale)
        cast_state(optimizer, group, [states[i] for i in rest])


def _is_dtensor(t) -> bool:
    return hasattr(t, "to_local") and hasattr(t, "placements")


def _local(t):
    """A DTensor's local shard (shares its storage); anything else as it is."""
    return t.to_local() if _is_dtensor(t) else t




def _whole_group_plan(params, grads, states, keys, with_step):
    """The common case in bulk: every tensor of the group contiguous, real, on the CPU, with one
    parameter dtype and one state dtype, each state present for all or none. Checked with
    C-level iteration (map) instead of a Python loop per tensor. Returns (columns, mode, steps,
    step_dtype), a column being None for a state no tensor has; None if any check fails (the
    per-tensor path then decides tensor by tensor)."""
    n = len(params)
    numels = list(map(Tensor.numel, params))
    columns = [params, grads]
    columns.extend(list(map(dict.get, states, repeat(k, n))) for k in keys)
    pdtype = sdtype = None
    for j, col in enumerate(columns):
        nones = sum(map(operator.is_, col, repeat(None, n)))
        if nones:
            if j < 2 or nones != n:
                return None
            columns[j] = None
            continue
        dtypes = set(map(_DTYPE, col))
        if len(dtypes) != 1:
            return None
        dtype = dtypes.pop()
        if j == 0:
            pdtype = dtype
        elif j == 1:
            if dtype is not pdtype:
                return None
        elif sdtype is None:
            sdtype = dtype
        elif dtype is not sdtype:
            return None
        if not all(map(_IS_CPU, col)) or not all(map(Tensor.is_contiguous, col)) \
                or list(map(Tensor.numel, col)) != numels:
            return None
    mode = _MODES.get((pdtype, sdtype or pdtype))
    if mode is None:
        return None
    steps, step_dtype = None, 0
    if with_step:
        steps = list(map(dict.get, states, repeat("step", n)))
        if not all(map(isinstance, steps, repeat(Tensor, n))):
            return None
        dtypes = set(map(_DTYPE, steps))
        step_dtype = _STEP_DTYPES.get(dtypes.pop(), 0) if len(dtypes) == 1 else 0
        if step_dtype == 0 or not all(map(_IS_CPU, steps)) \
                or set(map(Tensor.numel, steps)) != {1}:
            return None
    return columns, mode, steps, step_dtype


def _call(kernel, mode: int, operands: list[list[Tensor | None]], k: int, step_dtype: int,
          hp: list[float], nthreads: int) -> None:
    """One kernel call for per-tensor operand lists: k operands each (+ its step tensor)."""
    columns = [[ops[j] for ops in operands] for j in range(k)]
    columns = [None if all(t is None for t in col) else col for col in columns]
    steps = [ops[k] for ops in operands] if step_dtype else None
    _call_columns(kernel, mode, columns, steps, step_dtype, hp, nthreads)


def _call_buffer(columns: list, steps, step_dtype: int, n_hp: int) -> np.ndarray:
    """Pointers, sizes, step pointers and room for ``n_hp`` hyperparameters in one 8-byte-word
    buffer (``columns[j]`` lists the j-th operand of every tensor, None: unused), so a call
    costs one allocation and one address lookup however many operands it has."""
    n = len(columns[0])
    k = len(columns)
    n_steps = n if step_dtype else 0
    buf = np.zeros(k * n + n + n_steps + n_hp, dtype=np.uint64)
    for j, col in enumerate(columns):
        if col is not None:
            buf[j * n:(j + 1) * n] = np.fromiter(map(Tensor.data_ptr, col), np.uint64, n)
    buf[k * n:(k + 1) * n] = np.fromiter(map(Tensor.numel, columns[0]), np.uint64, n)
    if step_dtype:
        buf[(k + 1) * n:(k + 2) * n] = np.fromiter(map(Tensor.data_ptr, steps), np.uint64, n)
    return buf


def _kernel_call(kernel, mode: int, buf: np.ndarray, n: int, k: int, step_dtype: int,
                 nthreads: int) -> None:
    """One kernel call on a buffer laid out by ``_call_buffer``, hyperparameters filled in."""
    _debug.calls += 1
    base = buf.__array_interface__["data"][0]
    word = buf.itemsize
    n_steps = n if step_dtype else 0
    rc = kernel(mode, n, base, base + k * n * word, base + (k + 1) * n * word if step_dtype
                else None, step_dtype, base + ((k + 1) * n + n_steps) * word, nthreads)
    if rc != 0:
        raise RuntimeError(f"adaptim fused kernel failed (code {rc})")


def _call_columns(kernel, mode: int, columns: list, steps, step_dtype: int, hp: list[float],
                  nthreads: int) -> None:
    """One kernel call: ``columns[j]`` lists the j-th operand of every tensor (None: unused)."""
    n, k = len(columns[0]), len(columns)
    buf = _call_buffer(columns, steps, step_dtype, len(hp))
    buf[(k + 1) * n + (n if step_dtype else 0):].view(np.float64)[:] = hp
    _kernel_call(kernel, mode, buf, n, k, step_dtype, nthreads)


# ---------------------------------------------------------------- cached plans
# A group's step is built once and re-checked at every step: the C kernel's call (pointers,
# sizes, step pointers: one buffer, ``_Plan``), the Triton launch's table (``_triton``'s
# ``_LaunchPlan``) or the multi-tensor reference step's tensor lists (``_ReferencePlan``). All
# three share one check (``_PlanCheck``). It compares the group's options (``fused``,
# ``foreach``, ``differentiable``, ``state_dtype``, the state they need: momentum turned on),
# the optimizer's state dict, the group's parameter list element by element (a parameter added,
# removed or reordered), and:
#
# The C++ check (plan_check.cpp, one call, about 0.1 µs per tensor) reads every parameter and
# gradient afresh: the parameter's address, dtype, size, layout and device (``p.data = ...``,
# ``module.to(dtype)``, ``set_``, a view laid out anew at the same address), whether each has
# a gradient, and each gradient's address, dtype, size, layout and device, taken as it is
# (``zero_grad()`` then backward costs nothing more); optimizer.state entry by entry (or each
# parameter looked up, where the group holds the lesser part of it), and each state tensor's
# identity (``load_state_dict``, a state dict or tensor replaced, cast to ``state_dtype``). The
# plan holds the state tensors and their storages, so their memory lives while it does.
#
# The Python check (bulk, with C-level iteration: map and list compares, about 0.5 µs per
# tensor) compares each parameter's address, each gradient's identity and address (new
# gradients are checked in bulk and adopted), each parameter's state dict (or every entry of
# optimizer.state) and each state tensor's identity. This plan holds the storages of
# parameters and state tensors, so none of them can be freed and its address reused by another
# tensor while the plan lives: an address that still matches is the same memory. Gradients are
# held by weak references only (set_to_none frees them); the storages of the gradients it saw
# are held until the first of those gradients is freed, so the same holds for them while their
# identity check passes.
#
# Neither sees a state tensor whose data is swapped in place (``state[p]["exp_avg"].data = x``,
# ``set_``): the kernel then updates the memory the plan holds, not the new one.
_PTR = Tensor.data_ptr
_STORAGE = Tensor.untyped_storage
_DEVICE = operator.attrgetter("device")
_NO_GRAD = type(None)  # called, returns None: the weak reference of a missing gradient
_CALL = getattr(operator, "call", None) or (lambda f: f())  # operator.call: Python 3.11+
_PLAIN = (Tensor, torch.nn.Parameter)  # the parameter types the C++ check reads


class _PlanCheck:
    """What a cached plan re-checks at each step (see the comment above): the group's own
    parameters with a gradient (``params``, all of one dtype and device, contiguous), their
    state dicts' tensors under ``keys``, and ``buf``, 8-byte words whose first ``n`` are the
    parameters' addresses, the next ``n`` the gradients' (rewritten by each check that holds)
    and the ``n`` at word ``k * n`` the element counts. :func:`_init_check` fills it in."""

    __slots__ = ("group", "all_params", "params", "mask", "none_pattern", "grad_refs",
                 "param_ptrs", "grad_ptrs", "grad_hold", "state", "keys", "state_cols",
                 "required", "fused", "foreach", "differentiable", "state_dtype", "buf", "n",
                 "numels", "dtype", "device", "keep", "state_snapshot", "native",
                 "native_head", "native_tail")

    def holds(self, optimizer, group):
        """Whether the plan still fits the group as it is now (false if not). When it holds,
        the gradients' addresses are in ``buf[n:2n]``, and the Python check returns the
        gradients (a list: it read them), the C++ check True."""
        gp = group["params"]
        if len(gp) != len(self.all_params) \
                or group.get("fused") is not self.fused \
                or group.get("foreach") is not self.foreach \
                or group.get("differentiable") is not self.differentiable \
                or group.get("state_dtype") is not self.state_dtype \
                or optimizer.state is not self.state \
                or optimizer.algorithm.required_state(group) != self.required:
            return False
        native = self.native
        if native is not None:
            return not native(*self.native_head, gp, *self.native_tail)
        # (once the C++ check is loaded, a plan checked in Python is planned again, to use it)
        return _plan_check.get(0) is None and self._python_check(optimizer, gp)

    def _python_check(self, optimizer, gp) -> list | None:
        """The plan's checks in Python, where the C++ check is not loaded: the planned
        parameters' gradients if it holds, else None."""
        if not all(map(operator.is_, gp, self.all_params)):
            return None
        grads_all = list(map(_GRAD, gp))
        grads = grads_all if self.mask is None else list(compress(grads_all, self.mask))
        if all(map(operator.is_, grads_all, map(_CALL, self.grad_refs))):
            # a dead reference (the gradient was freed) reads None like a missing gradient, but
            # then the holder has let its storages go
            if self.grad_hold.storages is None or list(map(_PTR, grads)) != self.grad_ptrs:
                return None
        elif not self._adopt_grads(grads_all, grads):
            return None
        if list(map(_PTR, self.params)) != self.param_ptrs:
            return None
        if self.keys:
            n = self.n
            state = optimizer.state
            if self.state_snapshot is None:
                states = list(map(state.get, self.params))
            else:
                # every entry of optimizer.state as it was (iterating hashes nothing)
                snap_keys, snap_values, states = self.state_snapshot
                if len(state) != len(snap_keys) or not all(map(operator.is_, state, snap_keys)) \
                        or not all(map(operator.is_, state.values(), snap_values)):
                    return None
            for key, col in zip(self.keys, self.state_cols):
                if not all(map(operator.is_, map(dict.get, states, repeat(key, n)), col)):
                    return None
        return grads

    def _adopt_grads(self, grads_all, grads) -> bool:
        """New gradient tensors (backward after ``zero_grad()``): checked in bulk like the
        plan's own, then their addresses written into the plan."""
        if list(map(operator.is_, grads_all, repeat(None))) != self.none_pattern:
            return False
        if set(map(_LAYOUT, grads)) != {torch.strided} \
                or set(map(_DTYPE, grads)) != {self.dtype} \
                or set(map(_DEVICE, grads)) != {self.device} \
                or not all(map(Tensor.is_contiguous, grads)) \
                or list(map(Tensor.numel, grads)) != self.numels:
            return False
        n = self.n
        self.grad_ptrs = list(map(_PTR, grads))
        self.buf[n:2 * n] = self.grad_ptrs
        self.grad_hold, self.grad_refs = _hold_grads(grads_all, grads)
        return True


def _init_check(plan: _PlanCheck, optimizer, group, params, grads, states, keys, buf, k) -> bool:
    """Fill in ``plan``'s check for ``params`` (with ``grads``, ``states``: what the step just
    took) and the state tensors under ``keys``; ``buf`` is laid out as :class:`_PlanCheck` says,
    ``k`` its column count. False (no plan) where the tensors are not the group's own
    parameters with a gradient (complex views, DTensor shards, copies) or their states not
    optimizer.state's."""
    gp = group["params"]
    grads_all = list(map(_GRAD, gp))
    none_pattern = list(map(operator.is_, grads_all, repeat(None)))
    mask = None if not any(none_pattern) else [not x for x in none_pattern]
    sel_p = list(gp) if mask is None else list(compress(gp, mask))
    sel_g = grads_all if mask is None else list(compress(grads_all, mask))
    n = len(params)
    if len(sel_p) != n or not all(map(operator.is_, sel_p, params)) \
            or not all(map(operator.is_, sel_g, grads)):
        return False
    if keys and not all(map(operator.is_, map(optimizer.state.get, params), states)):
        return False
    plan.group, plan.all_params, plan.params, plan.mask = group, list(gp), sel_p, mask
    plan.none_pattern = none_pattern
    plan.state, plan.required = optimizer.state, optimizer.algorithm.required_state(group)
    plan.fused, plan.state_dtype = group.get("fused"), group.get("state_dtype")
    plan.foreach, plan.differentiable = group.get("foreach"), group.get("differentiable")
    plan.keys, plan.state_cols, plan.keep = [], [], []
    plan.state_snapshot = plan.native = None
    plan.n, plan.numels = n, list(map(Tensor.numel, params))
    plan.dtype, plan.device = params[0].dtype, params[0].device
    plan.param_ptrs, plan.grad_ptrs = list(map(_PTR, params)), list(map(_PTR, grads))
    plan.buf = buf
    # where this group holds most of optimizer.state, comparing the whole mapping entry by entry
    # is cheaper than looking each parameter up (a Python-level Tensor.__hash__)
    snapshot = 2 * n >= len(optimizer.state)
    native = _plan_check.get(len(gp))
    if native is not None and all(type(p) in _PLAIN for p in gp):
        # The C++ check reads parameters and gradients afresh at each step and compares state
        # tensors by identity: the plan holds those and their storages.
        types = (Tensor, torch.nn.Parameter)
        held = [st[key] for key in keys for st in states]
        in_plan = np.array([not x for x in none_pattern], dtype=np.uint8)
        plan.keep = [in_plan, *map(_STORAGE, held)]  # (the check reads in_plan's address)
        plan.native = native.adaptim_plan_check
        plan.native_head = types
        plan.native_tail = (
            plan.all_params, ctypes.c_void_p(in_plan.ctypes.data), optimizer.state,
            list(optimizer.state) if snapshot else None,
            list(optimizer.state.values()) if snapshot else None, list(states), tuple(keys),
            held, ctypes.c_void_p(buf.ctypes.data), ctypes.c_int64(n), ctypes.c_int64(k),
            ctypes.c_int(native.adaptim_plan_dtype(*types, params[0])),
            ctypes.c_int(native.adaptim_plan_device(*types, params[0])))
        return True
    plan.grad_hold, plan.grad_refs = _hold_grads(grads_all, grads)
    plan.keep = list(map(_STORAGE, params))
    if keys:
        if snapshot:
            plan.state_snapshot = (list(optimizer.state), list(optimizer.state.values()),
                                   list(states))
        for key in keys:
            col = list(map(dict.get, states, repeat(key, n)))
            plan.keys.append(key)
            plan.state_cols.append(col)
            plan.keep.extend(map(_STORAGE, col))
    return True


def _check_buffer(params, grads) -> np.ndarray:
    """A :class:`_PlanCheck` buffer of two columns (parameter, gradient addresses), then the
    element counts."""
    n = len(params)
    buf = np.empty(3 * n, dtype=np.uint64)
    buf[:n] = np.fromiter(map(_PTR, params), np.uint64, n)
    buf[n:2 * n] = np.fromiter(map(_PTR, grads), np.uint64, n)
    buf[2 * n:] = np.fromiter(map(Tensor.numel, params), np.uint64, n)
    return buf


class _Plan(_PlanCheck):
    """One group's C kernel call, ready to run."""

    __slots__ = ("lib", "kernel", "mode", "step_dtype", "make_hp", "hp", "args")

    def run(self, optimizer, group, grad_scale: float) -> bool:
        """Check the plan against the group as it is now and, if it holds, take the step."""
        if _ckernel.loaded(self.mode) is not self.lib or not self.holds(optimizer, group):
            return False
        self.hp[:] = self.make_hp(group, grad_scale, False)
        _debug.calls += 1
        rc = self.kernel(*self.args, ctypes.c_int(torch.get_num_threads()))
        if rc != 0:
            raise RuntimeError(f"adaptim fused kernel failed (code {rc})")
        return True


class _ReferencePlan(_PlanCheck):
    """One group's multi-tensor reference step (``reference_step(..., foreach=True)``: CUDA
    groups by default, ``foreach=True`` anywhere) on the tensor lists :meth:`_gather` made,
    kept while the check holds; the gradients are read afresh (``p.grad``, in bulk)."""

    __slots__ = ("states",)

    def run(self, optimizer, group, grad_scale: float) -> bool:
        grads = self.holds(optimizer, group)
        if not grads:
            return False
        params = self.params
        if grads is True:  # (the C++ check read them without making their Python objects)
            grads = list(map(_GRAD, params))
        if grad_scale != 1.0:
            torch._foreach_mul_(grads, grad_scale)
        optimizer.algorithm.reference_step(group, params, grads, self.states, True)
        return True


class _GradHold:
    """The storages of a plan's gradients, let go when the first of those gradients is freed
    (a weak reference's callback), so a plan never keeps gradient memory past ``zero_grad()``."""

    __slots__ = ("storages",)

    def __init__(self, grads):
        self.storages = list(map(_STORAGE, grads))

    def drop(self, _ref):
        self.storages = None


def _hold_grads(grads_all, grads):
    """A holder of ``grads``' storages and weak references to ``grads_all`` (callable; a
    missing gradient's reads None) that empty the holder when one dies."""
    hold = _GradHold(grads)
    drop = hold.drop
    refs = [_NO_GRAD if g is None else weakref.ref(g, drop) for g in grads_all]
    return hold, refs


_PLANS = "_adaptim_plans"  # the instance-dict key of an optimizer's plans (by group id)


def _plans(optimizer) -> dict:
    return group_cache(optimizer, _PLANS)


def _keep_plan(optimizer, group, plan) -> None:
    _debug.plan_builds += 1
    keep_for_group(optimizer, _PLANS, group, plan)


def planned_step(optimizer, group, grad_scale: float) -> bool:
    """Take ``group``'s step with its cached plan if it still holds (True), else False: the
    caller then gathers the group tensor by tensor (and a new plan is built where it can be)."""
    plans = optimizer.__dict__.get(_PLANS)
    if not plans:
        return False
    plan = plans.get(id(group))
    if plan is None or plan.group is not group:
        return False
    if plan.run(optimizer, group, grad_scale):
        _debug.plan_hits += 1
        return True
    del plans[id(group)]
    return False


def forget_plans(optimizer) -> None:
    """Drop every cached plan of ``optimizer`` (its state or groups were replaced)."""
    optimizer.__dict__.pop(_PLANS, None)


def plan_reference(optimizer, group, params, grads, states) -> None:
    """Cache the multi-tensor reference step ``group`` just took on ``params``, ``grads`` and
    ``states`` (gathered: parameters with a gradient, their lazily made states), where they are
    the group's own tensors of one dtype and device, contiguous, and every state holds what the
    group's options need (made by now, as torch.optim makes it: at the first step)."""
    if not params or not all(type(p) in _PLAIN for p in params) \
            or len(set(map(_DTYPE, params))) != 1 or len(set(map(_DEVICE, params))) != 1:
        return
    dtype, device = params[0].dtype, params[0].device
    if set(map(_LAYOUT, params)) != {torch.strided} \
            or set(map(_LAYOUT, grads)) != {torch.strided} \
            or set(map(_DTYPE, grads)) != {dtype} or set(map(_DEVICE, grads)) != {device} \
            or not all(map(Tensor.is_contiguous, params)) \
            or not all(map(Tensor.is_contiguous, grads)) \
            or list(map(Tensor.numel, grads)) != list(map(Tensor.numel, params)):
        return
    keys = []
    if not optimizer.algorithm.stateless(group):
        keys = sorted(optimizer.algorithm.required_state(group))
        n = len(states)
        for key in keys:
            if not all(map(isinstance, map(dict.get, states, repeat(key, n)), repeat(Tensor))):
                return
    plan = _ReferencePlan()
    if _init_check(plan, optimizer, group, params, grads, states, keys,
                   _check_buffer(params, grads), 2):
        plan.states = list(states)
        _keep_plan(optimizer, group, plan)


def _make_plan(optimizer, group, params, grads, states, columns, mode, steps, step_dtype, kernel,
               make_hp, state_keys) -> _Plan | None:
    """A plan for a group the whole-group path just took, or None where the gathered tensors are
    not the group's own (complex views, DTensor shards, copies)."""
    keys = [key for key, col in zip(state_keys, columns[2:]) if col is not None]
    keys += ["step"] if steps else []
    n, k = len(params), len(columns)
    buf = _call_buffer(columns, steps, step_dtype, 0)
    plan = _Plan()
    if not _init_check(plan, optimizer, group, params, grads, states, keys, buf, k):
        return None
    # a handle of its own without argtypes, called with ready-made C values: no conversions
    plan.lib = _ckernel.load(mode)
    plan.kernel = plan.lib[kernel.__name__]
    plan.kernel.restype = ctypes.c_int
    plan.mode, plan.step_dtype, plan.make_hp = mode, step_dtype, make_hp
    plan.hp = (ctypes.c_double * len(make_hp(group, 1.0, False)))()
    base, word = buf.__array_interface__["data"][0], buf.itemsize
    plan.args = (ctypes.c_int(mode), ctypes.c_int64(n), ctypes.c_void_p(base),
                 ctypes.c_void_p(base + k * n * word),
                 ctypes.c_void_p(base + (k + 1) * n * word if step_dtype else None),
                 ctypes.c_int(step_dtype), ctypes.c_void_p(ctypes.addressof(plan.hp)))
    _keep_plan(optimizer, group, plan)
    return plan
