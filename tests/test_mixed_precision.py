"""Mixed precision: bf16/fp16 parameters, torch.autocast and torch.amp.GradScaler.

- bf16 and fp16 parameters: by default the state is kept in the parameter's dtype, as
  torch.optim does. ``fused=False`` (the reference path) is bit-identical to torch.optim
  (foreach=False) on the same dtype, for every registry optimizer and the option sets that take
  other code paths.
- bf16 and fp16 parameters on the C kernel (the default on CPU, ``fused=None``): widened to
  float32 with gradient and state, the float32 rule, the new parameter and state rounded once.
  Bit-identical to that computation emulated with torch (float32 copies stepped by the float32
  kernel, rounded with ``.to(dtype)``) for every option set of tests/cases.py and every state
  dtype the kernel takes; its conversions are bit-identical to torch's; each step is at least
  as close to the float64 step from the same point as the reference path's.
- torch.autocast("cpu", bfloat16) with fp32 parameters: trains (the loss falls) and is
  bit-identical to torch.optim.
- torch.amp.GradScaler("cpu"): a step whose gradients overflow is skipped without touching a
  parameter or any optimizer state, the scale is backed off, and the run then continues exactly as
  torch.optim's.
- The non-finite guard on bf16 parameters (``on_nonfinite``).

To cover more implementations after they land add values to the module-level lists:
``FUSED_MODES = [False, True]`` (GradScaler: a fused step receives ``found_inf`` and must skip
itself) and ``NONFINITE_POLICIES = ["propagate", "skip", "raise"]``.
"""

from __future__ import annotations

import copy
import subprocess

import numpy as np
import pytest
import torch

import adaptim
from adaptim import _fused
from adaptim._fused import _ckernel
from adaptim.registry import REGISTRY
from cases import CASES as SHARED_CASES

FUSED_MODES = [False, True]
NONFINITE_POLICIES = ["propagate", "skip", "raise"]
LOW_PRECISION = [torch.bfloat16, torch.float16]

# (torch.optim class name, keyword arguments): every registry entry plus other code paths.
OPTION_SETS = [(spec.cls.__name__, dict(spec.settings)) for spec in REGISTRY.values()] + [
    ("SGD", {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("Adagrad", {"lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("RMSprop", {"centered": True, "momentum": 0.9, "weight_decay": 0.01}),
    ("Adadelta", {"weight_decay": 0.01, "maximize": True}),
    ("Adam", {"amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"amsgrad": True, "maximize": True}),
]
LR = {"SGD": 0.05, "Adagrad": 0.05, "RMSprop": 0.01, "Adadelta": 1.0, "Adam": 0.01,
      "AdamW": 0.01}


def option_id(option_set) -> str:
    name, kw = option_set
    return name + "".join(f"-{k}={v}" for k, v in kw.items())


def pair(name, kw, params_a, params_b, **adaptim_kw):
    """The adaptim optimizer and torch.optim's (single-tensor implementation), same settings."""
    kw = {"lr": LR[name], **kw}
    ours = getattr(adaptim, name)(params_a, **kw, **adaptim_kw)
    theirs = getattr(torch.optim, name)(params_b, **kw, foreach=False)
    return ours, theirs


def make_params(dtype):
    gen = torch.Generator().manual_seed(0)
    shapes = [(6, 5), (5,), (2, 3, 4)]
    return [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in shapes]


def clone_params(params):
    return [p.detach().clone().requires_grad_() for p in params]


def state_snapshot(optimizer):
    return copy.deepcopy(optimizer.state_dict())


def assert_same_state(a, b, where="state") -> None:
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ------------------------------------------------------------------ low-precision parameters
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("option_set", OPTION_SETS, ids=option_id)
def test_low_precision_parameters_match_torch(option_set, dtype):
    name, kw = option_set
    ours_p = make_params(dtype)
    theirs_p = clone_params(ours_p)
    # fused=False: torch.optim's bits (the default, the kernel, rounds once: tested below)
    ours, theirs = pair(name, kw, ours_p, theirs_p, fused=False)
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):
        for a, b in zip(ours_p, theirs_p):
            g = torch.randn(a.shape, generator=gen).to(dtype)
            a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    start = make_params(dtype)
    for a, b, s in zip(ours_p, theirs_p, start):
        assert a.dtype == dtype and torch.isfinite(a).all()
        assert torch.equal(a, b), f"{name} {kw} {dtype}: differs from torch.optim"
        assert not torch.equal(a, s)
    for p in ours_p:
        for key, value in ours.state.get(p, {}).items():
            if key != "step":
                assert value.dtype == dtype, f"state {key!r} is {value.dtype}, want {dtype}"
    assert_same_state(ours.state_dict()["state"], theirs.state_dict()["state"])


# ------------------------------------------------------------------ autocast
def regression_data(n=64):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(n, 8, generator=gen)
    y = torch.tanh(x @ torch.randn(8, 1, generator=gen))
    return x, y


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))


AUTOCAST_LR = {"SGD": 0.1, "Adagrad": 0.05, "RMSprop": 0.005, "Adadelta": 1.0, "Adam": 0.01,
               "AdamW": 0.01}


@pytest.mark.parametrize("option_set", OPTION_SETS[:len(REGISTRY)], ids=option_id)
def test_autocast_bf16_trains_and_matches_torch(option_set):
    name, kw = option_set
    kw = {**kw, "lr": AUTOCAST_LR[name]}
    x, y = regression_data()
    losses = {}
    models = {}
    for impl in ("adaptim", "torch"):
        model = make_model()
        if impl == "adaptim":
            # fused=False: the reference path, bit-identical to torch's for-loop (the default,
            # the fused kernel, is checked against it in test_fused.py)
            optimizer = getattr(adaptim, name)(model.parameters(), **kw, fused=False)
        else:
            optimizer = getattr(torch.optim, name)(model.parameters(), **kw, foreach=False)
        losses[impl] = []
        for _ in range(25):
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
                assert out.dtype == torch.bfloat16  # autocast is really on
                loss = torch.nn.functional.mse_loss(out.float(), y)
            loss.backward()
            assert model[0].weight.grad.dtype == torch.float32
            optimizer.step()
            losses[impl].append(loss.item())
        models[impl] = model
    assert losses["adaptim"][-1] < 0.7 * losses["adaptim"][0], losses["adaptim"]
    assert losses["adaptim"] == losses["torch"]
    for a, b in zip(models["adaptim"].parameters(), models["torch"].parameters()):
        assert a.dtype == torch.float32 and torch.equal(a, b)


# ------------------------------------------------------------------ GradScaler
@pytest.mark.parametrize("fused", FUSED_MODES)
@pytest.mark.parametrize("option_set", OPTION_SETS, ids=option_id)
def test_grad_scaler_run_matches_torch_including_a_skipped_step(option_set, fused):
    """autocast + GradScaler, with unscale_ + clip_grad_norm_ on some steps and one overflowing
    batch: scales, parameters and state equal torch.optim's run bit for bit."""
    name, kw = option_set
    x, y = regression_data(32)
    runs = {}
    for impl in ("adaptim", "torch"):
        model = make_model()
        if impl == "adaptim":
            optimizer = getattr(adaptim, name)(model.parameters(), **{"lr": LR[name], **kw},
                                               fused=fused)
        else:
            optimizer = getattr(torch.optim, name)(model.parameters(), lr=LR[name], **kw,
                                                   foreach=False)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=1000)
        scales = []
        for step in range(6):
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = torch.nn.functional.mse_loss(model(x).float(), y)
            scaler.scale(loss).backward()
            if step == 3:  # an overflowing batch
                model[2].weight.grad[0, 0] = float("inf")
            if step % 2 == 1:  # the documented order: unscale, then clip, then step
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            scales.append(scaler.get_scale())
        runs[impl] = (model, optimizer, scales)

    model, optimizer, scales = runs["adaptim"]
    assert scales[3] == scales[2] / 2  # the overflow was seen and the step skipped
    assert scales == runs["torch"][2]
    if fused:  # a fused kernel may round differently from torch's for-loop (fp32: ~1e-6)
        for a, b in zip(model.parameters(), runs["torch"][0].parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        return
    for a, b in zip(model.parameters(), runs["torch"][0].parameters()):
        assert torch.equal(a, b), f"{name} {kw}: GradScaler run differs from torch.optim"
    assert_same_state(optimizer.state_dict()["state"], runs["torch"][1].state_dict()["state"])


@pytest.mark.parametrize("fused", FUSED_MODES)
@pytest.mark.parametrize("option_set", OPTION_SETS, ids=option_id)
def test_grad_scaler_overflow_step_leaves_parameters_and_state_unchanged(option_set, fused):
    name, kw = option_set
    x, y = regression_data(32)
    model = make_model()
    optimizer = getattr(adaptim, name)(model.parameters(), **{"lr": LR[name], **kw},
                                       fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)

    def scaled_backward(poison: bool):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        scaler.scale(loss).backward()
        if poison:
            model[0].bias.grad[1] = float("nan")

    for _ in range(2):  # build up state first
        scaled_backward(False)
        scaler.step(optimizer)
        scaler.update()
    params_before = [p.detach().clone() for p in model.parameters()]
    state_before = state_snapshot(optimizer)
    scale_before = scaler.get_scale()
    scaled_backward(True)
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == scale_before / 2
    for p, before in zip(model.parameters(), params_before):
        assert torch.equal(p, before)
    assert_same_state(optimizer.state_dict(), state_before)
    # and training goes on
    scaled_backward(False)
    scaler.step(optimizer)
    scaler.update()
    assert not torch.equal(model[0].weight, params_before[0])


# ------------------------------------------------------------------ the non-finite guard
@pytest.mark.parametrize("policy", NONFINITE_POLICIES)
@pytest.mark.parametrize("option_set", OPTION_SETS[:len(REGISTRY)], ids=option_id)
def test_nonfinite_gradient_in_bf16(option_set, policy):
    """A bf16 gradient that overflowed to inf, stepped without a GradScaler, on the reference
    path (the kernel's non-finite results: test_kernel_low_precision_nonfinite_gradient).

    propagate (torch's behaviour): the same result as torch.optim, non-finite values included.
    skip: no parameter or state changes, ``skipped_steps`` counts it, the next step proceeds.
    raise: adaptim.NonFiniteGradientError, nothing changed.
    """
    name, kw = option_set
    dtype = torch.bfloat16
    ours_p = make_params(dtype)
    theirs_p = clone_params(ours_p)
    ours, theirs = pair(name, kw, ours_p, theirs_p, on_nonfinite=policy, fused=False)
    gen = torch.Generator().manual_seed(2)

    def set_grads(poison: bool):
        for a, b in zip(ours_p, theirs_p):
            g = torch.randn(a.shape, generator=gen).to(dtype)
            if poison and a.dim() == 1:
                g[0] = torch.finfo(dtype).max * 2  # overflows to inf in bf16
            a.grad, b.grad = g.clone(), g.clone()

    set_grads(False)
    ours.step()
    theirs.step()
    params_before = [p.detach().clone() for p in ours_p]
    state_before = state_snapshot(ours)
    set_grads(True)
    assert not torch.isfinite(ours_p[1].grad).all()
    if policy == "propagate":
        ours.step()
        theirs.step()
        for a, b in zip(ours_p, theirs_p):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
        assert_same_state(ours.state_dict()["state"], theirs.state_dict()["state"])
        return
    if policy == "raise":
        with pytest.raises(adaptim.NonFiniteGradientError):
            ours.step()
    else:
        ours.step()
        assert ours.skipped_steps == 1
    for p, before in zip(ours_p, params_before):
        assert torch.equal(p, before)
    assert_same_state(ours.state_dict()["state"], state_before["state"])
    set_grads(False)
    ours.step()
    assert not torch.equal(ours_p[0], params_before[0])


# ------------------------------------------------------------------ 16-bit parameters, C kernel
# Every registry entry with its settings, then every option set of tests/cases.py.
KERNEL_CASES = [(name, {}) for name in REGISTRY] + [
    (next(n for n, s in REGISTRY.items() if s.cls.__name__ == cls and not s.settings), kw)
    for cls, sets in SHARED_CASES.items() for kw in sets]
# (parameter dtype, state_dtype): the kernel modes with 16-bit parameters; None: the parameter's
KERNEL_DTYPES = [(torch.bfloat16, None), (torch.bfloat16, torch.float32),
                 (torch.float16, None), (torch.float16, torch.float32),
                 (torch.float16, torch.bfloat16)]


def kernel_case_id(case) -> str:
    name, kw = case
    return ",".join([name] + [f"{k}={v}" for k, v in kw.items()])


def dtypes_id(pair_) -> str:
    dtype, state_dtype = pair_
    name = str(dtype).removeprefix("torch.")
    if state_dtype is None:
        return name
    return f"{name}-state_{str(state_dtype).removeprefix('torch.')}"


@pytest.fixture(scope="module")
def low_precision_kernel():
    if not all(_fused.kernel_available(_fused._MODES[(d, s or d)]) for d, s in KERNEL_DTYPES):
        pytest.skip(f"no working C compiler for the fused kernels ({_ckernel.compiler()!r})")


def widened(state: dict) -> dict:
    """float32 copies of a state dict's floating tensors (the step counter copied as it is)."""
    return {k: (v.float().clone() if k != "step" and v.is_floating_point() else v.clone())
            for k, v in state.items()}


def run_against_emulation(name, kw, dtype, state_dtype, steps=4, poison_step=None):
    """Step ``name`` on ``dtype`` parameters with fused=None (the default) and, beside it, the
    computation the kernel documents: before each step the parameters, gradients and state are
    widened to float32 copies, the float32 kernel steps them, and the result is rounded with
    torch's ``.to(dtype)``. Asserts after every step that parameters and state are bit-identical
    (a NaN of either equals a NaN) and that the group took one kernel call."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(17, 9), (300,), (0, 4), (), (5,)]
    params = [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in shapes]
    twins = [p.detach().float().requires_grad_() for p in params]
    extra = {} if state_dtype is None else {"state_dtype": state_dtype}
    ours = adaptim.create(name, params, **copy.deepcopy(kw), **extra)
    emulation = adaptim.create(name, twins, **copy.deepcopy(kw), fused=True)
    group = ours.param_groups[0]
    for p in params:  # the state as first made (Adagrad's initial value rounded to its dtype)
        if not ours.state[p]:
            ours._make_state(p, ours.state[p], group)
    for step in range(steps):
        for i, (p, q) in enumerate(zip(params, twins)):
            g = (torch.randn(p.shape, generator=gen) * 10.0 ** (step - 2)).to(dtype)
            if step == poison_step and i == 1:
                g[3] = float("inf")
            p.grad, q.grad = g, g.float()
            with torch.no_grad():
                q.copy_(p.float())
            emulation.state[q] = widened(ours.state[p])
        calls = _fused._debug.calls
        ours.step()
        assert _fused._debug.calls == calls + 1, "the group did not take one kernel call"
        emulation.step()
        for i, (p, q) in enumerate(zip(params, twins)):
            where = f"{name} {kw} {dtype} state {state_dtype} step {step} tensor {i}"
            assert p.dtype == dtype
            torch.testing.assert_close(p.detach(), q.detach().to(dtype), rtol=0, atol=0,
                                       equal_nan=True, msg=lambda m: f"{where}: {m}")
            for key, value in ours.state[p].items():
                if key == "step":
                    assert float(value) == float(emulation.state[q][key]) == step + 1
                    continue
                assert value.dtype == (state_dtype or dtype), (where, key)
                torch.testing.assert_close(value, emulation.state[q][key].to(value.dtype),
                                           rtol=0, atol=0, equal_nan=True,
                                           msg=lambda m, key=key: f"{where} {key}: {m}")
    return params, ours


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("case", KERNEL_CASES, ids=kernel_case_id)
def test_kernel_low_precision_parameters_round_once(low_precision_kernel, case, dtype):
    name, kw = case
    run_against_emulation(name, kw, dtype, None)


@pytest.mark.parametrize("dtypes", KERNEL_DTYPES[1:], ids=dtypes_id)
@pytest.mark.parametrize("name", list(REGISTRY))
def test_kernel_low_precision_parameters_with_state_dtype(low_precision_kernel, name, dtypes):
    dtype, state_dtype = dtypes
    run_against_emulation(name, {}, dtype, state_dtype)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_kernel_low_precision_nonfinite_gradient(low_precision_kernel, name):
    """An inf in a bf16 gradient (on_nonfinite="propagate", the default) flows through the
    kernel as through the float32 emulation: the same NaN/inf elements, the rest bit-identical."""
    params, _ = run_against_emulation(name, {}, torch.bfloat16, None, steps=3, poison_step=1)
    assert not torch.isfinite(params[1]).all()
    assert torch.isfinite(params[0]).all()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_kernel_low_precision_skip_policy_changes_nothing(low_precision_kernel, name):
    params = [torch.randn(40).to(torch.bfloat16).requires_grad_() for _ in range(3)]
    opt = adaptim.create(name, params, on_nonfinite="skip")
    for p in params:
        p.grad = torch.randn(40).to(torch.bfloat16)
    opt.step()
    before = [p.detach().clone() for p in params]
    state_before = state_snapshot(opt)
    params[2].grad[5] = float("inf")
    opt.step()
    assert opt.skipped_steps == 1
    for p, b in zip(params, before):
        assert torch.equal(p, b)
    assert_same_state(opt.state_dict()["state"], state_before["state"])


def test_default_and_fused_true_take_the_kernel_and_fused_false_does_not(low_precision_kernel):
    for dtype in LOW_PRECISION:
        for fused, kernel in ((None, True), (True, True), (False, False)):
            params = [torch.randn(50).to(dtype).requires_grad_() for _ in range(3)]
            opt = adaptim.Adam(params, lr=1e-2, fused=fused)
            for p in params:
                p.grad = torch.randn(50).to(dtype)
            calls = _fused._debug.calls
            opt.step()
            assert (_fused._debug.calls > calls) is kernel, (dtype, fused)
            assert all(v.dtype == dtype for k, v in opt.state[params[0]].items() if k != "step")


RELATION_LR = {"SGD": 0.05, "Adagrad": 0.1, "RMSprop": 3e-3, "Adadelta": 1.0, "Adam": 3e-3,
               "AdamW": 3e-3}


def step_errors(name, dtype, steps=30):
    """The error each low-precision path adds in one step, summed over ``steps`` steps of a
    noisy quadratic: at every step the reference path (``fused=False``, torch.optim's
    for-loop) and a float64 run start from the kernel's current parameter and state (the
    float64 run from their exact values) with the same gradient; returns the RMS distance of
    the kernel's and the reference path's new parameters and state to the float64 ones, and
    the fraction of parameter elements where the kernel's equals the float64 result rounded
    to ``dtype``."""
    gen = torch.Generator().manual_seed(5)
    n = 4096
    p = torch.randn(n, generator=gen).to(dtype).requires_grad_()
    target = torch.randn(n, generator=gen, dtype=torch.float64)
    curvature = torch.rand(n, generator=gen, dtype=torch.float64) * 2 + 0.1
    lr = RELATION_LR[REGISTRY[name].cls.__name__]
    kernel = adaptim.create(name, [p], lr=lr, fused=True)
    sq = {"kernel": 0.0, "reference": 0.0}
    count = hits = 0
    for _ in range(steps):
        g = (curvature * (p.detach().double() - target)
             + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)).to(dtype)
        runs = {}
        for impl, run_dtype in (("reference", dtype), ("float64", torch.float64)):
            q = p.detach().to(run_dtype).clone().requires_grad_()
            opt = adaptim.create(name, [q], lr=lr, fused=False)
            if kernel.state.get(p):
                opt.state[q] = {k: v.to(run_dtype if k != "step" else v.dtype).clone()
                                for k, v in kernel.state[p].items()}
            q.grad = g.to(run_dtype)
            opt.step()
            runs[impl] = (q, opt.state[q])
        p.grad = g
        kernel.step()
        runs["kernel"] = (p, kernel.state[p])
        exact_p, exact_state = runs["float64"]
        for impl in ("kernel", "reference"):
            q, state = runs[impl]
            sq[impl] += (q.detach().double() - exact_p.detach()).pow(2).sum().item()
            for key, value in state.items():
                if key != "step":
                    sq[impl] += (value.double() - exact_state[key]).pow(2).sum().item()
        hits += int((p.detach() == exact_p.detach().to(dtype)).sum())
        count += n
    return ({impl: (total / count) ** 0.5 for impl, total in sq.items()}, hits / count)


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("name", list(REGISTRY))
def test_kernel_step_is_closer_to_float64_than_the_reference_path(low_precision_kernel,
                                                                  name, dtype):
    """The documented relation between the two low-precision paths, one step at a time (over
    many steps both trajectories are dominated by the rounding of the parameter itself, which
    they share): from the same parameter, state and gradient, the kernel's new parameter and
    state (float32 arithmetic, rounded once) are at least as close to the float64 step as the
    reference path's (every operation rounded to the parameter's dtype), and the kernel's new
    parameter is the float64 result correctly rounded in at least 99% of the elements."""
    errors, exact_fraction = step_errors(name, dtype)
    assert errors["kernel"] <= errors["reference"], (name, dtype, errors)
    assert exact_fraction >= 0.99, (name, dtype, exact_fraction)


# ------------------------------------------------------------------ the kernel's conversions
def kernel_convert(mode: int, fn: str, src: np.ndarray, out_dtype) -> np.ndarray:
    """Run the kernel library's own conversion loop ``fn`` (see _ckernel.CONVERSIONS)."""
    src = np.ascontiguousarray(src)
    out = np.empty(src.size, dtype=out_dtype)
    getattr(_ckernel.load(mode), fn)(src.size, src.ctypes.data, out.ctypes.data)
    return out


def rounding_edges(dtype) -> np.ndarray:
    """float32 bit patterns around every value of a 16-bit format: each value, the float32
    neighbours on both sides, each midpoint to the next value and its neighbours (the
    round-to-nearest-even ties), the overflow threshold, signed zeros, infinities and NaNs
    (signalling, quiet, with payloads), plus 2^22 random bit patterns."""
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.int16)
    values = torch.from_numpy(halves).view(dtype).float().numpy()
    values = values[np.isfinite(values)]
    values = np.sort(values)
    mids = (values[:-1].astype(np.float64) + values[1:]) / 2
    mids = mids.astype(np.float32)  # exact: a midpoint of two 16-bit values fits in float32
    base = np.concatenate([values, mids, np.float32([65504, 65519.996, 65520, 65536, 3.4e38,
                                                     1e-45, 6e-8, 3e-8, 2.98e-8])])
    base = np.concatenate([base, -base])
    bits = base.view(np.uint32)
    edges = np.concatenate([bits, bits + 1, bits - 1]).astype(np.uint32)
    special = np.uint32([0x7F800000, 0xFF800000, 0x7F800001, 0xFF800001, 0x7FC00000,
                         0x7FFFFFFF, 0xFFFFFFFF, 0x7FA00000, 0x7F802001, 0x80000000, 0])
    rng = np.random.default_rng(0)
    random = rng.integers(0, 1 << 32, size=1 << 22, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([edges, special, random])


def check_stores(dtype, bits: np.ndarray) -> None:
    mode = _fused._MODES[(dtype, dtype)]
    floats = bits.view(np.float32)
    ours = kernel_convert(mode, "adaptim_store_param", floats, np.uint16)
    # the same bits from the rules' state stores and from the element-wise conversion (float16:
    # the software one that vector tails and CPUs without F16C use)
    for fn in ("adaptim_store_state", "adaptim_store_elements"):
        assert np.array_equal(kernel_convert(mode, fn, floats, np.uint16), ours), fn
    theirs = torch.from_numpy(floats).to(dtype).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(floats)
    differ = (ours != theirs) & ~nan
    assert not differ.any(), [(hex(b), hex(o), hex(t)) for b, o, t in
                              zip(bits[differ][:5], ours[differ][:5], theirs[differ][:5])]
    back = torch.from_numpy(ours.view(np.int16)).view(dtype).float().numpy()
    assert np.isnan(back[nan]).all() and not np.isnan(back[~nan]).any()
    # float16: NaN bits too (sign, quiet bit, payload top), as torch's .to(torch.float16).
    # bfloat16: the kernel writes c10::BFloat16's NaN, 0x7FC0, which torch's bf16 arithmetic
    # writes too, while torch's vectorised .to(torch.bfloat16) writes 0xFFFF.
    if dtype == torch.float16:
        assert np.array_equal(ours[nan], theirs[nan])
    else:
        assert (ours[nan] == 0x7FC0).all()


def test_kernel_conversions_match_torch(low_precision_kernel):
    for dtype in LOW_PRECISION:
        mode = _fused._MODES[(dtype, dtype)]
        every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
        widened_ = torch.from_numpy(every.view(np.int16)).view(dtype).float().numpy()
        for fn in ("adaptim_load_param", "adaptim_load_state", "adaptim_load_elements"):
            ours = kernel_convert(mode, fn, every, np.float32)
            assert np.array_equal(ours.view(np.uint32), widened_.view(np.uint32)), (dtype, fn)
        check_stores(dtype, rounding_edges(dtype))


@pytest.mark.exhaustive  # 1-2 min; the rounding edges of every exponent run by default above
def test_kernel_conversions_match_torch_on_every_float32(low_precision_kernel):
    """All 2^32 float32 bit patterns rounded by the kernel (float16: its vector and its
    element-wise conversion) and by torch's .to(dtype): float16 bit for bit, NaNs included;
    bfloat16 bit for bit except NaNs (the kernel's 0x7FC0 where torch's vectorised conversion
    writes 0xFFFF)."""
    chunk = 1 << 24
    for start in range(0, 1 << 32, chunk):
        floats = np.arange(start, start + chunk, dtype=np.uint64).astype(np.uint32).view(
            np.float32)
        source = torch.from_numpy(floats)
        for dtype in LOW_PRECISION:
            mode = _fused._MODES[(dtype, dtype)]
            ours = kernel_convert(mode, "adaptim_store_param", floats, np.uint16)
            if dtype == torch.float16:  # the vector (F16C) and the element-wise conversion
                elements = kernel_convert(mode, "adaptim_store_elements", floats, np.uint16)
                assert np.array_equal(elements, ours), hex(start)
            theirs = source.to(dtype).view(torch.int16).numpy().view(np.uint16)
            differ = ours != theirs
            if dtype == torch.float16 or not differ.any():
                assert not differ.any(), (dtype, hex(start + int(np.flatnonzero(differ)[0])))
            else:
                assert (theirs[differ] == 0xFFFF).all() and (ours[differ] == 0x7FC0).all()
                assert np.isnan(floats[differ]).all()


@pytest.mark.slow
def test_kernel_float16_without_f16c(low_precision_kernel, tmp_path, monkeypatch):
    """Where the CPU has no F16C (``-DADAPTIM_NO_F16C`` builds that library here) the rules
    convert float16 parameter, gradient and state element by element in integer arithmetic:
    the same bits as the emulation (one compile, 5-30 s)."""
    mode = _fused._MODES[(torch.float16, torch.float16)]
    path = tmp_path / f"no_f16c_mode{mode}.so"
    cc = _ckernel.compiler()
    subprocess.run([cc, *_ckernel.FLAGS, f"-DADAPTIM_MODE={mode}", "-DADAPTIM_NO_F16C", "-o",
                    str(path), str(_ckernel.SOURCE_DIR / "kernels.c")], check=True,
                   capture_output=True, timeout=300)
    monkeypatch.setitem(_ckernel._libs, mode, _ckernel._open(path, mode))
    for name in ("adam", "momentum", "rmsprop"):
        run_against_emulation(name, {}, torch.float16, None, steps=3)
