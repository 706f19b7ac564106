"""Fused steps on CUDA: the rules of ``kernels_body.h`` as Triton kernels (:mod:`._triton_kernels`).

:func:`update` applies one optimizer's rule to a parameter group with ONE kernel launch per
group and step (one per (device, dtypes) bucket in a mixed group): every chunk of every tensor
is one program, so 5,000 small tensors are one launch like one large tensor. Per step the host
builds one small int64 table (the algorithm spec's named hyperparameter fields, as the C kernel
gets them, then per tensor its operands' data pointers and its step-dependent scalars) and
copies it to the device; the chunk table ``(tensor, first element, numel)`` depends only on the
tensor sizes and is cached per group on the device. A group the kernels take whole is planned
(:class:`_LaunchPlan`): later steps re-check the plan (the C kernel plans' check, see
:mod:`adaptim._fused`) and only write the hyperparameters, the gradients' addresses and the
per-tensor scalars into the kept table, with no Python work per tensor.

Step counters stay where torch.optim keeps them for a non-capturable optimizer (0-d CPU
tensors): the host increments them (one numpy operation on their addresses) and computes per
tensor, in float64 exactly as :mod:`adaptim.functional` does, the bias corrections and step size
(Adam) and the decayed lr (AdaGrad): the spec's ``tensor_scalars``. The kernels are specialised
on the spec's ``kernel_flags``; this module names no algorithm.

dtypes: float64 parameters are computed in float64, float32 in float32; float16 and bfloat16
parameters are loaded to float32, updated in float32 and rounded once per step (as torch.optim's
fused CUDA kernels do, and unlike the unfused path, which rounds after every operation). State
is stored in its own dtype (the parameter's, or ``state_dtype``), rounded once per step.

Testing seam: CPU tensors run a second copy of the kernels under Triton's interpreter (numpy);
adaptim._fused routes CPU groups here only when its private ``_TRITON_ON_CPU`` is set (tests, or
``ADAPTIM_TRITON_INTERPRET=1``). The compiled kernels and Triton's settings are left alone.
Tensors no kernel takes go to the ``fallback`` the caller passes (the reference path).
"""

from __future__ import annotations

import contextlib
import importlib.util
import operator
import os
from itertools import repeat
from pathlib import Path

import numpy as np
import torch
import triton
from torch import Tensor

import adaptim._fused as _fused
from adaptim._fused import _check_buffer, _debug, _init_check, _keep_plan, _PlanCheck
from adaptim._tensors import DTYPE as _DTYPE
from adaptim._tensors import IS_CPU as _IS_CPU
from adaptim._tensors import real_view, scalar_dtype

__all__ = ["update"]

BLOCK = 2048           # elements per program on a GPU
BLOCK_INTERPRET = 64   # in the interpreter (numpy per program: small blocks keep tests short)
NUM_WARPS = 4
HP_SLOTS = 16
_KINDS = {torch.float64: 0, torch.float32: 1, torch.float16: 2, torch.bfloat16: 3}


_kernel_modules: dict[bool, object] = {}


@contextlib.contextmanager
def _interpreting():
    """triton.jit reads its interpret setting when it decorates: on for this block only."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        with knobs.runtime.scope():
            knobs.runtime.interpret = True
            yield
        return
    saved = os.environ.get("TRITON_INTERPRET")  # triton before knobs: the environment
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = saved


def kernels(interpret: bool):
    """The kernel module, compiled for the GPU or (``interpret``) run by Triton's interpreter.
    Two separate copies of the module, so interpreting never changes the compiled kernels."""
    mod = _kernel_modules.get(interpret)
    if mod is None:
        if interpret:
            path = Path(__file__).with_name("_triton_kernels.py")
            spec = importlib.util.spec_from_file_location(
                "adaptim._fused._triton_kernels_interpreted", path)
            mod = importlib.util.module_from_spec(spec)
            with _interpreting():
                spec.loader.exec_module(mod)
        else:
            from adaptim._fused import _triton_kernels as mod
        _kernel_modules[interpret] = mod
    return mod


# ---------------------------------------------------------------- host side
_DEVICE = operator.attrgetter("device")
_chunk_cache: dict[tuple, Tensor] = {}
_CHUNK_CACHE_SIZE = 64


def _chunks(sizes: tuple[int, ...], block: int, device) -> Tensor:
    """Rows (tensor index, first element, numel), one per block-sized chunk; cached per device
    and tuple of sizes (a group's sizes do not change between steps)."""
    key = (device, block, sizes)
    table = _chunk_cache.get(key)
    if table is None:
        numel = np.asarray(sizes, dtype=np.int64)
        per = (numel + block - 1) // block
        index = np.repeat(np.arange(len(sizes), dtype=np.int64), per)
        first = np.repeat(np.cumsum(per) - per, per)
        start = (np.arange(len(index), dtype=np.int64) - first) * block
        rows = np.stack([index, start, numel[index]], axis=1)
        table = torch.from_numpy(np.ascontiguousarray(rows)).to(device)
        if len(_chunk_cache) >= _CHUNK_CACHE_SIZE:
            _chunk_cache.pop(next(iter(_chunk_cache)))
        _chunk_cache[key] = table
    return table


_STEP_TYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


class _Memory:
    """``count`` elements of ``dtype`` at ``address``, for ``np.asarray`` (no copy)."""

    def __init__(self, address: int, count: int, dtype: np.dtype):
        self.__array_interface__ = {"data": (address, False), "shape": (count,),
                                    "typestr": dtype.str, "version": 3}


def _step_counter(steps: list[Tensor]):
    """For one-element CPU step tensors of one dtype (as torch.optim keeps them), each its own:
    a function that adds one to every counter in its dtype and returns the new values as
    float64, with one numpy operation on their addresses, as the C kernel does with pointers,
    instead of torch._foreach_add_ (about 1.6 µs per tensor: 8 ms for 5,000 tensors). None
    for any other counters (a tensor shared by two states, counted twice by torch, among
    them). The function writes to the counters' memory: their storages must outlive it."""
    n = len(steps)
    dtypes = set(map(_DTYPE, steps))
    np_dtype = _STEP_TYPES.get(dtypes.pop()) if len(dtypes) == 1 else None
    if np_dtype is None or not all(map(_IS_CPU, steps)) or set(map(Tensor.numel, steps)) != {1}:
        return None
    address = np.fromiter(map(Tensor.data_ptr, steps), np.int64, n)
    low = int(address.min())
    offset = address - low
    if (offset % np_dtype.itemsize).any() or len(np.unique(offset)) != n:
        return None
    index = offset // np_dtype.itemsize
    memory = np.asarray(_Memory(low, int(index.max()) + 1, np_dtype))
    one = np_dtype.type(1)

    def advance() -> np.ndarray:
        values = memory[index] + one
        memory[index] = values
        return values.astype(np.float64)
    return advance


def _advance_steps(states: list[dict]) -> np.ndarray:
    """state["step"] += 1 for every tensor (as the unfused rule does, in the step's dtype);
    returns the new values as float64."""
    n = len(states)
    steps = list(map(dict.get, states, repeat("step", n)))
    if not all(map(isinstance, steps, repeat(Tensor, n))):
        for i, st in enumerate(states):
            if not isinstance(steps[i], Tensor):  # a number from an old checkpoint
                steps[i] = st["step"] = torch.tensor(float(steps[i]), dtype=scalar_dtype())
    advance = _step_counter(steps)
    if advance is not None:
        return advance()
    torch._foreach_add_(steps, 1)
    try:  # one copy for tensors of one dtype, device and shape
        return torch.stack(steps).reshape(-1).to(torch.float64).cpu().numpy()
    except RuntimeError:
        return np.fromiter(map(float, steps), np.float64, n)


def _buckets(params, grads, states, keys, needed, device_ok):
    """Group tensor indices by (device, param kind, state kind), each with its operand columns
    (param, grad, then one per key of ``keys``: None for a state the options do not use).
    Indices the kernels cannot take (device, layout, dtype, a needed state missing) are
    returned apart. The common case (one plain group) is checked in bulk."""
    n = len(params)
    columns = [params, grads] + [list(map(dict.get, states, repeat(k, n))) if k in needed
                                 else None for k in keys]
    try:
        devices = set(map(_DEVICE, params))
        pdtypes = set(map(_DTYPE, params))
        if len(devices) == 1 and len(pdtypes) == 1 and device_ok(next(iter(devices))):
            pk = _KINDS.get(next(iter(pdtypes)))
            numels = list(map(Tensor.numel, params))
            sdtypes = set()
            ok = pk is not None and set(map(_DTYPE, grads)) == pdtypes
            for j, col in enumerate(columns):
                if not ok:
                    break
                if col is None:
                    continue
                if j >= 2:
                    sdtypes |= set(map(_DTYPE, col))
                ok = (set(map(_DEVICE, col)) == devices and all(map(Tensor.is_contiguous, col))
                      and list(map(Tensor.numel, col)) == numels)
            sk = _state_kind(pk, sdtypes)
            if ok and _kinds_ok(pk, sk):
                return {(params[0].device, pk, sk): (list(range(n)), columns)}, []
    except (AttributeError, TypeError):  # a None where a state is needed: tensor by tensor
        pass
    buckets: dict[tuple, tuple[list[int], list]] = {}
    rest = []
    for i, (p, g, st) in enumerate(zip(params, grads, states)):
        # complex tensors (SGD keeps them complex) as real views: elementwise, same memory
        ops = [real_view(p), real_view(g)] + [real_view(st.get(k)) if k in needed else None
                                              for k in keys]
        p, g = ops[0], ops[1]
        pk = _KINDS.get(p.dtype)
        sk = _state_kind(pk, {t.dtype for t in ops[2:] if t is not None})
        if not (device_ok(p.device) and _kinds_ok(pk, sk) and g.dtype == p.dtype
                and all(st.get(k) is not None for k in needed)
                and all(t.device == p.device and t.is_contiguous() and t.numel() == p.numel()
                        for t in ops if t is not None)):
            rest.append(i)
            continue
        idx, cols = buckets.setdefault(
            (p.device, pk, sk), ([], [[] if t is not None else None for t in ops]))
        idx.append(i)
        for col, t in zip(cols, ops):
            if col is not None:
                col.append(t)
    return buckets, rest


def _state_kind(pk, sdtypes: set):
    if not sdtypes:  # no state (plain SGD)
        return pk
    return _KINDS.get(sdtypes.pop()) if len(sdtypes) == 1 else None


def _kinds_ok(pk, sk) -> bool:
    # float64 parameters keep float64 state; float32/float16/bfloat16 ones any 32/16-bit state
    return pk is not None and sk is not None and (pk == 0) == (sk == 0)


def _table(hp, columns, scalars) -> tuple[np.ndarray, np.ndarray]:
    """The launch's int64 table (``HP_SLOTS`` hyperparameter slots, then per tensor its
    operands' data pointers and its float64 scalars) and a view of its per-tensor records."""
    n, n_ops = len(columns[0]), len(columns)
    n_scalars = 0 if scalars is None else scalars.shape[1]
    record = n_ops + n_scalars
    table = np.zeros(HP_SLOTS + n * record, dtype=np.int64)
    records = table[HP_SLOTS:].reshape(n, record)
    for j, col in enumerate(columns):
        if col is not None:
            records[:, j] = np.fromiter(map(Tensor.data_ptr, col), np.int64, n)
    _write_numbers(table, records, n_ops, hp, scalars)
    return table, records


def _write_numbers(table: np.ndarray, records: np.ndarray, n_ops: int, hp, scalars) -> None:
    """Write the hyperparameters and the per-tensor scalars (float64 bits) into a table laid
    out by :func:`_table`."""
    table[:len(hp)] = np.asarray(hp, dtype=np.float64).view(np.int64)
    if scalars is not None and scalars.shape[1]:
        records[:, n_ops:] = np.ascontiguousarray(scalars, dtype=np.float64).view(np.int64)


def _aligned(pointers: np.ndarray, sizes) -> bool:
    """16-byte vector loads and stores are legal when every operand starts 16-byte aligned and
    every element count is a multiple of 8 (then no 16-byte group straddles a mask edge)."""
    return not (pointers % 16).any() and not (np.asarray(sizes) % 8).any()


def _fire(kernel, interpret: bool, device, table: np.ndarray, chunks: Tensor, options) -> None:
    """Copy ``table`` to the device and launch ``kernel`` over every row of ``chunks``. The
    table is pageable host memory: the copy has read it when ``.to`` returns (CUDA stages
    pageable memory before the call returns), so the caller may rewrite it for the next step."""
    table_t = torch.from_numpy(table)
    if device.type != "cpu":
        table_t = table_t.to(device, non_blocking=True)
    _debug.launches += 1
    args = (table_t, table_t.view(torch.float64), chunks)
    if interpret:
        with np.errstate(all="ignore"):  # masked-off lanes may divide 0 by 0; never stored
            kernel[(chunks.shape[0],)](*args, **options)
    else:
        with torch.cuda.device(device):
            kernel[(chunks.shape[0],)](*args, **options, num_warps=NUM_WARPS,
                                       enable_fp_fusion=False)


def _launch(kernel_name, interpret, device, pk, sk, flags, hp, columns, scalars):
    """One launch over every chunk of every tensor in ``columns``."""
    n_ops = len(columns)
    sizes = tuple(map(Tensor.numel, columns[0]))
    block = BLOCK_INTERPRET if interpret else BLOCK
    chunks = _chunks(sizes, block, device)
    table, records = _table(hp, columns, scalars)
    if not chunks.shape[0]:
        return  # only empty tensors: their steps were counted, nothing else to do
    kernel = getattr(kernels(interpret), kernel_name + "_kernel")
    options = dict(PK=pk, SK=sk, BLOCK=block,
                   ALIGNED=_aligned(records[:, :n_ops], sizes), **flags)
    _fire(kernel, interpret, device, table, chunks, options)


# ---------------------------------------------------------------- cached plan
class _LaunchPlan(_PlanCheck):
    """One group's launch, kept while the plan's check holds (:class:`adaptim._fused._PlanCheck`,
    the same check as the C kernel's plans, on the group's device): the table with every
    pointer, the chunk table, the kernel and its dtype options, the step counters' addresses.
    Each step re-checks, advances the steps, computes the per-tensor scalars, writes them and
    the hyperparameters (and the gradients' addresses) into the table, copies it to the device
    and launches: nothing per tensor in Python."""

    __slots__ = ("spec", "kernel", "interpret", "pk", "sk", "block", "table", "records",
                 "n_ops", "chunks", "advance", "states", "init", "aligned_rest")

    def run(self, optimizer, group, grad_scale: float) -> bool:
        if self.interpret and not _fused._TRITON_ON_CPU:
            return False  # the CPU group is the C kernel's again
        if not self.holds(optimizer, group):
            return False
        spec, n, records = self.spec, self.n, self.records
        grad_ptrs = self.buf[n:2 * n]
        records[:, 1] = grad_ptrs.view(np.int64)
        steps = None
        if self.advance is not None:
            steps = self.advance()
        elif spec.counts_steps:
            steps = _advance_steps(self.states)
        _write_numbers(self.table, records, self.n_ops, spec.hp(group, grad_scale),
                       spec.tensor_scalars(group, steps, self.init))
        if not self.chunks.shape[0]:
            return True  # only empty tensors: their steps were counted
        options = dict(PK=self.pk, SK=self.sk, BLOCK=self.block,
                       ALIGNED=self.aligned_rest and not (grad_ptrs % 16).any(),
                       **spec.kernel_flags(group))
        _fire(self.kernel, self.interpret, self.device, self.table, self.chunks, options)
        return True


def _make_plan(optimizer, spec, group, params, grads, states, device, pk, sk, columns,
               scalars) -> None:
    """Cache the launch the group just took whole (every tensor in one bucket, every state made
    before this step), where the tensors are the group's own."""
    keys = [key for key, col in zip(spec.state_keys, columns[2:]) if col is not None]
    keys += ["step"] if spec.counts_steps else []
    plan = _LaunchPlan()
    if not _init_check(plan, optimizer, group, params, grads, states, keys,
                       _check_buffer(params, grads), 2):
        return
    interpret = device.type == "cpu"
    sizes = tuple(plan.numels)
    plan.spec, plan.interpret, plan.pk, plan.sk = spec, interpret, pk, sk
    plan.block = BLOCK_INTERPRET if interpret else BLOCK
    plan.kernel = getattr(kernels(interpret), spec.name + "_kernel")
    plan.chunks = _chunks(sizes, plan.block, device)
    plan.table, plan.records = _table([], columns, scalars)
    plan.n_ops = len(columns)
    plan.states = list(states)
    plan.init = [0.0] * len(params)
    steps = list(map(dict.get, states, repeat("step", len(states)))) if spec.counts_steps \
        else None
    # (the check holds the step tensors, so the counter's memory lives as long as the plan)
    plan.advance = _step_counter(steps) if steps else None
    others = np.concatenate([plan.records[:, :1], plan.records[:, 2:plan.n_ops]], axis=1)
    plan.aligned_rest = _aligned(others, sizes)
    _keep_plan(optimizer, group, plan)


def update(spec, group: dict, params: list[Tensor], grads: list[Tensor], states: list[dict],
           grad_scale: float, fallback, interpret_cpu: bool = False, plan_for=None) -> None:
    """The rule of ``spec`` (an :class:`adaptim.algorithms.Algorithm`) on one group (real views
    ``params``/``grads``), gradients times ``grad_scale`` on the fly, every step incremented.
    CUDA tensors go through the compiled Triton kernels, CPU tensors (with ``interpret_cpu``)
    through the same kernels in Triton's interpreter; the indices of any other tensor are
    passed to ``fallback(indices)`` (the reference path). ``plan_for``: the optimizer whose
    plans keep this launch for later steps, where the group took it whole (see
    :class:`_LaunchPlan`)."""
    hp = spec.hp(group, grad_scale)
    flags = spec.kernel_flags(group)
    needed = spec.required_state(group) - {"step"}
    made = spec.grad_initialised_state
    init = set()
    if made is not None and made in needed:
        # the first step makes this state from the gradient (torch.optim.SGD's momentum
        # buffer): the kernel writes it
        state_dtype = group.get("state_dtype")
        for i, (p, st) in enumerate(zip(params, states)):
            if st.get(made) is None:
                st[made] = torch.zeros_like(
                    p, dtype=None if p.is_complex() else state_dtype)  # no complex bfloat16
                init.add(i)

    def device_ok(device):
        return device.type == "cuda" or (interpret_cpu and device.type == "cpu")

    buckets, rest = _buckets(params, grads, states, spec.state_keys, needed, device_ok)
    for (device, pk, sk), (idx, columns) in buckets.items():
        steps = _advance_steps([states[i] for i in idx]) if spec.counts_steps else None
        scalars = spec.tensor_scalars(group, steps, [float(i in init) for i in idx])
        _launch(spec.name, device.type == "cpu", device, pk, sk, flags, hp, columns, scalars)
        if plan_for is not None and not rest and not init and len(buckets) == 1:
            _make_plan(plan_for, spec, group, params, grads, states, device, pk, sk, columns,
                       scalars)
    if rest:
        for i in rest:
            if i in init:  # the reference path makes its own first buffer
                del states[i][made]
        fallback(rest)
