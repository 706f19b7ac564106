"""The Triton fused path (adaptim._fused._triton, the CUDA kernels) against the unfused path and
against the C kernel, for every option set of tests/cases.py.

Without a GPU the kernels run in Triton's interpreter (numpy) on CPU tensors: each test sets
``adaptim._fused._TRITON_ON_CPU`` (monkeypatch, undone afterwards), so no other test file's
behaviour changes and Triton's global ``TRITON_INTERPRET`` is never touched (the interpreted
kernels are a separate copy of the module). The interpreter's arithmetic is IEEE (numpy float32 /
float64, fma, correctly rounded division and square root), as is the C kernel's, so the two agree
bit for bit; against the unfused path (torch's CPU sqrt is not correctly rounded) the tolerances
are test_fused.py's: float32 1e-6, float64 1e-12. The tests marked ``cuda`` run the compiled
kernels and skip without a GPU.
"""

from __future__ import annotations

import copy
import sys
import warnings

import pytest
import torch

import adaptim
from adaptim import _fused
from adaptim.registry import REGISTRY
from cases import CASES as SHARED_CASES
from cases import (STEP_COUNT_CASES, check_grad_scale_in_the_kernel,
                   check_per_tensor_step_counts)

pytest.importorskip("triton")
from adaptim._fused import _triton  # noqa: E402  (needs triton)

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-6, atol=1e-6)}
EXACT = dict(rtol=0, atol=0)
STEPS = 3
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
HAS_C_KERNEL = _fused.kernel_available()

# the registry name of each class's plain entry (SGD -> "sgd", AdamW -> "adamw", ...)
PLAIN = {s.cls.__name__: n for n, s in reversed(list(REGISTRY.items())) if not s.settings}
CASES = [(PLAIN[cls], kw) for cls, sets in SHARED_CASES.items() for kw in sets]


def _case_id(case):
    name, kw = case
    return ",".join([name] + [f"{k}={v}" for k, v in kw.items()])


def _model(dtype, device="cpu"):
    """Mixed sizes: multi-chunk tensors whose sizes are not multiples of the interpreter's block
    (64), a 0-element tensor, a complex tensor, a scalar, a parameter that never gets a gradient."""
    g = torch.Generator().manual_seed(0)
    cplx = torch.complex128 if dtype == torch.float64 else torch.complex64
    params = [torch.randn(130, dtype=dtype, generator=g),
              torch.randn(13, 5, dtype=dtype, generator=g),
              torch.zeros(0, 3, dtype=dtype), torch.randn(5, 3, dtype=cplx, generator=g),
              torch.randn((), dtype=dtype, generator=g), torch.randn(4, dtype=dtype, generator=g)]
    return [p.to(device) for p in params]


def _run(name, kw, dtype, path, state_dtype=None, device="cpu", steps=STEPS):
    """Train the model ``steps`` steps in two parameter groups (the second with its own lr) along
    ``path``: "triton", "c" (the CPU C kernel) or "unfused"."""
    params = [p.requires_grad_() for p in _model(dtype, device)]
    extra = {} if state_dtype is None else dict(state_dtype=state_dtype)
    groups = [{"params": params[:3]}, {"params": params[3:], "lr": 0.5 * float(kw.get("lr", 1e-2))}]
    saved = _fused._TRITON_ON_CPU
    _fused._TRITON_ON_CPU = path == "triton"
    try:
        opt = adaptim.create(name, groups, fused=path != "unfused", **copy.deepcopy(kw), **extra)
        g = torch.Generator().manual_seed(1)
        for _ in range(steps):
            for p in params[:-1]:
                p.grad = torch.randn(p.shape, dtype=p.dtype, generator=g).to(device)
            opt.step()
    finally:
        _fused._TRITON_ON_CPU = saved
    return params, opt


def _assert_same(run_a, run_b, tol, state_tol=None):
    """Parameters, every state tensor and every step count of two runs."""
    (params_a, opt_a), (params_b, opt_b) = run_a, run_b
    for pa, pb in zip(params_a, params_b):
        torch.testing.assert_close(pa.detach(), pb.detach(), **tol)
        sa, sb = opt_a.state.get(pa, {}), opt_b.state.get(pb, {})
        assert sa.keys() == sb.keys()
        for key in sa:
            va, vb = sa[key], sb[key]
            if key == "step":
                assert float(va) == float(vb)
            else:
                assert va.dtype == vb.dtype
                torch.testing.assert_close(va, vb, **(state_tol or tol))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_triton_matches_unfused_and_c_kernel(case, dtype):
    name, kw = case
    before = _fused._debug.launches
    triton_run = _run(name, kw, dtype, "triton")
    assert _fused._debug.launches - before == 2 * STEPS, "one launch per group and step"
    _assert_same(triton_run, _run(name, kw, dtype, "unfused"), TOL[dtype])
    params, opt = triton_run
    assert float(opt.state.get(params[-1], {}).get("step", 0)) == 0  # no gradient: untouched
    assert float(opt.state.get(params[0], {}).get("step", STEPS)) == STEPS
    if HAS_C_KERNEL:
        _assert_same(triton_run, _run(name, kw, dtype, "c"), EXACT)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bf16_state(case):
    """bfloat16 state (fp32 arithmetic, rounded once per step, to nearest even): bit for bit the
    C kernel's; against the reference path's bf16 state (torch ops) the tolerances of
    test_fused.py (one bf16 ulp of state, parameters to float32 precision plus its effect)."""
    name, kw = case
    triton_run = _run(name, kw, torch.float32, "triton", state_dtype=torch.bfloat16)
    params, opt = triton_run
    for p in params[:2]:
        for key, v in opt.state[p].items():
            assert key == "step" or v.dtype == torch.bfloat16
    _assert_same(triton_run, _run(name, kw, torch.float32, "unfused", state_dtype=torch.bfloat16),
                 dict(rtol=1e-5, atol=1e-6), state_tol=dict(rtol=2**-7, atol=1e-6))
    if HAS_C_KERNEL:
        _assert_same(triton_run, _run(name, kw, torch.float32, "c", state_dtype=torch.bfloat16),
                     EXACT)


@pytest.fixture
def triton_on_cpu(monkeypatch):
    monkeypatch.setattr(_fused, "_TRITON_ON_CPU", True)


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam", "adagrad", "adadelta"])
def test_grad_scale_is_applied_in_the_kernel(name, triton_on_cpu):
    before = _fused._debug.launches
    check_grad_scale_in_the_kernel(name, maximize=True)
    assert _fused._debug.launches - before == 3


class _LaunchSpy:
    """Stands in for a kernel: records each launch's arguments (copies of its tensors: a
    cached plan rewrites its table in place at every step), then launches the kernel."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.calls.append((tuple(a.clone() if isinstance(a, torch.Tensor) else a
                                     for a in args), kwargs))
            return self.kernel[grid](*args, **kwargs)
        return launch


def test_no_recompilation_when_lr_changes_every_step(triton_on_cpu, monkeypatch):
    """Under an LR scheduler every launch has the same specialization: the same constexpr
    options and only tensors as runtime arguments (Triton specializes on ints and on constexprs,
    never on tensor contents); lr travels in the float64 table, where it does change. On a GPU,
    test_cuda_no_recompilation counts Triton's compiled-kernel cache itself."""
    module = _triton.kernels(interpret=True)
    spy = _LaunchSpy(module.rmsprop_kernel)
    monkeypatch.setattr(module, "rmsprop_kernel", spy)
    torch.manual_seed(0)
    pf = [torch.randn(40, dtype=torch.float64, requires_grad=True)]
    pu = [pf[0].detach().clone().requires_grad_()]
    opts = [adaptim.RMSprop(p, lr=0.01, momentum=0.9, fused=f)
            for p, f in ((pf, True), (pu, False))]
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1.0 / (1 + t)) for o in opts]
    for step in range(8):
        g = torch.cos(torch.arange(40, dtype=torch.float64) * (step + 1))
        pf[0].grad, pu[0].grad = g.clone(), g.clone()
        for o, s in zip(opts, scheds):
            o.step()
            s.step()
    assert len(spy.calls) == 8
    assert all(isinstance(a, torch.Tensor) for args, _ in spy.calls for a in args)
    assert len({tuple(sorted(kwargs.items())) for _, kwargs in spy.calls}) == 1
    lrs = [float(args[1][11]) for args, _ in spy.calls]  # hp[11] = lr
    assert lrs == pytest.approx([0.01 / (1 + t) for t in range(8)], rel=1e-15)
    torch.testing.assert_close(pf[0], pu[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout,aligned", [("sizes multiple of 8", True),
                                            ("one size not a multiple of 8", False),
                                            ("one pointer off 16 bytes", False)])
def test_vector_access_only_when_every_operand_allows_it(layout, aligned, triton_on_cpu,
                                                         monkeypatch):
    """ALIGNED (16-byte vector loads/stores on a GPU) is chosen only when every pointer is
    16-byte aligned and every element count a multiple of 8; either way the step is right."""
    module = _triton.kernels(interpret=True)
    spy = _LaunchSpy(module.adam_kernel)
    monkeypatch.setattr(module, "adam_kernel", spy)

    def make():
        torch.manual_seed(0)
        ps = [torch.randn(64), torch.randn(24, 8)]
        if layout == "one size not a multiple of 8":
            ps.append(torch.randn(65))
        elif layout == "one pointer off 16 bytes":
            ps.append(torch.randn(33)[1:])  # contiguous, 32 elements, 4 bytes past alignment
        return [p.requires_grad_() for p in ps]

    pf, pu = make(), make()
    assert all(p.is_contiguous() for p in pf)
    of, ou = adaptim.Adam(pf, lr=1e-2, fused=True), adaptim.Adam(pu, lr=1e-2, fused=False)
    for step in range(3):
        for a, b in zip(pf, pu):
            a.grad = torch.cos(torch.arange(a.numel(), dtype=a.dtype) + step).reshape(a.shape)
            b.grad = a.grad.clone()
        of.step()
        ou.step()
    assert [kwargs["ALIGNED"] for _, kwargs in spy.calls] == [aligned] * 3
    for a, b in zip(pf, pu):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


@pytest.mark.parametrize("name,kw", STEP_COUNT_CASES)
def test_tensors_with_different_step_counts(name, kw, triton_on_cpu):
    """Each tensor's own step gives its bias corrections / lr decay (the per-tensor scalars)."""
    check_per_tensor_step_counts(name, kw)


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_odd_tensors_take_the_reference_path_and_dtypes_get_one_launch_each(name, triton_on_cpu):
    """A strided parameter goes through the reference path, the contiguous ones through the
    kernel; float32 and float64 parameters in one group are two launches (one per dtype)."""
    def make():
        base = torch.arange(60.0, dtype=torch.float64).reshape(6, 10) / 60
        return [base.t().contiguous().t().requires_grad_(),                 # transposed layout
                torch.ones(70, dtype=torch.float64, requires_grad=True),
                torch.linspace(-1, 1, 90, dtype=torch.float32).requires_grad_()]
    pf, pu = make(), make()
    assert not pf[0].is_contiguous()
    opt_f = adaptim.create(name, pf, lr=1e-2, fused=True)
    opt_u = adaptim.create(name, pu, lr=1e-2, fused=False)
    before = _fused._debug.launches
    for step in range(3):
        for a, b in zip(pf, pu):
            g = torch.sin(torch.arange(a.numel(), dtype=a.dtype) + step).reshape(a.shape)
            a.grad, b.grad = g.clone(), g.clone()
        opt_f.step()
        opt_u.step()
    assert _fused._debug.launches - before == 2 * 3
    for a, b in zip(pf, pu):
        torch.testing.assert_close(a, b, **TOL[a.dtype])
        for key, v in opt_u.state[b].items():
            torch.testing.assert_close(opt_f.state[a][key], v, **TOL[a.dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("name", ["nesterov", "adagrad", "rmsprop", "adadelta", "adam"])
def test_half_precision_parameters_use_float32_arithmetic(name, dtype, triton_on_cpu):
    """float16/bfloat16 parameters and state: loaded to float32, one float32 step, rounded once.
    Each step equals the unfused float32 rule on float32 copies, rounded to the half type (to
    one half-precision ulp: the float32 results may differ by an ulp across a rounding tie)."""
    torch.manual_seed(0)
    p = torch.randn(150, dtype=torch.float32).to(dtype).requires_grad_()
    opt = adaptim.create(name, [p], lr=1e-2, fused=True)
    ulp = dict(rtol=2 * torch.finfo(dtype).eps, atol=1e-5)
    for step in range(3):
        p.grad = torch.randn(150).to(dtype)
        ref_p = p.detach().float().requires_grad_()
        ref_p.grad = p.grad.float()
        ref = adaptim.create(name, [ref_p], lr=1e-2, fused=False)
        if opt.state[p]:  # continue from the kernel's state, in float32
            ref.state[ref_p] = {k: v.float() if k != "step" else v.clone()
                                for k, v in opt.state[p].items()}
        opt.step()
        ref.step()
        torch.testing.assert_close(p.detach(), ref_p.detach().to(dtype), **ulp)
        for key, v in opt.state[p].items():
            if key != "step":
                assert v.dtype == dtype
                torch.testing.assert_close(v, ref.state[ref_p][key].to(dtype), **ulp)


def test_without_triton_falls_back_with_one_warning(monkeypatch):
    """Where triton does not import, fused=True warns once and takes the other paths (here the
    CPU C kernel or the reference path): same numbers as the unfused step."""
    monkeypatch.setattr(_fused, "_TRITON_ON_CPU", True)
    monkeypatch.setattr(_fused, "_triton_warned", False)
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton -> ImportError
    monkeypatch.delitem(sys.modules, "adaptim._fused._triton")
    monkeypatch.delattr(_fused, "_triton")
    torch.manual_seed(0)
    pf = torch.randn(30, dtype=torch.float64, requires_grad=True)
    pu = pf.detach().clone().requires_grad_()
    opt_f, opt_u = adaptim.Adam([pf], fused=True), adaptim.Adam([pu])
    before = _fused._debug.launches
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            g = torch.randn(30, dtype=torch.float64)
            pf.grad, pu.grad = g.clone(), g.clone()
            opt_f.step()
            opt_u.step()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "Triton" in messages[0]
    assert _fused._debug.launches == before
    torch.testing.assert_close(pf, pu, rtol=1e-12, atol=1e-12)


def test_chunk_table_is_cached_per_group_sizes():
    t1 = _triton._chunks((0, 130, 5), 64, torch.device("cpu"))
    assert t1.tolist() == [[1, 0, 130], [1, 64, 130], [1, 128, 130], [2, 0, 5]]
    assert _triton._chunks((0, 130, 5), 64, torch.device("cpu")) is t1
    assert _triton._chunks((), 64, torch.device("cpu")).shape == (0, 3)


# ---------------------------------------------------------------- on a GPU (compiled kernels)
@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cuda_matches_unfused(case, dtype):
    name, kw = case
    before = _fused._debug.launches
    fused = _run(name, kw, dtype, "fused-cuda", device="cuda")
    assert _fused._debug.launches - before == 2 * STEPS
    _assert_same(fused, _run(name, kw, dtype, "unfused", device="cuda"), TOL[dtype])


@CUDA
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cuda_matches_the_c_kernel(case):
    """The compiled kernels (no FMA contraction, IEEE division and sqrt) against the CPU C
    kernel on the same data, float32 and bfloat16 state: equal to float32 rounding."""
    if not HAS_C_KERNEL:
        pytest.skip("no C compiler for the CPU kernel")
    name, kw = case
    for state_dtype in (None, torch.bfloat16):
        gpu = _run(name, kw, torch.float32, "fused-cuda", state_dtype, device="cuda")
        cpu = _run(name, kw, torch.float32, "c", state_dtype)
        for pg, pc in zip(gpu[0], cpu[0]):
            torch.testing.assert_close(pg.detach().cpu(), pc.detach(), rtol=1e-6, atol=1e-6)


@CUDA
@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_cuda_matches_torch_fused_adam(name, cls):
    torch.manual_seed(0)
    p_a = torch.randn(10_000, device="cuda", requires_grad=True)
    p_t = p_a.detach().clone().requires_grad_()
    opt_a = adaptim.create(name, [p_a], lr=1e-3, weight_decay=0.01, fused=True)
    opt_t = cls([p_t], lr=1e-3, weight_decay=0.01, fused=True)
    before = _fused._debug.launches
    for _ in range(5):
        g = torch.randn(10_000, device="cuda")
        p_a.grad, p_t.grad = g.clone(), g.clone()
        opt_a.step()
        opt_t.step()
    assert _fused._debug.launches - before == 5
    torch.testing.assert_close(p_a, p_t, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(opt_a.state[p_a]["exp_avg_sq"], opt_t.state[p_t]["exp_avg_sq"],
                               rtol=1e-6, atol=1e-9)


@CUDA
@pytest.mark.parametrize("options, plan_type", [(dict(fused=True), "_LaunchPlan"),
                                                ({}, "_ReferencePlan")],
                         ids=["triton", "multi-tensor"])
def test_cuda_plans_hold_and_match_the_unplanned_step(options, plan_type):
    """On a GPU the Triton launch (fused=True) and the multi-tensor step (the default) are
    planned: new gradient tensors every step are adopted, a parameter's data swapped is seen,
    and the results equal the unplanned optimizer's bit for bit."""
    def run(planned):
        torch.manual_seed(0)
        params = [torch.randn(n, device="cuda", requires_grad=True) for n in (1000, 37, 4096)]
        opt = adaptim.Adam(params, lr=1e-2, **options)
        hits = _fused._debug.plan_hits
        for step in range(6):
            for i, p in enumerate(params):
                p.grad = torch.cos(torch.arange(p.numel(), device="cuda") * (i + 1) + step)
            if step == 3:
                params[1].data = params[1].data.clone()
            if not planned:
                _fused.forget_plans(opt)
            opt.step()
        return params, opt, _fused._debug.plan_hits - hits
    params_a, opt_a, hits = run(True)
    params_b, opt_b, _ = run(False)
    assert hits == 4  # steps 1, 2, 4, 5: planned at step 0, re-planned at step 3
    assert [type(p).__name__ for p in opt_a._adaptim_plans.values()] == [plan_type]
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)
        for key, value in opt_a.state[a].items():
            assert torch.equal(value, opt_b.state[b][key]), key


@CUDA
def test_cuda_no_recompilation():
    """Triton's own compiled-kernel cache holds one RMSprop kernel after 10 steps whose lr an
    LR scheduler changed every step."""
    kernel = _triton.kernels(interpret=False).rmsprop_kernel
    p = torch.randn(5000, device="cuda", requires_grad=True)
    opt = adaptim.RMSprop([p], lr=0.01, momentum=0.9, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + t))
    for _ in range(10):
        p.grad = torch.randn_like(p)
        opt.step()
        sched.step()
    torch.cuda.synchronize()
    compiled = sum(len(cache[0]) for cache in kernel.device_caches.values())
    assert compiled == 1


def test_table_layout_agrees_between_host_and_kernels():
    """HP_SLOTS agrees, and every rule's hyperparameter fields fit before the records."""
    from adaptim.algorithms import ALGORITHMS

    module = _triton.kernels(interpret=True)
    assert module.HP_SLOTS.value == _triton.HP_SLOTS
    for spec in ALGORITHMS.values():
        assert len(spec.hp_fields) <= _triton.HP_SLOTS
    group = adaptim.Adam([torch.zeros(1)], amsgrad=True).param_groups[0]
    assert len(adaptim.Adam.algorithm.hp(group, 1.0)) == len(ALGORITHMS["adam"].hp_fields)


def test_step_counters_are_incremented_in_their_own_dtype():
    """_advance_steps: float32 and float64 one-element CPU tensors in place (one numpy operation
    on their addresses), numbers from old checkpoints made tensors, mixed dtypes one by one."""
    f32 = [{"step": torch.tensor(float(k))} for k in (0, 1, 2**24)]  # 2**24 + 1 rounds in fp32
    f64 = [{"step": torch.tensor(float(k), dtype=torch.float64)} for k in (0, 2**24)]
    assert _triton._advance_steps(f32).tolist() == [1.0, 2.0, 2.0**24]
    assert [st["step"].item() for st in f32] == [1.0, 2.0, 2.0**24]
    assert _triton._advance_steps(f64).tolist() == [1.0, 2.0**24 + 1]
    assert f64[1]["step"].dtype == torch.float64 and f64[1]["step"].item() == 2.0**24 + 1
    shared = torch.tensor(7.0)
    assert _triton._advance_steps([{"step": shared}, {"step": shared}]).tolist() == [9.0, 9.0]
    old = [{"step": 3}, {"step": torch.tensor([5.0], dtype=torch.float64)}]
    assert _triton._advance_steps(old).tolist() == [4.0, 6.0]
    assert isinstance(old[0]["step"], torch.Tensor) and old[1]["step"].tolist() == [6.0]


def test_interpreter_switch_is_scoped(monkeypatch):
    """The interpreted copy is decorated with Triton's interpret setting on, restored after;
    with a triton that predates ``triton.knobs``, through TRITON_INTERPRET."""
    import os

    import triton

    before = triton.knobs.runtime.interpret
    with _triton._interpreting():
        assert triton.knobs.runtime.interpret
    assert triton.knobs.runtime.interpret == before
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delattr(triton, "knobs")
    with _triton._interpreting():
        assert os.environ["TRITON_INTERPRET"] == "1"
    assert "TRITON_INTERPRET" not in os.environ


# ---------------------------------------------------------------- compiled for real GPUs
# No GPU is needed to compile: Triton lowers a kernel to PTX and, with the ptxas it bundles, to a
# cubin for any CUDA architecture. Each rule must build for Ampere (sm_80) and Hopper (sm_90)
# with the launch options of _triton.py, and its PTX must say what the docstrings promise:
# IEEE division and square root (no approximate ones), no multiply or add the assembler could
# contract into an FMA (only ".rn" forms, which ptxas never fuses; FMAs only where the source
# writes tl.fma), and 16-byte vector memory access exactly when the launch says ALIGNED.
AOT_VARIANTS = [  # (rule, param kind, state kind, flags); kinds: 0 f64, 1 f32, 2 f16, 3 bf16
    ("sgd", 1, 1, dict(ALIGNED=True, HAS_WD=True, HAS_MOM=True, NESTEROV=True)),
    ("sgd", 2, 2, dict(ALIGNED=False, HAS_WD=True, HAS_MOM=True, NESTEROV=False)),
    ("adagrad", 1, 1, dict(ALIGNED=False, HAS_WD=True, EPS_IN_SQRT=True)),
    ("rmsprop", 1, 3, dict(ALIGNED=True, HAS_WD=True, EPS_IN_SQRT=False, CENTERED=True,
                           HAS_MOM=True, LR_IN_MOM=True)),
    ("rmsprop", 1, 1, dict(ALIGNED=True, HAS_WD=False, EPS_IN_SQRT=False, CENTERED=False,
                           HAS_MOM=False, LR_IN_MOM=False)),
    ("adadelta", 0, 0, dict(ALIGNED=True, HAS_WD=True)),
    ("adam", 1, 1, dict(ALIGNED=True, HAS_WD=False, DECAY_PARAM=True, AMSGRAD=True, EPS_FORM=0)),
    ("adam", 3, 3, dict(ALIGNED=False, HAS_WD=True, DECAY_PARAM=False, AMSGRAD=False,
                        EPS_FORM=2)),
    ("adam", 0, 0, dict(ALIGNED=False, HAS_WD=False, DECAY_PARAM=False, AMSGRAD=False,
                        EPS_FORM=1)),
]


@pytest.mark.parametrize("arch", [80, 90], ids=["sm80", "sm90"])
@pytest.mark.parametrize("rule,pk,sk,flags", AOT_VARIANTS,
                         ids=[f"{r}-p{p}-s{s}" for r, p, s, _ in AOT_VARIANTS])
def test_kernels_compile_for_gpus_with_ieee_arithmetic(rule, pk, sk, flags, arch):
    import re

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(_triton.kernels(False), f"{rule}_kernel")
    signature = {p.name: "constexpr" if p.is_constexpr else
                 "*fp64" if p.name == "table_f64" else "*i64" for p in fn.params}
    constants = dict(PK=pk, SK=sk, BLOCK=_triton.BLOCK, **flags)
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constants),
                              target=GPUTarget("cuda", arch, 32),
                              options=dict(num_warps=_triton.NUM_WARPS, enable_fp_fusion=False))
    assert compiled.asm["cubin"]  # ptxas accepted the PTX for this architecture
    ptx = compiled.asm["ptx"]
    assert not re.search(r"\b(sqrt|div|rcp)\.(approx|full)\b", ptx)
    fp = "f64" if pk == 0 else "f32"
    assert not re.search(rf"\b(mul|add|sub)\.{fp}\b", ptx), "a contractible op"
    assert re.search(rf"\bfma\.rn\.{fp}\b", ptx)  # the FMAs the rule writes
    if rule != "sgd":
        assert re.search(rf"\bsqrt\.rn\.{fp}\b", ptx) and re.search(rf"\bdiv\.rn\.{fp}\b", ptx)
    # ALIGNED: the tensors are read and written in 16-byte vectors (v4 of 32 bits, v2 of 64);
    # otherwise element by element (the compiler cannot prove alignment)
    vector = re.findall(r"\b(?:ld|st)\.global(?:\.[\w:]+)*\.v[24]\.b(?:32|64)\b", ptx)
    assert bool(vector) == flags["ALIGNED"]
