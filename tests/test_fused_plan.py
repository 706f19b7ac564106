"""Cached group plans: every way a plan can go stale is detected, and what does not make it stale
keeps it, on each path that plans (the ``path`` fixture): the C kernel's call
(adaptim._fused._Plan), the Triton launch (adaptim._fused._triton._LaunchPlan, run here by
Triton's interpreter on CPU tensors) and the multi-tensor reference step
(adaptim._fused._ReferencePlan: ``foreach=True``, the CUDA default).

Each scenario runs the same model and optimizer twice: once with plans (the default) and once
with every plan dropped before each step, so each step re-gathers the group tensor by tensor
(the same kernel, so the same bits). After a few planned steps both sides undergo the same
change; the test asserts whether the planned side's next step ran its cached plan (a "hit") or
saw the change and re-planned, then that both sides agree bit for bit over further steps. A
missed change would show as a difference: the kernel would have written to the old memory.
"""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch

from torch.multiprocessing.reductions import StorageWeakRef

import adaptim
from adaptim import _fused
from adaptim._fused import _plan_check

pytestmark = pytest.mark.skipif(not _fused.kernel_available(), reason="no C compiler")


@pytest.fixture(autouse=True, params=["native", "python"])
def checker(request, monkeypatch):
    """Every test runs with each way of checking a plan: the C++ check (plan_check.cpp), and
    the Python check that runs where it cannot be built (or until its first build ends)."""
    if request.param == "native":
        if _plan_check.load() is None:
            pytest.fail(f"the C++ plan check did not build: {_plan_check.failed()}")
        monkeypatch.setattr(_plan_check, "disabled", False)
    else:
        monkeypatch.setattr(_plan_check, "disabled", True)
    return request.param


# path -> the optimizer options that take it, and the plan class it caches
PATHS = {"c": ({}, "_Plan"), "triton": (dict(fused=True), "_LaunchPlan"),
         "foreach": (dict(foreach=True), "_ReferencePlan")}


@pytest.fixture(params=list(PATHS))
def path(request, monkeypatch):
    """The path a test's optimizers take; Triton's runs in its interpreter on CPU tensors."""
    if request.param == "triton":
        pytest.importorskip("triton")
        monkeypatch.setattr(_fused, "_TRITON_ON_CPU", True)
    return request.param


def _plan_type(opt) -> str:
    (plan,) = opt._adaptim_plans.values()
    return type(plan).__name__


SIZES = [(7, 5), (33,), (4, 4, 2)]
STATEFUL = ["momentum", "adam", "rmsprop", "adagrad", "adadelta"]


def _params(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in SIZES]


def _fill_grads(params, step, create=True):
    """Deterministic gradients, written in place where a gradient exists (a plan keeps them);
    a parameter without one gets one only with ``create``."""
    for i, p in enumerate(params):
        value = torch.sin(torch.arange(p.numel(), dtype=p.dtype) * (i + 1) + step).reshape(p.shape)
        if p.grad is None:
            if create:
                p.grad = value
        else:
            p.grad.copy_(value)


class Side:
    def __init__(self, name, planned, path="c", **kw):
        self.params = _params()
        self.module = torch.nn.ParameterList(self.params)
        assert all(a is b for a, b in zip(self.module, self.params))
        self.opt = adaptim.create(name, self.params, lr=1e-2, **PATHS[path][0], **kw)
        self.planned = planned
        self.step_no = 0

    def step(self, fill=True, create=True):
        if fill:
            _fill_grads(self.params, self.step_no, create)
        self.step_no += 1
        if not self.planned:
            _fused.forget_plans(self.opt)
        hits = _fused._debug.plan_hits
        self.opt.step()
        return _fused._debug.plan_hits - hits


def _assert_same(a: Side, b: Side):
    for p, q in zip(a.opt.param_groups, b.opt.param_groups):
        for x, y in zip(p["params"], q["params"]):
            assert x.dtype == y.dtype and torch.equal(x, y)
            sx, sy = a.opt.state.get(x, {}), b.opt.state.get(y, {})
            assert sx.keys() == sy.keys()
            for k in sx:
                assert torch.equal(torch.as_tensor(sx[k]), torch.as_tensor(sy[k])), k


def _scenario(name, change, hit: bool, after=None, path="c", **kw):
    sides = [Side(name, planned=True, path=path, **kw), Side(name, planned=False, path=path, **kw)]
    for _ in range(3):
        for s in sides:
            s.step()
    assert sides[0].step() == 1, "the plan did not run in the steady state"
    assert _plan_type(sides[0].opt) == PATHS[path][1]
    sides[1].step()
    for s in sides:
        change(s)
    fill = after is None
    hits = sides[0].step(fill=fill, create=False)
    sides[1].step(fill=fill, create=False)
    assert hits == (1 if hit else 0), "the change was " + ("not seen" if not hit else
                                                           "taken for staleness")
    _assert_same(*sides)
    for _ in range(2):
        for s in sides:
            if after is not None:
                after(s)
            s.step()
    _assert_same(*sides)
    return sides


def _swap_data(s):
    s.params[1].data = s.params[1].data.clone().mul_(0.5)


def _to_float64(s):
    s.module.to(torch.float64)


def _to_float64_with_state(s):
    """``_to_float64`` for the multi-tensor rule, which needs state of the parameter's dtype (as
    torch.optim's foreach rules do): the state is cast too."""
    s.module.to(torch.float64)
    for st in s.opt.state.values():
        for key, value in st.items():
            if key != "step" and torch.is_tensor(value):
                st[key] = value.double()


def _load_earlier(s):
    s.opt.load_state_dict(s.saved)


def _drop_one_grad(s):
    s.params[0].grad = None


def _swap_grad_data(s):
    s.params[2].grad.data = s.params[2].grad.data.clone()


def _replace_state_tensor(s):
    st = s.opt.state[s.params[1]]
    key = next(k for k, v in st.items() if k != "step" and torch.is_tensor(v))
    st[key] = st[key].clone().mul_(0.5)


def _replace_state_dict(s):
    p = s.params[2]
    s.opt.state[p] = {k: v.clone() for k, v in s.opt.state[p].items()}


def _replace_step(s):
    st = s.opt.state[s.params[0]]
    st["step"] = st["step"].clone()


def _new_group(s):
    extra = [torch.full((6,), float(i), requires_grad=True) for i in range(3)]
    for e in extra:
        e.grad = torch.full_like(e, 0.25)
    s.params.extend(extra)
    s.opt.add_param_group({"params": extra, "lr": 1e-3})


def _unfuse(s):
    s.opt.param_groups[0]["fused"] = False


def _state_dtype_set(s):
    s.opt.param_groups[0]["state_dtype"] = torch.float32


@pytest.mark.parametrize("name", ["sgd"] + STATEFUL)
@pytest.mark.parametrize("change", [_swap_data, _to_float64, _drop_one_grad, _swap_grad_data,
                                    _unfuse, _state_dtype_set],
                         ids=lambda f: f.__name__.strip("_"))
def test_change_is_detected(name, change, checker, path):
    # The C++ check reads every gradient's address at each step, so a gradient whose data was
    # swapped is taken as it is (like a new gradient), without planning again.
    if path == "foreach" and change is _to_float64:
        change = _to_float64_with_state
    _scenario(name, change, hit=checker == "native" and change is _swap_grad_data, path=path)


@pytest.mark.parametrize("name, change", [
    (name, change) for name in STATEFUL
    for change in (_replace_state_tensor, _replace_state_dict, _replace_step)
    if not (name == "momentum" and change is _replace_step)],  # SGD keeps no step count
    ids=lambda x: x if isinstance(x, str) else x.__name__.strip("_"))
def test_replaced_state_is_detected(name, change, path):
    _scenario(name, change, hit=False, path=path)


@pytest.mark.parametrize("name", STATEFUL)
def test_load_state_dict_is_detected(name, path):
    sides = [Side(name, planned=True, path=path), Side(name, planned=False, path=path)]
    for s in sides:
        s.step()
        s.saved = s.opt.state_dict()
        s.step()
        s.step()
    hits = sides[0].step()
    sides[1].step()
    assert hits == 1
    for s in sides:
        _load_earlier(s)
    assert sides[0].step() == 0
    sides[1].step()
    _assert_same(*sides)
    assert sides[0].step() == 1  # planned again
    sides[1].step()
    _assert_same(*sides)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_add_param_group_plans_the_new_group(name, path):
    builds = _fused._debug.plan_builds
    a, _ = _scenario(name, _new_group, hit=True, path=path)  # the first group's plan holds
    assert _fused._debug.plan_builds - builds >= 2 + 1  # each side's first group, then the new
    assert len(a.opt._adaptim_plans) == 2


def test_sgd_momentum_turned_on_is_detected(path):
    def momentum_on(s):
        s.opt.param_groups[0]["momentum"] = 0.9
    _scenario("sgd", momentum_on, hit=False, path=path)


@pytest.mark.parametrize("name", ["sgd"] + STATEFUL)
def test_new_gradients_are_adopted(name, path):
    """zero_grad() (set_to_none) then a new gradient per parameter, every step: the plan takes
    the new tensors' addresses without re-planning."""
    def new_grads(s):
        s.opt.zero_grad()
        _fill_grads(s.params, 100 + s.step_no)
    _scenario(name, new_grads, hit=True, after=new_grads, path=path)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_zero_grad_in_place_keeps_the_plan(name, path):
    def zero(s):
        s.opt.zero_grad(set_to_none=False)
    _scenario(name, zero, hit=True, after=zero, path=path)


def test_param_without_gradient_is_planned_and_untouched(path):
    """A parameter that never gets a gradient: the group is planned without it, it stays as it
    was and has no state; when it gets a gradient the plan is rebuilt."""
    params = _params()
    frozen = params[1].detach().clone()
    opt = adaptim.Adam(params, lr=1e-2, **PATHS[path][0])
    active = [params[0], params[2]]
    for step in range(4):
        _fill_grads(active, step)
        hits = _fused._debug.plan_hits
        opt.step()
        assert _fused._debug.plan_hits - hits == (1 if step >= 1 else 0)
    assert _plan_type(opt) == PATHS[path][1]
    assert torch.equal(params[1], frozen) and params[1] not in opt.state
    _fill_grads(params, 9)
    hits = _fused._debug.plan_hits
    opt.step()
    assert _fused._debug.plan_hits == hits and not torch.equal(params[1], frozen)
    assert float(opt.state[params[1]]["step"]) == 1


def _planned_adam(path="c"):
    params = _params()
    opt = adaptim.Adam(params, lr=1e-2, **PATHS[path][0])
    for step in range(3):
        _fill_grads(params, step)
        opt.step()
    assert opt._adaptim_plans
    return params, opt


def test_plan_keeps_no_gradient_memory_after_zero_grad(path):
    params, opt = _planned_adam(path)
    grad = weakref.ref(params[0].grad)
    memory = [StorageWeakRef(p.grad.untyped_storage()) for p in params]
    opt.zero_grad()
    gc.collect()
    assert opt._adaptim_plans  # the plan lives on (it adopts the next gradients)
    assert grad() is None, "the plan kept a gradient alive after zero_grad()"
    assert all(m.expired() for m in memory), "the plan kept gradient memory after zero_grad()"


def test_load_state_dict_releases_the_replaced_state(path):
    params, opt = _planned_adam(path)
    exp_avg = weakref.ref(opt.state[params[0]]["exp_avg"])
    saved = copy.deepcopy(opt.state_dict())  # state_dict() holds the live tensors
    opt.load_state_dict(saved)
    gc.collect()
    assert exp_avg() is None, "the plan kept replaced state alive after load_state_dict"


def test_plan_is_not_pickled_or_saved():
    import pickle
    params = _params()
    opt = adaptim.RMSprop(params, lr=1e-2)
    for step in range(3):
        _fill_grads(params, step)
        opt.step()
    assert opt._adaptim_plans
    clone = pickle.loads(pickle.dumps(opt))
    assert "_adaptim_plans" not in clone.__dict__
    # a saved group holds the group's keys and the skip counter's copy, nothing of the plan
    assert all(set(g) == set(opt.param_groups[0]) | {"adaptim_skipped_steps"}
               for g in opt.state_dict()["param_groups"])


@pytest.mark.parametrize("name, kw, tensors, kernel", [
    ("sgd", {}, 1, False), ("sgd", {}, 2, False), ("sgd", {}, 3, True),
    ("sgd", dict(weight_decay=0.1), 1, True), ("momentum", {}, 1, True), ("adam", {}, 1, True),
    ("rmsprop", {}, 1, True)])
def test_default_picks_the_cheaper_path_for_tiny_groups(name, kw, tensors, kernel):
    """fused=None leaves a plain-SGD group of one or two tensors to the reference path (one
    torch op per tensor costs less than a kernel call) and gives the kernel everything else."""
    def run(fused):
        params = _params()[:tensors]
        opt = adaptim.create(name, params, lr=1e-2, fused=fused, **kw)
        calls = _fused._debug.calls
        for step in range(3):
            _fill_grads(params, step)
            opt.step()
        return params, _fused._debug.calls - calls
    params, calls = run(None)
    assert (calls == 3) if kernel else (calls == 0)
    if not kernel:
        reference, _ = run(False)
        assert all(torch.equal(a, b) for a, b in zip(params, reference))


@pytest.mark.parametrize("path", ["c", "triton"], indirect=True)  # (foreach: no kernel)
@pytest.mark.parametrize("change", [_swap_data, _replace_state_tensor, _drop_one_grad],
                         ids=lambda f: f.__name__.strip("_"))
def test_change_is_detected_with_bfloat16_state(change, path):
    _scenario("adam", change, hit=False, path=path, state_dtype=torch.bfloat16)


@pytest.mark.parametrize("groups", [1, 3], ids=["one-group", "three-groups"])
def test_replaced_state_dict_is_detected_either_way(groups, path):
    """A group holding most of optimizer.state compares the whole mapping; one of several
    looks its parameters up: both see a parameter's state dict replaced."""
    def build():
        params = [torch.nn.Parameter(torch.full((5,), float(i))) for i in range(3)]
        opt = adaptim.Adam([{"params": params}] if groups == 1 else
                           [{"params": [p]} for p in params], lr=1e-2, **PATHS[path][0])
        return params, opt
    (pa, a), (pb, b) = build(), build()
    for step in range(3):
        for params, opt in ((pa, a), (pb, b)):
            _fill_grads(params, step)
            if opt is b:
                _fused.forget_plans(opt)
            opt.step()
    for params, opt in ((pa, a), (pb, b)):
        opt.state[params[0]] = {k: v.clone() for k, v in opt.state[params[0]].items()}
    hits = _fused._debug.plan_hits
    for params, opt in ((pa, a), (pb, b)):
        _fill_grads(params, 3)
        if opt is b:
            _fused.forget_plans(opt)
        opt.step()
    assert _fused._debug.plan_hits - hits == groups - 1  # only the untouched groups' plans ran
    for x, y in zip(pa, pb):
        assert torch.equal(x, y)
        assert torch.equal(a.state[x]["exp_avg"], b.state[y]["exp_avg"])


# ---------------------------------------------------------------- what each check reads afresh
def _transpose_param(s):
    """Same memory, same address, another layout (and a gradient of the new shape): only a
    check of the layout sees it."""
    p = s.params[0]
    p.data = p.data.t()
    p.grad = p.grad.t().contiguous()


def _strided_grad(s):
    """A gradient with the address of a contiguous one but every other element of it."""
    g = s.params[1].grad
    wide = torch.zeros(2 * g.numel(), dtype=g.dtype)
    wide[::2] = g.reshape(-1)
    s.params[1].grad = wide[::2].reshape(g.shape)


def _reorder_params(s):
    s.opt.param_groups[0]["params"].reverse()
    s.params.reverse()


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("change", [_strided_grad, _reorder_params],
                         ids=lambda f: f.__name__.strip("_"))
def test_layout_changes_are_detected(name, change, path):
    _scenario(name, change, hit=False, path=path)


@pytest.mark.parametrize("checker", ["native"], indirect=True)
def test_cpp_check_sees_a_parameter_laid_out_anew_at_the_same_address(checker, path):
    # (the Python check compares parameters' addresses only; SGD: state of the old shape would
    # not fit the new one)
    _scenario("sgd", _transpose_param, hit=False, path=path)


@pytest.mark.parametrize("checker", ["native"], indirect=True)
def test_cpp_check_tells_devices_apart(checker):
    """The C++ check compares each tensor's device (type and index) with the plan's: a Triton
    plan's GPU, a C kernel plan's CPU."""
    lib = _plan_check.load()
    types = (torch.Tensor, torch.nn.Parameter)
    cpu, meta = torch.zeros(3), torch.zeros(3, device="meta")
    codes = {lib.adaptim_plan_device(*types, t) for t in (cpu, torch.nn.Parameter(cpu))}
    assert len(codes) == 1 and -1 not in codes
    assert lib.adaptim_plan_device(*types, meta) not in codes | {-1}
    assert lib.adaptim_plan_device(*types, object()) == -1


def test_plan_moves_to_the_cpp_check_once_it_is_loaded(monkeypatch, path):
    """A plan built while the C++ check was not loaded (its first build runs in the background)
    is planned again once it is, then runs with it."""
    if _plan_check.load() is None:
        pytest.fail(f"the C++ plan check did not build: {_plan_check.failed()}")
    monkeypatch.setattr(_plan_check, "disabled", True)
    params, opt = _planned_adam(path)
    (plan,) = opt._adaptim_plans.values()
    assert plan.native is None
    monkeypatch.setattr(_plan_check, "disabled", False)
    builds, hits = _fused._debug.plan_builds, _fused._debug.plan_hits
    _fill_grads(params, 7)
    opt.step()
    assert (_fused._debug.plan_builds - builds, _fused._debug.plan_hits - hits) == (1, 0)
    (plan,) = opt._adaptim_plans.values()
    assert plan.native is not None
    opt.step()
    assert _fused._debug.plan_hits - hits == 1


def test_without_a_cpp_compiler_plans_are_checked_in_python(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAPTIM_CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("ADAPTIM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_plan_check, "disabled", False)
    _plan_check.reset()
    try:
        assert _plan_check.load() is None and "no-such-compiler" in _plan_check.failed()
        assert _plan_check.get() is None
        reference = Side("adam", planned=False)
        planned = Side("adam", planned=True)
        for _ in range(4):
            reference.step()
            planned.step()
        (plan,) = planned.opt._adaptim_plans.values()
        assert plan.native is None
        _assert_same(planned, reference)
    finally:
        monkeypatch.undo()
        _plan_check.reset()
    assert _plan_check.load() is not None  # the cached library again


def test_small_groups_do_not_start_the_cpp_build(monkeypatch, tmp_path):
    """Where the C++ check is not cached, only a plan of BUILD_FROM tensors or more starts its
    build (in a background thread); a small model keeps the Python check, a few µs per step."""
    monkeypatch.setenv("ADAPTIM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_plan_check, "disabled", False)
    started = []
    idle_thread = type("T", (), {"start": lambda self: None})
    monkeypatch.setattr(_plan_check.threading, "Thread",
                        lambda **kw: started.append(kw) or idle_thread())
    _plan_check.reset()
    try:
        assert _plan_check.get(_plan_check.BUILD_FROM - 1) is None and not started
        _planned_adam()  # three tensors
        assert not started
        assert _plan_check.get(_plan_check.BUILD_FROM) is None and len(started) == 1
        assert _plan_check.get(_plan_check.BUILD_FROM) is None and len(started) == 1  # once
    finally:
        monkeypatch.undo()
        _plan_check.reset()
    assert _plan_check.load() is not None  # the cached library again


@pytest.mark.slow  # two processes importing torch
@pytest.mark.parametrize("checker", ["native"], indirect=True)
def test_processes_needing_the_cpp_check_build_it_once(checker, tmp_path):
    """Two processes that both need the C++ check in an empty cache: one compiles, the other
    waits for it and loads the result (a machine-wide lock around the build). The compiler is
    a stand-in that takes a second and copies the library this process loaded."""
    import os
    import subprocess
    import sys
    log = tmp_path / "compiles"
    cxx = tmp_path / "cxx"
    cxx.write_text(f"""#!/bin/sh
if [ "$1" = --version ]; then echo stand-in; exit 0; fi
echo compile >> {log}
sleep 1
cp {_plan_check.library_path()} "$3"
""")
    cxx.chmod(0o755)
    cache = tmp_path / "cache"
    code = ("from adaptim._fused import _plan_check as c; "
            "print(c.load() is not None, c.stats['builds'], c.failed())")
    env = dict(os.environ, ADAPTIM_CACHE_DIR=str(cache), ADAPTIM_CXX=str(cxx))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert all(o[0] == "True" for o in outs), outs
    assert sorted(o[1] for o in outs) == ["0", "1"], outs  # exactly one compiled
    assert log.read_text().split() == ["compile"]
    assert [f.suffix for f in cache.iterdir() if f.suffix != ".lock"] == [".so"]  # no leftovers
