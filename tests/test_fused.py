"""Fused steps (adaptim._fused) against the unfused path, for every optimizer and option set.

The C kernel mirrors the functional rules operation by operation. Tolerances: float64 1e-12
(relative and absolute; values are O(1)). float32 1e-6 relative and absolute: torch 2.13's CPU
``sqrt`` is not correctly rounded (about 17% of float32 results differ by one ulp from IEEE
sqrt, which the kernel uses), so each step may differ by an ulp or two of the update.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch

import adaptim
from adaptim import _fused
from adaptim._fused import _ckernel
from adaptim.registry import REGISTRY
from cases import CASES as SHARED_CASES
from cases import (STEP_COUNT_CASES, check_grad_scale_in_the_kernel,
                   check_per_tensor_step_counts)

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-6, atol=1e-6)}

# Option sets per class: the shared table (tests/cases.py, also used for the NumPy-reference and
# torch.optim parity tests) plus tensor learning rates, which the fused path reads as numbers.
OPTIONS: dict[str, list[dict]] = {name: list(sets) for name, sets in SHARED_CASES.items()}
OPTIONS["SGD"].append(dict(lr=torch.tensor(0.1), momentum=0.9))
OPTIONS["RMSprop"].append(dict(lr=torch.tensor(1e-3), momentum=0.9))
OPTIONS["Adam"].append(dict(lr=torch.tensor(1e-2)))
# E[g²] − E[g]² cancels to ~0 (α = 0): both paths clamp the rounding residue at 0 (torch: NaN)
OPTIONS["RMSprop"].append(dict(lr=1e-3, alpha=0.0, centered=True, eps=1e-3))

# Every registry entry with its own settings, then every option set of its class.
CASES = [(name, {}) for name in REGISTRY] + [
    (next(n for n, s in REGISTRY.items() if s.cls.__name__ == cls and not s.settings), kw)
    for cls, sets in OPTIONS.items() for kw in sets]


def _case_id(case):
    name, kw = case
    return ",".join([name] + [f"{k}={v}" for k, v in kw.items()])


@pytest.fixture(scope="module", autouse=True)
def kernel():
    if not _fused.kernel_available():
        pytest.skip(f"no working C compiler for the fused kernels ({_ckernel.compiler()!r})")
    return _ckernel.load()


def _model(dtype, seed=0):
    """Parameters covering the awkward cases: a matrix, a vector, a 0-element tensor, a complex
    tensor, a scalar, and one parameter that never gets a gradient."""
    g = torch.Generator().manual_seed(seed)
    cplx = torch.complex128 if dtype == torch.float64 else torch.complex64
    return [torch.randn(17, 9, dtype=dtype, generator=g),
            torch.randn(300, dtype=dtype, generator=g), torch.zeros(0, 4, dtype=dtype),
            torch.randn(5, 3, dtype=cplx, generator=g),
            torch.randn((), dtype=dtype, generator=g), torch.randn(4, dtype=dtype, generator=g)]


def _groups(params, kw):
    # Two groups (the second with its own lr) to show groups are stepped separately; the last
    # parameter never has a gradient.
    lr2 = 0.5 * float(kw.get("lr", 1e-2))
    return [{"params": params[:3]}, {"params": params[3:], "lr": lr2}]


def _run(name, kw, dtype, fused, steps=4, state_dtype=None, grad_scale=None):
    params = [p.requires_grad_() for p in _model(dtype)]
    extra = dict(fused=fused)
    if state_dtype is not None:
        extra["state_dtype"] = state_dtype
    opt = adaptim.create(name, _groups(params, kw), **copy.deepcopy(kw), **extra)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params[:-1]:
            p.grad = torch.randn(p.shape, dtype=p.dtype, generator=g)
        opt.step()
    return params, opt


def _assert_same(params_a, opt_a, params_b, opt_b, tol):
    for pa, pb in zip(params_a, params_b):
        torch.testing.assert_close(pa.detach(), pb.detach(), **tol)
    for pa, pb in zip(params_a, params_b):
        sa, sb = opt_a.state.get(pa, {}), opt_b.state.get(pb, {})
        assert sa.keys() == sb.keys()
        for key in sa:
            va, vb = sa[key], sb[key]
            if key == "step":
                assert float(va) == float(vb)
            else:
                torch.testing.assert_close(va.to(vb.dtype), vb, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_fused_matches_unfused(case, dtype):
    name, kw = case
    calls = _fused._debug.calls
    params_f, opt_f = _run(name, kw, dtype, fused=True)
    assert _fused._debug.calls > calls, "the C kernel was not used"
    params_u, opt_u = _run(name, kw, dtype, fused=False)
    _assert_same(params_f, opt_f, params_u, opt_u, TOL[dtype])
    # the parameter without a gradient is untouched and its state (Adagrad's is eager) unstepped
    assert torch.equal(params_f[-1], _model(dtype)[-1])
    assert float(opt_f.state.get(params_f[-1], {}).get("step", 0)) == 0


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam"])
def test_grad_scale_is_applied_on_the_fly(name):
    calls = _fused._debug.calls
    check_grad_scale_in_the_kernel(name)
    assert _fused._debug.calls - calls == 3


@pytest.mark.parametrize("name", ["nesterov", "rmsprop", "adadelta", "adam"])
def test_non_contiguous_parameters(name):
    """Strided views go through the reference path; contiguous ones in the same group through
    the kernel; both agree with the unfused step."""
    def make():
        base = torch.arange(60.0, dtype=torch.float64).reshape(6, 10) / 60
        return [base.t().contiguous().t().requires_grad_(),    # transposed layout
                base.clone()[:, ::3].detach().requires_grad_(),          # strided slice
                torch.ones(7, dtype=torch.float64, requires_grad=True)]
    pf, pu = make(), make()
    assert not pf[0].is_contiguous() and not pf[1].is_contiguous()
    opt_f = adaptim.create(name, pf, fused=True)
    opt_u = adaptim.create(name, pu, fused=False)
    calls = _fused._debug.calls
    for step in range(3):
        for a, b in zip(pf, pu):
            g = torch.sin(torch.arange(a.numel(), dtype=torch.float64) + step).reshape(a.shape)
            a.grad, b.grad = g.clone(), g.clone()
        opt_f.step()
        opt_u.step()
    assert _fused._debug.calls > calls
    for a, b in zip(pf, pu):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.fixture
def fresh_kernel(tmp_path, monkeypatch):
    """An empty kernel cache and a process that has not loaded the kernels yet."""
    monkeypatch.setenv("ADAPTIM_CACHE_DIR", str(tmp_path))
    _ckernel.reset()
    monkeypatch.setattr(_fused, "_warned", False)
    yield tmp_path
    monkeypatch.undo()
    _ckernel.reset()


def test_no_rebuild_when_lr_changes_every_step(fresh_kernel):
    """A scheduler changes lr every step: the kernels are built and loaded once, and the fused
    steps still equal the unfused ones; a later process only loads the cached library."""
    torch.manual_seed(0)
    pf = [torch.randn(40, dtype=torch.float64, requires_grad=True)]
    pu = [pf[0].detach().clone().requires_grad_()]
    opts = [adaptim.RMSprop(p, lr=0.01, momentum=0.9, fused=f)
            for p, f in ((pf, True), (pu, False))]
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1.0 / (1 + t)) for o in opts]
    lrs = set()
    for step in range(20):
        g = torch.cos(torch.arange(40, dtype=torch.float64) * (step + 1))
        pf[0].grad, pu[0].grad = g.clone(), g.clone()
        for o, s in zip(opts, scheds):
            o.step()
            s.step()
        lrs.add(opts[0].param_groups[0]["lr"])
    assert len(lrs) == 20
    assert _ckernel.stats["builds"] == 1 and _ckernel.stats["loads"] == 1
    torch.testing.assert_close(pf[0], pu[0], rtol=1e-12, atol=1e-12)
    assert len(list(fresh_kernel.glob("adaptim_kernels_*.so"))) == 1
    _ckernel.reset()  # as a new process would: the cached library is loaded, not rebuilt
    opts[0].step()
    assert _ckernel.stats["builds"] == 0 and _ckernel.stats["loads"] == 1


def test_without_a_compiler_falls_back_with_one_warning(fresh_kernel, monkeypatch):
    monkeypatch.setenv("ADAPTIM_CC", str(fresh_kernel / "no-such-compiler"))
    torch.manual_seed(0)
    pf = torch.randn(30, requires_grad=True)
    pu = pf.detach().clone().requires_grad_()
    opt_f = adaptim.Adam([pf], fused=True)
    opt_u = adaptim.Adam([pu])
    calls = _fused._debug.calls
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            g = torch.randn(30)
            pf.grad, pu.grad = g.clone(), g.clone()
            opt_f.step()
            opt_u.step()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "fall" in messages[0] and "no-such-compiler" in messages[0]
    assert _fused._debug.calls == calls
    assert torch.equal(pf, pu)  # the fallback is the unfused rule itself


def test_an_unusable_cache_dir_builds_in_a_private_temp_dir(fresh_kernel, monkeypatch):
    blocker = fresh_kernel / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("ADAPTIM_CACHE_DIR", str(blocker / "cache"))  # mkdir fails, even as root
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.ones(3)
    calls = _fused._debug.calls
    with pytest.warns(RuntimeWarning, match="not writable"):
        adaptim.SGD([p], lr=0.5, fused=True).step()
    assert _fused._debug.calls == calls + 1  # the kernel ran, not the fallback
    assert torch.equal(p, torch.full((3,), 0.5))
    built = Path(_ckernel.stats["path"])
    assert built.exists() and built.parent != blocker / "cache"
    assert (built.parent.stat().st_mode & 0o777) == 0o700


# ---------------------------------------------------------------- fused=None (the default)
@pytest.mark.parametrize("name", list(REGISTRY))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_default_runs_the_kernel_on_cpu_and_false_does_not(name, dtype):
    """fused=None, the constructor default, resolves to the C kernel for CPU groups (the speed a
    drop-in user gets without asking) and fused=False to the reference path; both agree to the
    fused tolerances."""
    kw = dict(lr=1e-2)
    calls = _fused._debug.calls
    pd, od = _run(name, kw, dtype, fused=None)
    assert od.param_groups[0]["fused"] is None  # the group keeps torch's value for checkpoints
    assert _fused._debug.calls > calls
    calls = _fused._debug.calls
    pr, orf = _run(name, kw, dtype, fused=False)
    assert _fused._debug.calls == calls
    _assert_same(pd, od, pr, orf, TOL[dtype])


def test_default_without_a_compiler_is_the_reference_path_silently(fresh_kernel, monkeypatch):
    monkeypatch.setenv("ADAPTIM_CC", str(fresh_kernel / "no-such-compiler"))
    pd = torch.randn(30, requires_grad=True)
    pr = pd.detach().clone().requires_grad_()
    opt_d, opt_r = adaptim.RMSprop([pd], lr=0.01), adaptim.RMSprop([pr], lr=0.01, fused=False)
    calls = _fused._debug.calls
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the user asked for nothing: no warning
        for _ in range(3):
            g = torch.randn(30)
            pd.grad, pr.grad = g.clone(), g.clone()
            opt_d.step()
            opt_r.step()
    assert _fused._debug.calls == calls
    assert torch.equal(pd, pr)


def test_a_compiler_that_fails_falls_back(fresh_kernel, monkeypatch):
    monkeypatch.setenv("ADAPTIM_CC", "false")  # exists, always fails
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.ones(3)
    with pytest.warns(RuntimeWarning, match="unavailable"):
        adaptim.SGD([p], lr=0.5, fused=True).step()
    assert torch.equal(p, torch.full((3,), 0.5))


# ---------------------------------------------------------------- bfloat16 state
@pytest.mark.parametrize("name", list(REGISTRY))
def test_bf16_state_kernel_matches_reference(name):
    """The kernel's bf16-state step (load bf16 → float32 rule → round once) against the
    reference path doing the same with torch ops (fused=False, state_dtype=bf16). Both round
    the same float32 values, so state agrees to one bf16 ulp (rtol 2⁻⁷ covers a value that
    lands on the other side of a rounding boundary after an ulp of float32 difference) and
    parameters to float32 precision plus that ulp's effect on one update (atol 1e-4 · lr)."""
    kw = dict(lr=1e-2)
    pf, of = _run(name, kw, torch.float32, fused=True, state_dtype=torch.bfloat16)
    pr, orf = _run(name, kw, torch.float32, fused=False, state_dtype=torch.bfloat16)
    for a, b in zip(pf, pr):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
        for key, v in of.state.get(a, {}).items():
            if key == "step":
                continue
            w = orf.state[b][key]
            assert v.dtype == w.dtype
            if not v.is_complex():
                assert v.dtype == torch.bfloat16
            torch.testing.assert_close(v.float() if not v.is_complex() else v,
                                       w.float() if not w.is_complex() else w,
                                       rtol=2**-7, atol=1e-6)


@pytest.mark.parametrize("name", ["rmsprop", "adam", "adadelta", "momentum", "adagrad"])
def test_bf16_state_stays_close_to_fp32_state(name):
    """bf16 keeps 8 significant bits: over 4 steps the parameters stay within a few bf16 ulps
    of the update size (lr ≤ 1e-2 → atol 1e-3) of the fp32-state run."""
    p16, _ = _run(name, dict(lr=1e-2), torch.float32, fused=True, state_dtype=torch.bfloat16)
    p32, _ = _run(name, dict(lr=1e-2), torch.float32, fused=True)
    for a, b in zip(p16, p32):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-3)


def test_bf16_state_survives_state_dict_round_trip():
    torch.manual_seed(0)
    p = torch.randn(64, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    opt = adaptim.Adam([p], lr=1e-2, amsgrad=True, fused=True, state_dtype=torch.bfloat16)
    for _ in range(2):
        p.grad = torch.randn(64)
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    assert saved["state"][0]["exp_avg"].dtype == torch.bfloat16
    q.data.copy_(p.detach())
    opt2 = adaptim.Adam([q], lr=1e-2, amsgrad=True, fused=True, state_dtype=torch.bfloat16)
    opt2.load_state_dict(saved)
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert opt2.state[q][key].dtype == torch.bfloat16
        assert torch.equal(opt2.state[q][key], opt.state[p][key])
    g = torch.randn(64)
    p.grad, q.grad = g.clone(), g.clone()
    opt.step()
    opt2.step()
    assert torch.equal(p, q)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", list(REGISTRY))
def test_cuda_fused_matches_unfused(name):
    def run(fused):
        torch.manual_seed(0)
        p = torch.randn(1000, device="cuda", requires_grad=True)
        opt = adaptim.create(name, [p], fused=fused)
        for step in range(3):
            p.grad = torch.sin(torch.arange(1000.0, device="cuda") + step)
            opt.step()
        return p
    torch.testing.assert_close(run(True), run(False), rtol=1e-6, atol=1e-6)


def test_bench_command_writes_a_report(tmp_path):
    """`adaptim bench` on a tiny workload: every requested row timed, floor and JSON written."""
    import json

    from adaptim.cli import main

    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    assert main(["bench", "--params", "3000", "--small", "20", "50", "--repeat", "1",
                 "--optimizers", "rmsprop", "adam", "--no-overhead", "--json", str(out),
                 "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    assert report["bandwidth_GBps"]["best"] > 0
    assert len(report["workloads"]) == 2
    for w in report["workloads"].values():
        assert set(w["rows"]) == {"rmsprop", "adam"}
        assert w["rows"]["rmsprop"]["bytes_per_param"] == 20
        assert w["rows"]["adam"]["bytes_per_param"] == 28
        assert "torch-fused" not in w["rows"]["rmsprop"]["ms"]  # torch has no fused RMSprop
        assert all(v > 0 for v in w["rows"]["adam"]["ms"].values())
        for r in w["rows"].values():  # the floor: bytes moved at the probe's bandwidth
            assert r["probe_GBps"] > 0
            assert r["floor_ms"] == pytest.approx(
                1e3 * r["bytes_per_param"] * w["numel"] / (r["probe_GBps"] * 1e9))
            assert r["floor_ms_run_best"] == pytest.approx(
                1e3 * r["bytes_per_param"] * w["numel"] / (report["bandwidth_GBps"]["best"] * 1e9))
    assert "| rmsprop |" in md.read_text()


@pytest.mark.parametrize("name,kw", STEP_COUNT_CASES)
def test_tensors_with_different_step_counts(name, kw):
    """The C kernel reads each tensor's own step for the bias corrections / lr decay."""
    check_per_tensor_step_counts(name, kw)


def test_whole_group_plan_takes_plain_groups_and_refuses_odd_ones():
    """The bulk check accepts a plain float32 group in one mode and hands anything unusual
    (a strided tensor, mixed dtypes, complex) to the per-tensor path."""
    from adaptim._fused import _whole_group_plan

    def plan(params):
        for p in params:
            p.grad = torch.ones_like(p)
        opt = adaptim.Adam(params, fused=True)
        ps, gs, sts = opt._gather(opt.param_groups[0])
        return _whole_group_plan(ps, gs, sts, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), True)

    columns, mode, steps, step_dtype = plan([torch.zeros(3, 4, requires_grad=True),
                                             torch.zeros(0, requires_grad=True)])
    assert mode == 1 and step_dtype == 1 and columns[4] is None and len(steps) == 2
    assert plan([torch.zeros(4, 6)[:, ::2].requires_grad_()]) is None
    assert plan([torch.zeros(3, requires_grad=True),
                 torch.zeros(3, dtype=torch.float64, requires_grad=True)]) is None
    assert plan([torch.zeros(3, dtype=torch.complex64, requires_grad=True)]) is None
