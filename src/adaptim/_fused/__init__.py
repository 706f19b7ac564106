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

CUDA groups take the same rules as Triton kernels (:mod:`._triton`), one launch per group and
step, where triton imports. Tensors no kernel takes (CUDA tensors without triton, non-contiguous
tensors, dtypes other than float32/float64 on CPU, state dtypes other than the parameter's or
bfloat16 for float32 parameters) go through the reference path: the algorithm spec's
``reference_step``, on parameter-precision copies of the state when the state is stored in
another dtype. Where no C compiler works, every CPU tensor takes that path, after one warning.

``state_dtype=torch.bfloat16`` stores the state in bfloat16; each step loads it to float32,
runs the float32 rule and rounds the new state once (round to nearest even).
"""

from __future__ import annotations

import operator
import os
import warnings
from itertools import repeat

import numpy as np
import torch
from torch import Tensor

from adaptim._fused import _ckernel
from adaptim._tensors import DTYPE as _DTYPE
from adaptim._tensors import IS_CPU as _IS_CPU
from adaptim._tensors import real_view, scalar_dtype

__all__ = ["fused_update", "kernel_available", "kernel_suits", "cast_state"]

_MODES = {  # (param dtype, state dtype) -> kernel mode (kernels.c)
    (torch.float64, torch.float64): 0,
    (torch.float32, torch.float32): 1,
    (torch.float32, torch.bfloat16): 2,
}
_warned = False
# CUDA groups take the Triton kernels (_triton.py). Tests set this to run them on CPU groups
# under Triton's interpreter (also: ADAPTIM_TRITON_INTERPRET=1).
_TRITON_ON_CPU = os.environ.get("ADAPTIM_TRITON_INTERPRET") == "1"
_triton_warned = False
# Kernel calls made by this process (tests check that the kernel path, not the fallback, ran).
kernel_calls = 0


def kernel_available(mode: int = 1) -> bool:
    """Whether the C kernel library of ``mode`` (default float32) is (or can be) built and
    loaded on this machine."""
    try:
        _ckernel.load(mode)
        return True
    except _ckernel.KernelUnavailable:
        return False


def kernel_suits(params: list[Tensor]) -> bool:
    """What ``fused=None`` (the default) resolves to for one group: True when its parameters
    are CPU float32/float64 tensors and the C kernel library for their dtype builds and loads on
    this machine (the first time: a compile of about 2 s, cached), else False, silently: the
    reference path is exact too, only slower. CUDA groups take the reference path."""
    p = params[0]
    if not p.is_cpu or _is_dtensor(p):
        return False
    mode = _MODES.get((p.dtype, p.dtype))
    return mode is not None and kernel_available(mode)


def _kernel_or_warn(mode: int):
    global _warned
    try:
        return _ckernel.load(mode)
    except _ckernel.KernelUnavailable as err:
        if not _warned:
            _warned = True
            warnings.warn(
                "adaptim: the fused C kernels are unavailable, so fused=True falls back to the "
                f"unfused update (same results, slower). Reason: {err}. Set ADAPTIM_CC to a "
                "working C compiler with OpenMP (e.g. gcc) to enable them.",
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
                 fused: bool | None = None) -> None:
    """Apply ``optimizer``'s update rule to one group in one fused pass, multiplying gradients by
    ``grad_scale`` on the fly (clipping). ``params``/``grads`` are real views (complex tensors of
    SGD are viewed as real here); ``states`` are initialised state dicts; ``state["step"]`` is
    incremented as on the unfused path. ``fused`` is the group's resolved choice (None: the
    group's own flag); False runs the reference path (bfloat16 state without the kernel). Results
    equal the unfused path's (float64 to ~1e-15, float32 to an ulp or two per step)."""
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
                               interpret_cpu=_TRITON_ON_CPU)
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
    plan = _whole_group_plan(params, grads, states, spec.state_keys, spec.counts_steps)
    if plan is not None and not (made is not None
                                 and plan[0][2 + spec.state_keys.index(made)] is None):
        columns, mode, steps, step_dtype = plan
        lib = _kernel_or_warn(mode)
        if lib is not None:
            _call_columns(getattr(lib, f"adaptim_{spec.name}"), mode, columns, steps,
                          step_dtype, spec.hp(group, grad_scale, False), nthreads)
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


def _call_columns(kernel, mode: int, columns: list, steps, step_dtype: int, hp: list[float],
                  nthreads: int) -> None:
    """One kernel call: ``columns[j]`` lists the j-th operand of every tensor (None: unused).
    Pointers, sizes, step pointers and hyperparameters share one 8-byte-word buffer, so a call
    costs one allocation and one address lookup however many operands it has."""
    global kernel_calls
    kernel_calls += 1
    n = len(columns[0])
    k = len(columns)
    n_steps = n if step_dtype else 0
    buf = np.zeros(k * n + n + n_steps + len(hp), dtype=np.uint64)
    for j, col in enumerate(columns):
        if col is not None:
            buf[j * n:(j + 1) * n] = np.fromiter(map(Tensor.data_ptr, col), np.uint64, n)
    buf[k * n:(k + 1) * n] = np.fromiter(map(Tensor.numel, columns[0]), np.uint64, n)
    if step_dtype:
        buf[(k + 1) * n:(k + 2) * n] = np.fromiter(map(Tensor.data_ptr, steps), np.uint64, n)
    buf[(k + 1) * n + n_steps:].view(np.float64)[:] = hp
    base = buf.__array_interface__["data"][0]
    word = buf.itemsize
    rc = kernel(mode, n, base, base + k * n * word, base + (k + 1) * n * word if step_dtype
                else None, step_dtype, base + ((k + 1) * n + n_steps) * word, nthreads)
    if rc != 0:
        raise RuntimeError(f"adaptim fused kernel failed (code {rc})")
