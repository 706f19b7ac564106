"""Mixed precision: bf16/fp16 parameters, torch.autocast and torch.amp.GradScaler.

- bf16 and fp16 parameters: by default the state is kept in the parameter's dtype, as
  torch.optim does, and the result is bit-identical to torch.optim (foreach=False) on the same
  dtype, for every registry optimizer and the option sets that take other code paths.
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

import pytest
import torch

import adaptim
from adaptim.registry import REGISTRY

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
    ours, theirs = pair(name, kw, ours_p, theirs_p)
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
    """A bf16 gradient that overflowed to inf, stepped without a GradScaler.

    propagate (torch's behaviour): the same result as torch.optim, non-finite values included.
    skip: no parameter or state changes, ``skipped_steps`` counts it, the next step proceeds.
    raise: adaptim.NonFiniteGradientError, nothing changed.
    """
    name, kw = option_set
    dtype = torch.bfloat16
    ours_p = make_params(dtype)
    theirs_p = clone_params(ours_p)
    ours, theirs = pair(name, kw, ours_p, theirs_p, on_nonfinite=policy)
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
