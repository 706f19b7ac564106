"""The guard inside step(): on_nonfinite (propagate / skip / raise), max_grad_norm, skipped_steps
in checkpoints, and torch.amp.GradScaler interplay — on every optimizer in the registry."""

import copy
import pickle

import pytest
import torch
from torch import nn

import adaptim
from adaptim.registry import REGISTRY

NAMES = list(REGISTRY)
TORCH_CLASS = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "nesterov": torch.optim.SGD,
               "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop,
               "adadelta": torch.optim.Adadelta, "adam": torch.optim.Adam,
               "adamw": torch.optim.AdamW}


def _model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).to(dtype)


def _backward(model, seed, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 4, generator=g, dtype=dtype)
    y = torch.randn(16, 2, generator=g, dtype=dtype)
    model.zero_grad()
    loss = scale * nn.functional.mse_loss(model(x), y)
    loss.backward()
    return loss


def _snapshot(model, opt):
    return ([p.detach().clone() for p in model.parameters()], copy.deepcopy(opt.state_dict()))


def _assert_same_state(a, b):
    (pa, sa), (pb, sb) = a, b
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for key in sa["state"][k]:
            assert torch.equal(torch.as_tensor(sa["state"][k][key]),
                               torch.as_tensor(sb["state"][k][key])), key


def _poison(model, value=float("nan")):
    list(model.parameters())[2].grad[1, 3] = value  # second Linear's weight


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_skip_leaves_params_and_state_bit_identical(name, bad):
    model, ref = _model(), _model()
    opt = adaptim.create(name, model.parameters(), on_nonfinite="skip")
    ref_opt = adaptim.create(name, ref.parameters())
    for step in range(2):
        for m, o in ((model, opt), (ref, ref_opt)):
            _backward(m, step)
            o.step()
    before = _snapshot(model, opt)
    _backward(model, 99)
    _poison(model, bad)
    opt.step()
    assert opt.skipped_steps == 1
    after = _snapshot(model, opt)
    before[1].pop("adaptim"), after[1].pop("adaptim")
    _assert_same_state(before, after)
    # the skipped step was a no-op: training continues exactly as if it never happened
    for m, o in ((model, opt), (ref, ref_opt)):
        _backward(m, 7)
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))
    assert opt.skipped_steps == 1


@pytest.mark.parametrize("name", NAMES)
def test_skip_on_first_step_creates_no_state(name):
    model = _model()
    opt = adaptim.create(name, model.parameters(), on_nonfinite="skip")
    before = _snapshot(model, opt)
    _backward(model, 0)
    _poison(model)
    opt.step()
    after = _snapshot(model, opt)
    assert opt.skipped_steps == 1
    assert after[1]["adaptim"] == {"skipped_steps": 1}
    before[1].pop("adaptim"), after[1].pop("adaptim")
    _assert_same_state(before, after)


@pytest.mark.parametrize("name", NAMES)
def test_raise_names_offending_parameters_and_changes_nothing(name):
    model = _model()
    opt = adaptim.create(name, model.named_parameters(), on_nonfinite="raise")
    _backward(model, 0)
    opt.step()
    before = _snapshot(model, opt)
    _backward(model, 1)
    _poison(model)
    list(model.parameters())[0].grad[0, 0] = float("inf")
    with pytest.raises(adaptim.NonFiniteGradientError) as info:
        opt.step()
    err = info.value
    assert [(g, i, n, nan, inf) for g, i, n, nan, inf in err.offenders] == [
        (0, 0, "0.weight", 0, 1), (0, 2, "2.weight", 1, 0)]
    assert "param 2 ('2.weight'): 1 NaN, 0 Inf" in str(err) and "group 0 param 0" in str(err)
    assert err.names == ["0.weight", "2.weight"]
    assert isinstance(err, FloatingPointError)
    assert opt.skipped_steps == 0
    _assert_same_state(before, _snapshot(model, opt))


def test_raise_without_names_uses_indices():
    model = _model()
    opt = adaptim.Adam(model.parameters(), on_nonfinite="raise")
    _backward(model, 0)
    _poison(model)
    with pytest.raises(adaptim.NonFiniteGradientError, match=r"group 0 param 2: 1 NaN"):
        opt.step()


@pytest.mark.parametrize("name", NAMES)
def test_propagate_is_torch_behaviour(name):
    model, ref = _model(), _model()
    opt = adaptim.create(name, model.parameters())  # default: propagate
    spec = REGISTRY[name]
    ref_opt = TORCH_CLASS[name](ref.parameters(), **{**spec.settings, "foreach": False})
    for m, o in ((model, opt), (ref, ref_opt)):
        _backward(m, 0)
        _poison(m)
        o.step()
    w, w_ref = list(model.parameters())[2], list(ref.parameters())[2]
    assert torch.equal(w.isnan(), w_ref.isnan()) and w.isnan().any()
    assert opt.skipped_steps == 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("max_grad_norm", [0.05, 1e6])
def test_max_grad_norm_equals_torch_clip_then_step(name, max_grad_norm):
    model, ref = _model(), _model()
    # fused=False: the reference path clips p.grad in place (the fused kernel scales on the fly)
    opt = adaptim.create(name, model.parameters(), max_grad_norm=max_grad_norm, fused=False)
    ref_opt = adaptim.create(name, ref.parameters(), fused=False)
    for step in range(4):
        _backward(model, step, scale=10.0)
        _backward(ref, step, scale=10.0)
        opt.step()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), max_grad_norm)
        ref_opt.step()
        for a, b in zip(model.parameters(), ref.parameters()):
            assert torch.equal(a, b)
            assert torch.equal(a.grad, b.grad)  # the unfused path clips p.grad in place, as torch


@pytest.mark.parametrize("name", ["rmsprop", "adam", "momentum"])
def test_max_grad_norm_matches_torch_optim_float64(name):
    model, ref = _model(dtype=torch.float64), _model(dtype=torch.float64)
    spec = REGISTRY[name]
    opt = adaptim.create(name, model.parameters(), max_grad_norm=0.1, fused=False)
    ref_opt = TORCH_CLASS[name](ref.parameters(), **{**spec.settings, "foreach": False})
    for step in range(5):
        _backward(model, step, torch.float64)
        _backward(ref, step, torch.float64)
        opt.step()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.1)
        ref_opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_max_grad_norm_is_global_across_groups():
    model, ref = _model(), _model()
    layers = [m for m in model if isinstance(m, nn.Linear)]
    opt = adaptim.SGD([{"params": layers[0].parameters()},
                       {"params": layers[1].parameters(), "lr": 0.01}], lr=0.1, max_grad_norm=0.01)
    ref_layers = [m for m in ref if isinstance(m, nn.Linear)]
    ref_opt = adaptim.SGD([{"params": ref_layers[0].parameters()},
                           {"params": ref_layers[1].parameters(), "lr": 0.01}], lr=0.1)
    _backward(model, 0)
    _backward(ref, 0)
    opt.step()
    torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.01)
    ref_opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))


def test_skip_with_max_grad_norm_and_nan_skips_before_clipping():
    model = _model()
    opt = adaptim.Adam(model.parameters(), max_grad_norm=1.0, on_nonfinite="skip")
    _backward(model, 0)
    _poison(model)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert opt.skipped_steps == 1 and not opt.state
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("fused", [False, True])
def test_finite_gradients_whose_squares_overflow_are_not_skipped(fused):
    # ‖g‖₂ overflows float32 (inf) although every entry is finite: clip as torch does (to 0).
    model = _model()
    opt = adaptim.SGD(model.parameters(), lr=0.1, max_grad_norm=1.0, on_nonfinite="skip",
                      fused=fused)
    _backward(model, 0)
    for p in model.parameters():
        p.grad.fill_(1e30)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert opt.skipped_steps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # grads scaled to 0
    # the reference path clips p.grad in place, as torch; the kernel scales on the fly
    assert all(((p.grad == 0) if not fused else (p.grad == 1e30)).all()
               for p in model.parameters())


def test_guard_reads_optimizer_wide_defaults():
    model = _model()
    opt = adaptim.SGD(model.parameters(), lr=0.1, on_nonfinite="skip")
    opt.param_groups[0]["on_nonfinite"] = "propagate"  # per-group values are ignored
    _backward(model, 0)
    _poison(model)
    opt.step()
    assert opt.skipped_steps == 1


@pytest.mark.parametrize("kwargs,match", [(dict(on_nonfinite="ignore"), "on_nonfinite"),
                                          (dict(max_grad_norm=-1.0), "max_grad_norm"),
                                          (dict(max_grad_norm=float("nan")), "max_grad_norm")])
def test_invalid_guard_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adaptim.Adam(_model().parameters(), **kwargs)


# ------------------------------------------------------------------ checkpoints
def _skipped_twice(name="adam"):
    model = _model()
    opt = adaptim.create(name, model.parameters(), on_nonfinite="skip")
    for seed in range(3):
        _backward(model, seed)
        if seed < 2:
            _poison(model)
        opt.step()
    assert opt.skipped_steps == 2
    return model, opt


def test_skipped_steps_survives_state_dict_round_trip(tmp_path):
    model, opt = _skipped_twice()
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    fresh = adaptim.Adam(model.parameters(), on_nonfinite="skip")
    fresh.load_state_dict(torch.load(tmp_path / "opt.pt"))
    assert fresh.skipped_steps == 2
    assert copy.deepcopy(opt).skipped_steps == 2
    assert pickle.loads(pickle.dumps(opt)).skipped_steps == 2


@pytest.mark.parametrize("name", NAMES)
def test_adaptim_checkpoint_loads_into_torch_and_back(name):
    model, opt = _skipped_twice(name)
    spec = REGISTRY[name]
    ref = copy.deepcopy(model)
    torch_opt = TORCH_CLASS[name](ref.parameters(), **{**spec.settings, "foreach": False})
    torch_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # extra "adaptim" key ignored
    for m, o in ((model, opt), (ref, torch_opt)):
        _backward(m, 5)
        o.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    # and back into adaptim: the run's count rides along in torch's param groups (the copy
    # that survives torch.distributed.checkpoint), so the history is not lost
    back = adaptim.create(name, copy.deepcopy(model).parameters(), on_nonfinite="skip")
    back.skipped_steps = 5
    back.load_state_dict(torch_opt.state_dict())
    assert back.skipped_steps == 2
    assert all("adaptim_skipped_steps" not in g for g in back.param_groups)
    # a checkpoint of a run that was always torch.optim has no skipped steps on record
    pure = TORCH_CLASS[name](copy.deepcopy(model).parameters(), **spec.settings)
    back.load_state_dict(pure.state_dict())
    assert back.skipped_steps == 0


@pytest.mark.parametrize("extra", [{"skipped_steps": -1}, {"skipped_steps": 1.5}, [3]])
def test_bad_skipped_steps_in_checkpoint_is_refused_unchanged(extra):
    model, opt = _skipped_twice()
    sd = copy.deepcopy(opt.state_dict())
    sd["adaptim"] = extra
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match="skipped_steps"):
        opt.load_state_dict(sd)
    assert opt.skipped_steps == 2
    assert opt.state_dict()["adaptim"] == before["adaptim"]


# ------------------------------------------------------------------ GradScaler
def _amp_run(max_grad_norm, use_scaler, manual_clip=None, steps=4, poison_step=None,
             on_nonfinite="propagate"):
    model = _model()
    opt = adaptim.Adam(model.parameters(), lr=0.01, max_grad_norm=max_grad_norm,
                       on_nonfinite=on_nonfinite)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12) if use_scaler else None
    for step in range(steps):
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(16, 4, generator=g), torch.randn(16, 2, generator=g)
        opt.zero_grad()
        loss = 10 * nn.functional.mse_loss(model(x), y)
        (scaler.scale(loss) if scaler else loss).backward()
        if step == poison_step:
            _poison(model, float("inf"))
        if manual_clip == "unscale_then_clip":
            scaler.unscale_(opt)
            adaptim.clip_grad_norm_(model.parameters(), 0.1)
        elif manual_clip == "clip_scaled":  # the wrong order
            adaptim.clip_grad_norm_(model.parameters(), 0.1)
        elif manual_clip == "no_scaler":
            adaptim.clip_grad_norm_(model.parameters(), 0.1)
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
    return model, opt, scaler


def _params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def test_gradscaler_then_max_grad_norm_clips_unscaled_gradients():
    # GradScaler.step unscales before calling optimizer.step(), so max_grad_norm inside step()
    # sees true gradients; with a power-of-two scale in float32 the result is bit-identical.
    plain, _, _ = _amp_run(0.1, use_scaler=False)
    scaled, _, scaler = _amp_run(0.1, use_scaler=True)
    assert scaler.get_scale() == 2.0 ** 12
    assert all(torch.equal(a, b) for a, b in zip(_params_of(plain), _params_of(scaled)))


def test_gradscaler_manual_clip_order_unscale_first():
    reference, _, _ = _amp_run(None, use_scaler=False, manual_clip="no_scaler")
    right, _, _ = _amp_run(None, use_scaler=True, manual_clip="unscale_then_clip")
    wrong, _, _ = _amp_run(None, use_scaler=True, manual_clip="clip_scaled")
    assert all(torch.equal(a, b) for a, b in zip(_params_of(reference), _params_of(right)))
    assert not all(torch.equal(a, b) for a, b in zip(_params_of(reference), _params_of(wrong)))


def test_gradscaler_inf_skip_agrees_with_guard():
    # An overflowing step: GradScaler skips it itself (optimizer.step() is never called, so
    # adaptim counts nothing and does not raise); without a scaler, on_nonfinite="skip" skips
    # the same step. Both runs end with the same parameters.
    scaled, opt_a, scaler = _amp_run(0.1, use_scaler=True, poison_step=1, on_nonfinite="raise")
    guarded, opt_b, _ = _amp_run(0.1, use_scaler=False, poison_step=1, on_nonfinite="skip")
    assert opt_a.skipped_steps == 0 and opt_b.skipped_steps == 1
    assert scaler.get_scale() == 2.0 ** 11  # GradScaler backed off once
    assert int(opt_a.state[next(iter(opt_a.state))]["step"]) == 3
    assert int(opt_b.state[next(iter(opt_b.state))]["step"]) == 3
    assert all(torch.equal(a, b) for a, b in zip(_params_of(scaled), _params_of(guarded)))


# ------------------------------------------------------------------ fused path
@pytest.mark.parametrize("name", NAMES)
def test_guard_on_the_fused_path(name):
    """The fused kernel takes the clip factor from the guard (gradients scaled on the fly):
    same result as the unfused clip to float32 rounding; a skipped step is still a no-op."""
    fused_model, plain_model = _model(), _model()
    fused = adaptim.create(name, fused_model.parameters(), fused=True, max_grad_norm=0.05,
                           on_nonfinite="skip")
    plain = adaptim.create(name, plain_model.parameters(), fused=False, max_grad_norm=0.05,
                           on_nonfinite="skip")
    for step in range(3):
        for m, o in ((fused_model, fused), (plain_model, plain)):
            _backward(m, step, scale=10.0)
            o.step()
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    before = _snapshot(fused_model, fused)
    _backward(fused_model, 9)
    _poison(fused_model)
    fused.step()
    after = _snapshot(fused_model, fused)
    assert fused.skipped_steps == 1
    before[1].pop("adaptim"), after[1].pop("adaptim")
    _assert_same_state(before, after)


@pytest.mark.parametrize("key,value", [("max_grad_norm", 1.0), ("on_nonfinite", "skip")])
def test_per_group_guard_options_are_refused_not_ignored(key, value):
    opt = adaptim.Adam([torch.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="whole optimizer"):
        opt.add_param_group({"params": [torch.zeros(3, requires_grad=True)], key: value})
    with pytest.raises(ValueError, match="whole optimizer"):
        adaptim.SGD([{"params": [torch.zeros(1, requires_grad=True)], key: value}], lr=0.1)
    assert len(opt.param_groups) == 1
