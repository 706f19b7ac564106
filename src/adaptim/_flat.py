"""The flat layout (``flat=True``): a group's parameters, gradients and state as views of one
contiguous buffer per dtype, so a step is one kernel call on a few long tensors however many
tensors the model has (as DDP's ``gradient_as_bucket_view`` and FSDP's flat parameters do).

Layout. When a group joins with ``flat=True``, its parameters are split into buckets by
(device, dtype), in group order. Each bucket owns one 1-D buffer for the parameters (``p.data``
is rebound to a view of it, values kept), one for the gradients, one per state key and one of
step counts; each parameter's state tensors (``optimizer.state[p]``) are views of those, each
``step`` a 0-d view of the step buffer.

Gradients. A gradient that exists is a view of the gradient buffer, so autograd, which adds into
an existing ``.grad`` in place, accumulates into the buffer: no copy. A parameter without a
gradient keeps ``None`` (a view is never put where torch would have None: a parameter that gets
no gradient must be skipped, as torch.optim skips it). ``zero_grad(set_to_none=False)`` zeroes
the buffer in one pass and puts each existing gradient back as its view;
``zero_grad(set_to_none=True)`` (torch's default) sets gradients to None as torch.optim does,
the next backward allocates new ones and the next step copies them into the buffer (DDP's
behaviour with ``gradient_as_bucket_view`` after ``set_to_none``).

Step. The parameters of a bucket that have a gradient, state in the buffers and equal step
counts form runs of consecutive parameters; each run is one slice of every buffer, so the
group's update is one call of the group's usual path (the fused kernel, Triton or the reference
rule, :meth:`AdaptimOptimizer._run_group`) on one tensor per run: one run in the common case.
The step counts of a run are advanced together. A parameter whose state cannot live in a buffer
(another dtype, a tensor of another shape) is updated on its own.

What is checked before each step, for every flat group before any group steps (so a refusal
changes nothing), in bulk (C-level ``map``, no Python loop per tensor): the group's parameter
list, each parameter's address (``p.data = ...``, ``module.to()``), each gradient's identity
(``p.grad = other``, set to None, re-created by backward) and each gradient view's address,
the identity of ``optimizer.state`` and of its entries, writes into a parameter's state dict
(seen by the dict itself), and that the step counts of each run are still equal. A parameter
or gradient view that moved makes the group laid out again from the tensors as they are now
(values kept); a new gradient is copied into the buffer; changed state is copied into the
buffers. Nothing is written through a stale pointer: the kernel only ever sees the buffers,
which the layout owns. Not seen: rebinding a state tensor's ``.data`` in place, and writes that
bypass the dict's methods (``dict.__setitem__(state, ...)``).
"""

from __future__ import annotations

import copy
import operator
from itertools import compress, repeat

import torch
from torch import Tensor

from adaptim._tensors import DTYPE as _DTYPE
from adaptim._tensors import GRAD as _GRAD
from adaptim._tensors import LAYOUT as _LAYOUT
from adaptim._tensors import group_cache, keep_for_group, scalar_dtype

__all__ = ["FlatState", "after_load", "check_group", "lay_out", "plain_state", "step",
           "zero_grad"]

_PTR = Tensor.data_ptr
_IS = operator.is_
_IS_NOT = operator.is_not
_NUMEL = Tensor.numel
_KEY = "_adaptim_flat"  # optimizer.__dict__ entry: {id(group): _Layout}
_SNAP = "_adaptim_flat_state"  # optimizer.__dict__ entry: the state snapshot


class _Flag:
    __slots__ = ("dirty",)

    def __init__(self) -> None:
        self.dirty = False


class FlatState(dict):
    """A flat group's per-parameter state: a dict whose every write marks the group's layout for
    a re-check before the next step. Copies and pickles are plain dicts."""

    __slots__ = ("_flag",)

    def __init__(self, flag: _Flag, items: dict) -> None:
        dict.__init__(self, items)
        self._flag = flag

    def _touch(self) -> None:
        self._flag.dirty = True

    def __setitem__(self, key, value) -> None:
        self._touch()
        dict.__setitem__(self, key, value)

    def __delitem__(self, key) -> None:
        self._touch()
        dict.__delitem__(self, key)

    def __ior__(self, other):
        self._touch()
        return dict.__ior__(self, other)

    def pop(self, *args):
        self._touch()
        return dict.pop(self, *args)

    def popitem(self):
        self._touch()
        return dict.popitem(self)

    def clear(self) -> None:
        self._touch()
        dict.clear(self)

    def update(self, *args, **kwargs) -> None:
        self._touch()
        dict.update(self, *args, **kwargs)

    def setdefault(self, key, default=None):
        self._touch()
        return dict.setdefault(self, key, default)

    def __reduce__(self):
        return dict, (dict(self),)

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo) -> dict:
        return copy.deepcopy(dict(self), memo)


class _Bucket:
    """The parameters of one (device, dtype) of a group and their buffers."""

    __slots__ = ("index", "offsets", "P", "G", "gviews", "S", "sviews", "T", "tviews",
                 "state_dtype")

    def __init__(self, index: list[int], params: list[Tensor], state_dtype) -> None:
        self.index = index  # positions in the group's parameter list
        offsets = [0]
        for p in params:
            offsets.append(offsets[-1] + p.numel())
        self.offsets = offsets
        p0 = params[0]
        self.P = torch.empty(offsets[-1], dtype=p0.dtype, device=p0.device)
        self.G = torch.zeros_like(self.P)
        self.gviews = [self.G[a:b].view(p.shape) for a, b, p in
                       zip(offsets, offsets[1:], params)]
        self.S: dict[str, Tensor] = {}
        self.sviews: dict[str, list[Tensor]] = {}
        self.T: Tensor | None = None
        self.tviews: list[Tensor] = []
        self.state_dtype = state_dtype if state_dtype is not None else p0.dtype

    def state_view(self, key: str, j: int, like: Tensor) -> Tensor | None:
        """Parameter ``j``'s view of state buffer ``key`` (made on first use), or None where
        ``like`` cannot live there (another dtype, device or size)."""
        S = self.S.get(key)
        if S is None:
            if like.dtype != self.state_dtype or like.device != self.P.device:
                return None
            S = self.S[key] = torch.zeros(self.offsets[-1], dtype=self.state_dtype,
                                          device=self.P.device)
            self.sviews[key] = [S[a:b].view(g.shape) for a, b, g in
                                zip(self.offsets, self.offsets[1:], self.gviews)]
        view = self.sviews[key][j]
        if like.dtype != S.dtype or like.device != S.device or like.shape != view.shape \
                or like.layout != torch.strided:
            return None
        return view

    def step_view(self, j: int, like) -> Tensor | None:
        """Parameter ``j``'s 0-d view of the step buffer (made on first use)."""
        if self.T is None:
            dtype = like.dtype if isinstance(like, Tensor) else scalar_dtype()
            device = like.device if isinstance(like, Tensor) else torch.device("cpu")
            self.T = torch.zeros(len(self.index), dtype=dtype, device=device)
            self.tviews = [self.T[j] for j in range(len(self.index))]
        if isinstance(like, Tensor) and (like.numel() != 1 or like.dtype != self.T.dtype
                                         or like.device != self.T.device):
            return None
        return self.tviews[j]


class _Layout:
    """One flat group: its buckets, what the pre-step check compares, and the cached call."""

    __slots__ = ("group", "params", "param_ptrs", "buckets", "gviews", "expected", "flag",
                 "call", "runs", "made_len",
                 "plans", "kinds", "present", "grad_ptrs")

    def holds(self, group: dict) -> bool:
        """Whether the group's parameters are still this layout's views."""
        gp = group["params"]
        return len(gp) == len(self.params) and all(map(_IS, gp, self.params)) \
            and list(map(_PTR, gp)) == self.param_ptrs



def _expect(layout: _Layout, expected: list) -> None:
    """The gradients the next step expects: each parameter's view where it has a gradient,
    None where it has none; and the views' addresses (a view's ``.data`` can be rebound)."""
    layout.expected = expected
    layout.present = _present(expected)
    layout.grad_ptrs = list(map(_PTR, layout.present))


def _present(tensors: list) -> list:
    return list(compress(tensors, map(_IS_NOT, tensors, repeat(None))))


def _layouts(optimizer) -> dict:
    return group_cache(optimizer, _KEY)


def _layout_of(optimizer, group: dict) -> _Layout | None:
    layout = optimizer.__dict__.get(_KEY, {}).get(id(group))
    return layout if layout is not None and layout.group is group else None


def check_group(optimizer, group: dict) -> None:
    """Refuse a flat group the layout cannot hold (ValueError naming the reason)."""
    if group.get("differentiable"):
        raise ValueError("flat=True cannot be combined with differentiable=True (the update "
                         "must stay per-tensor in the autograd graph)")
    if len(set(map(id, group["params"]))) != len(group["params"]):
        raise ValueError("flat=True: a parameter appears more than once in the group; each "
                         "parameter is one slice of the buffer")
    for i, p in enumerate(group["params"]):
        if p.is_complex() or not p.is_floating_point():
            raise ValueError(f"flat=True: parameter {i} has dtype {p.dtype}; the flat layout "
                             "holds real floating-point parameters (put complex ones in a "
                             "group with flat=False)")
        if p.layout != torch.strided or hasattr(p, "placements"):
            raise ValueError(f"flat=True: parameter {i} is not a plain dense tensor "
                             f"({type(p).__name__}, {p.layout}); the flat layout holds dense "
                             "local tensors (not sparse tensors or DTensor shards)")
        if p.grad is not None and p.grad.layout != torch.strided:
            raise ValueError(f"flat=True: parameter {i} has a sparse gradient; the flat layout "
                             "keeps dense gradients (use flat=False for this group)")


def lay_out(optimizer, group: dict) -> _Layout:
    """Make ``group`` flat from its tensors as they are now: parameters, existing gradients and
    state are copied into new buffers and rebound to views of them."""
    params = list(group["params"])
    keys: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        keys.setdefault((p.device, p.dtype), []).append(i)
    layout = _Layout()
    layout.group, layout.params, layout.flag = group, params, _Flag()
    layout.buckets = []
    gviews: list[Tensor | None] = [None] * len(params)
    expected: list[Tensor | None] = [None] * len(params)  # a view where a gradient exists
    state_dtype = group.get("state_dtype")
    with torch.no_grad():
        for index in keys.values():
            members = [params[i] for i in index]
            bucket = _Bucket(index, members, state_dtype)
            for j, (i, p) in enumerate(zip(index, members)):
                a, b = bucket.offsets[j], bucket.offsets[j + 1]
                bucket.P[a:b].copy_(p.detach().reshape(-1))
                grad = p.grad
                p.data = bucket.P[a:b].view(p.shape)
                gviews[i] = bucket.gviews[j]
                if grad is not None:
                    expected[i] = gviews[i]
                    bucket.gviews[j].copy_(grad)
                    p.grad = bucket.gviews[j]
            layout.buckets.append(bucket)
    layout.gviews = gviews
    layout.param_ptrs = list(map(_PTR, params))
    _expect(layout, expected)
    layout.call = layout.runs = layout.made_len = layout.kinds = None
    layout.plans = 0  # how many times the call was planned (read by tests)
    _seat_all(optimizer, layout)
    keep_for_group(optimizer, _KEY, group, layout)
    return layout


def _seat(bucket: _Bucket, j: int, st: dict, flag: _Flag) -> FlatState:
    """Parameter ``j``'s state with every tensor that can live in the buffers moved there (its
    values copied); the rest kept as it is."""
    seated = {}
    for key, value in st.items():
        if key == "step":
            view = bucket.step_view(j, value)
            if view is None:
                seated[key] = value
                continue
            if value is not view:
                if isinstance(value, Tensor):
                    view.copy_(value)
                else:
                    view.fill_(float(value))
            seated[key] = view
        elif isinstance(value, Tensor):
            view = bucket.state_view(key, j, value)
            if view is not None and value is not view:
                view.copy_(value)
            seated[key] = value if view is None else view
        else:
            seated[key] = value
    return FlatState(flag, seated)


def _seat_all(optimizer, layout: _Layout) -> None:
    """Move every parameter's existing state into the buffers (after a layout, a load, or a
    write into a state dict) and drop the cached call."""
    state = optimizer.state
    flag = layout.flag
    with torch.no_grad():
        for bucket in layout.buckets:
            for j, i in enumerate(bucket.index):
                p = layout.params[i]
                st = state.get(p)
                if st:
                    state[p] = _seat(bucket, j, st, flag)
    flag.dirty = False
    layout.call = None


def _snapshot(optimizer) -> None:
    """Remember ``optimizer.state`` as it is (the mapping, its keys and its entries), for
    :func:`_state_unchanged`; one snapshot per optimizer, shared by its flat groups."""
    state = optimizer.state
    optimizer.__dict__[_SNAP] = (state, list(state), list(state.values()))


def _state_unchanged(optimizer) -> bool:
    """Whether ``optimizer.state`` is the mapping of the last snapshot with the same keys and
    entries (an entry replaced, added or removed, or the state replaced by load_state_dict,
    shows)."""
    snap = optimizer.__dict__.get(_SNAP)
    if snap is None:
        return False
    ref, keys, values = snap
    state = optimizer.state
    return state is ref and len(state) == len(keys) and all(map(_IS, state, keys)) \
        and all(map(_IS, state.values(), values))


_UNKNOWN = object()  # a parameter whose state is not known to be in the buffers


def _seat_group(optimizer, layout: _Layout, group: dict, grads: list) -> None:
    """State made for the parameters that have a gradient and none yet (as the default layout
    makes it on their first step), every state moved into the buffers, and each parameter's
    kind recorded: its state keys as they sit in the buffers, None for a parameter updated on
    its own, _UNKNOWN for one without state."""
    spec = optimizer.algorithm
    state = optimizer.state
    stateless = spec.stateless(group)
    flag = layout.flag
    params = layout.params
    kinds = [_UNKNOWN] * len(params)
    with torch.no_grad():
        for bucket in layout.buckets:
            for j, i in enumerate(bucket.index):
                p = params[i]
                st = state.get(p)
                if grads[i] is not None and st is None and not stateless:
                    st = state[p]
                if grads[i] is not None and st is not None and not st:
                    optimizer._make_state(p, st, group)
                if st:
                    kind = _kind(st, bucket, j)
                    if kind is None:
                        st = state[p] = _seat(bucket, j, st, flag)
                        kind = _kind(st, bucket, j)
                    kinds[i] = kind
                elif st is not None or stateless:
                    kinds[i] = ((), False)  # no state (yet): SGD, whose buffer a step makes
    flag.dirty = False
    layout.kinds = kinds
    _snapshot(optimizer)


def _kind(st: dict, bucket: _Bucket, j: int):
    """(state keys with where each lives, whether there is a step count) for a parameter whose
    state is all in the buffers (a None entry allowed); None otherwise."""
    keys = []
    has_step = False
    for key, value in st.items():
        if key == "step":
            if bucket.T is None or value is not bucket.tviews[j]:
                return None
            has_step = True
        elif isinstance(value, Tensor):
            views = bucket.sviews.get(key)
            if views is None or value is not views[j]:
                return None
            keys.append((key, "buffer"))
        elif value is None:
            keys.append((key, "none"))
        else:
            return None
    return tuple(sorted(keys)), has_step


def _plan(optimizer, layout: _Layout, group: dict, grads: list, full: bool) -> None:
    """Runs of consecutive parameters that have a gradient, the same state keys in the buffers
    and the same step count, from the gradients present now; the call cached. ``full``: make
    and seat state first (else only where a parameter with a gradient has no known state)."""
    kinds = layout.kinds
    if full or kinds is None or any(
            kinds[i] is _UNKNOWN for i, g in enumerate(grads) if g is not None):
        _seat_group(optimizer, layout, group, grads)
        kinds = layout.kinds
    runs = []  # [bucket, j0, j1, (kind, step)]
    single = []  # group positions updated on their own
    for bucket in layout.buckets:
        steps = bucket.T.tolist() if bucket.T is not None else None
        run = None
        for j, i in enumerate(bucket.index):
            signature = None
            if grads[i] is not None:
                kind = kinds[i]
                if kind is None:
                    single.append(i)
                else:
                    signature = (kind[0], steps[j] if kind[1] else None, kind[1])
            if signature is not None and run is not None and run[3] == signature:
                run[2] = j + 1
                continue
            if run is not None:
                runs.append(run)
            run = [bucket, j, j + 1, signature] if signature is not None else None
        if run is not None:
            runs.append(run)
    layout.plans += 1
    _build_call(optimizer, layout, runs, single)
    _expect(layout, [v if g is not None else None for v, g in zip(layout.gviews, grads)])


def _build_call(optimizer, layout: _Layout, runs: list, single: list[int]) -> None:
    """The tensors of the group's call: one slice of each buffer per run, then the parameters
    updated on their own."""
    params, grads, states, fixes, made_len = [], [], [], [], []
    state = optimizer.state
    for bucket, j0, j1, (keys, _, has_step) in runs:
        a, b = bucket.offsets[j0], bucket.offsets[j1]
        params.append(bucket.P[a:b])
        grads.append(bucket.G[a:b])
        st = {}
        for key, kind in keys:
            if kind == "buffer":
                st[key] = bucket.S[key][a:b]
            else:
                st[key] = None
        if has_step:
            st["step"] = bucket.tviews[j0]
            if j1 - j0 > 1:  # the run's other counts follow its first: (rest, first expanded)
                rest = bucket.T[j0 + 1:j1]
                fixes.append((rest, bucket.tviews[j0].expand_as(rest)))
        states.append(st)
        made_len.append(len(st))
    for i in single:
        p = layout.params[i]
        params.append(p)
        grads.append(layout.gviews[i])
        states.append(state[p] if p in state else {})
        made_len.append(None)
    layout.call = (params, grads, states, fixes)
    layout.runs = runs
    layout.made_len = made_len


def _take_grads(layout: _Layout, grads: list) -> bool:
    """Copy gradients that are not the buffer's views (new ones from backward after
    ``zero_grad(set_to_none=True)``, or assigned) into the buffer, checked in bulk first. False
    where the set of parameters with a gradient changed (the runs must be planned again)."""
    has = list(map(_IS_NOT, grads, repeat(None)))
    new = list(map(_IS_NOT, grads, layout.gviews))
    take = list(map(operator.and_, has, new))
    if any(take):
        views = list(compress(layout.gviews, take))
        fresh = list(compress(grads, take))
        if set(map(_LAYOUT, fresh)) != {torch.strided}:
            raise ValueError("flat=True: a parameter has a sparse gradient; the flat layout "
                             "keeps dense gradients (use flat=False for this group)")
        # torch's .grad setter and autograd keep a gradient's shape, dtype and device those of
        # its parameter; the sizes and dtypes are checked again (a .data rebinding could differ)
        if list(map(_NUMEL, fresh)) != list(map(_NUMEL, views)) \
                or not all(map(_IS, map(_DTYPE, fresh), map(_DTYPE, views))):
            raise ValueError("flat=True: a gradient does not match its parameter's size or "
                             "dtype")
        with torch.no_grad():
            torch._foreach_copy_(views, fresh)
    return has == list(map(_IS_NOT, layout.expected, repeat(None)))


def prepare(optimizer) -> dict | None:
    """Check every flat group before any group steps (so a refusal changes nothing): its layout
    is laid out again where a parameter moved, new gradients are copied into the buffer.
    Returns {id(group): (layout, gradients, what to plan: None, "runs" or "full")}, None
    without flat groups."""
    prepared = None
    unchanged = None  # optimizer.state checked once for all flat groups
    for group in optimizer.param_groups:
        if not group.get("flat"):
            continue
        layout = _layout_of(optimizer, group)
        if layout is None or not layout.holds(group):
            check_group(optimizer, group)
            layout = lay_out(optimizer, group)
        grads = list(map(_GRAD, layout.params))
        if unchanged is None:
            unchanged = _state_unchanged(optimizer)
        plan = "full" if layout.call is None or layout.flag.dirty or not unchanged else None
        if not all(map(_IS, grads, layout.expected)) and not _take_grads(layout, grads):
            plan = plan or "runs"
        elif list(map(_PTR, layout.present)) != layout.grad_ptrs:
            check_group(optimizer, group)  # a gradient view's memory was rebound
            layout = lay_out(optimizer, group)
            grads = list(map(_GRAD, layout.params))
            plan = "full"
        if plan is None:
            for rest, first in layout.call[3]:
                if not torch.equal(rest, first):
                    plan = "runs"  # a step count was written: the run splits
                    break
        if prepared is None:
            prepared = {}
        prepared[id(group)] = (layout, grads, plan)
    return prepared


def step(optimizer, group: dict, grad_scale: float, prepared: dict) -> None:
    """The update of flat ``group`` after :func:`prepare`: its cached call (see module doc)."""
    layout, grads, plan = prepared[id(group)]
    if plan is not None:
        _plan(optimizer, layout, group, grads, full=plan == "full")
    params, grads_, states, fixes = layout.call
    if not params:
        return
    optimizer._run_group(group, params, grads_, states, grad_scale, plan=False)
    with torch.no_grad():
        for rest, first in fixes:
            rest.copy_(first)
    # a state the step made (SGD's momentum buffer on its first step) moves into the buffers
    if any(n is not None and len(st) != n for st, n in zip(states, layout.made_len)):
        _adopt(optimizer, layout)
    elif layout.flag.dirty and any(n is None for n in layout.made_len):
        _seat_all(optimizer, layout)
        layout.call = None


def _adopt(optimizer, layout: _Layout) -> None:
    """Copy state tensors a run's call made into the buffers and give each parameter its
    views."""
    state = optimizer.state
    with torch.no_grad():
        for (bucket, j0, j1, _), st in zip(layout.runs, layout.call[2]):
            a = bucket.offsets[j0]
            for key, value in st.items():
                if key == "step" or not isinstance(value, Tensor) or key in bucket.S \
                        and value.data_ptr() == bucket.S[key][a:].data_ptr():
                    continue
                for j in range(j0, j1):
                    p = layout.params[bucket.index[j]]
                    lo, hi = bucket.offsets[j] - a, bucket.offsets[j + 1] - a
                    dict.__setitem__(state[p], key, value[lo:hi].view(p.shape))
    _seat_all(optimizer, layout)
    _snapshot(optimizer)


def zero_grad(optimizer, set_to_none: bool) -> list | None:
    """Flat groups' part of ``zero_grad``: None where torch's zero_grad does all (no flat group,
    or ``set_to_none=True``), else the groups left for torch's zero_grad after the flat ones'
    gradient buffers were zeroed and their existing gradients put back as views."""
    if set_to_none or not any(g.get("flat") for g in optimizer.param_groups):
        return None
    rest = []
    with torch.no_grad():
        for group in optimizer.param_groups:
            if not group.get("flat"):
                rest.append(group)
                continue
            layout = _layout_of(optimizer, group)
            if layout is None or not layout.holds(group):
                try:
                    check_group(optimizer, group)
                except ValueError:
                    rest.append(group)  # the step will refuse it; zero as torch does
                    continue
                layout = lay_out(optimizer, group)
            grads = list(map(_GRAD, layout.params))
            if not all(map(_IS, grads, layout.gviews)):
                for p, g, v in zip(layout.params, grads, layout.gviews):
                    if g is not None and g is not v:
                        p.grad = v  # zeroed below, as torch zeroes the gradient it has
            for bucket in layout.buckets:
                bucket.G.zero_()
    return rest


def plain_state(state_dict: dict) -> None:
    """Turn flat groups' per-parameter state in a ``state_dict`` into plain dicts (torch's)."""
    state = state_dict["state"]
    for key, value in state.items():
        if isinstance(value, FlatState):
            state[key] = dict(value)


def after_load(optimizer) -> None:
    """After ``load_state_dict`` replaced the groups and the state: each flat group keeps its
    buffers (found by its parameters) and the loaded state is copied into them."""
    layouts = optimizer.__dict__.get(_KEY)
    if not layouts:
        return
    old = list(layouts.values())
    layouts.clear()
    for group in optimizer.param_groups:
        if not group.get("flat"):
            continue
        match = next((lay for lay in old if len(lay.params) == len(group["params"])
                      and all(map(_IS, lay.params, group["params"]))), None)
        if match is None:
            continue  # laid out at its next step
        match.group = group
        layouts[id(group)] = match
        if match.holds(group):
            _seat_all(optimizer, match)
