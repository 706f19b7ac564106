"""The algorithm specs (adaptim.algorithms): the generated kernel fields are current, each spec's
state and fields are consistent, the effective step size is the factor the rule applies, and no
backend names an algorithm."""

import math
import re
from pathlib import Path

import pytest
import torch

import adaptim
from adaptim import conventions
from adaptim.algorithms import ALGORITHMS, COMMON_FIELDS, generated_sources

SRC = Path(adaptim.__file__).resolve().parent


def test_generated_field_files_are_current():
    """hp_fields.h and _hp_fields.py are what `python -m adaptim.algorithms` writes."""
    for path, text in generated_sources().items():
        assert path.read_text() == text, f"{path.name} is stale: run python -m adaptim.algorithms"


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_hyperparameters_fill_exactly_the_named_fields(name):
    spec = ALGORITHMS[name]
    cls = {"sgd": adaptim.SGD, "adagrad": adaptim.Adagrad, "rmsprop": adaptim.RMSprop,
           "adadelta": adaptim.Adadelta, "adam": adaptim.Adam}[name]
    group = cls([torch.zeros(2)], lr=0.25, weight_decay=0.5, maximize=True).param_groups[0]
    values = spec.hyperparameters(group, 2.0, False)
    assert list(values) == list(spec.hp_fields)  # every field, in the kernels' order
    assert spec.hp_fields[:len(COMMON_FIELDS)] == COMMON_FIELDS
    assert values["grad_scale"] == -2.0 and values["weight_decay"] == 0.5
    assert values["has_weight_decay"] == 1.0
    assert spec.hp(group, 2.0) == [values[f] for f in spec.hp_fields]
    lr_field = "neg_lr" if "neg_lr" in values else "lr"
    assert values[lr_field] == (-0.25 if lr_field == "neg_lr" else 0.25)


@pytest.mark.parametrize("cls,options", [
    (adaptim.SGD, dict(momentum=0.9)),
    (adaptim.Adagrad, {}),
    (adaptim.RMSprop, dict(momentum=0.5, centered=True)),
    (adaptim.Adadelta, {}),
    (adaptim.Adam, dict(amsgrad=True)),
])
def test_state_keys_cover_what_a_step_makes(cls, options):
    """After one step with every option that adds state, the state holds exactly the spec's
    required keys, all among state_keys; the non-negative ones are state keys."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = cls([p], lr=0.1, fused=False, **options)
    p.grad = torch.full((3,), 0.5)
    opt.step()
    spec = cls.algorithm
    assert set(opt.state[p]) == spec.required_state(opt.param_groups[0])
    assert set(opt.state[p]) - {"step"} <= set(spec.state_keys)
    assert spec.nonnegative <= set(spec.state_keys)


def test_conventions_read_the_specs_presets():
    assert conventions.PRESETS["rmsprop"] is ALGORITHMS["rmsprop"].presets
    assert set(conventions.PRESETS) == {"adagrad", "rmsprop", "adadelta", "adam"}
    for presets in conventions.PRESETS.values():
        assert set(presets) == set(conventions.CONVENTIONS)


def _one_step(cls, grad, steps=3, **options):
    """Run ``steps`` steps of float64 reference updates; returns (θ before the last step, θ after,
    the optimizer, the parameter)."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(64, dtype=torch.float64))
    opt = cls([p], fused=False, **options)
    for _ in range(steps - 1):
        p.grad = torch.randn(64, dtype=torch.float64)
        opt.step()
    before = p.detach().clone()
    p.grad = grad
    opt.step()
    return before, p.detach().clone(), opt, p


GRAD = torch.linspace(-2, 2, 64, dtype=torch.float64) + 1e-3


@pytest.mark.parametrize("options", [
    dict(), dict(eps_in_sqrt=True), dict(centered=True), dict(eps=0.5, eps_in_sqrt=True),
], ids=["torch", "eps_in_sqrt", "centered", "large-eps"])
def test_rmsprop_effective_step_is_the_factor_on_the_gradient(options):
    before, after, opt, p = _one_step(adaptim.RMSprop, GRAD, lr=0.01, **options)
    eff, dominated = opt.algorithm.effective_step(opt.state[p], opt.param_groups[0])
    torch.testing.assert_close(after - before, -eff.double() * GRAD, rtol=1e-5, atol=0)
    assert dominated.dtype == torch.bool and dominated.shape == p.shape
    assert bool(dominated.all()) == ("eps" in options)  # ε = 0.5 dominates every E[g²] here


@pytest.mark.parametrize("options", [dict(), dict(eps_in_sqrt=True, lr_decay=0.1)])
def test_adagrad_effective_step_includes_the_decayed_lr(options):
    before, after, opt, p = _one_step(adaptim.Adagrad, GRAD, lr=0.1, **options)
    eff, _ = opt.algorithm.effective_step(opt.state[p], opt.param_groups[0])
    torch.testing.assert_close(after - before, -eff.double() * GRAD, rtol=1e-5, atol=0)


@pytest.mark.parametrize("options", [
    dict(), dict(amsgrad=True), dict(eps_in_sqrt=True), dict(eps_hat=True),
    dict(bias_correction=False), dict(convention="keras"),
], ids=["torch", "amsgrad", "eps_in_sqrt", "eps_hat", "no-bias-correction", "keras"])
def test_adam_effective_step_is_the_factor_on_the_corrected_momentum(options):
    before, after, opt, p = _one_step(adaptim.Adam, GRAD, lr=0.01, **options)
    group, state = opt.param_groups[0], opt.state[p]
    eff, _ = opt.algorithm.effective_step(state, group)
    beta1 = group["betas"][0]
    b1 = 1 - beta1 ** state["step"].item() if group["bias_correction"] else 1.0
    m_hat = state["exp_avg"] / b1
    torch.testing.assert_close(after - before, -eff.double() * m_hat, rtol=1e-5, atol=0)


def test_adadelta_effective_step_is_the_factor_on_the_gradient():
    before, after, opt, p = _one_step(adaptim.Adadelta, GRAD, lr=0.5)
    group, state = opt.param_groups[0], opt.state[p]
    rho, eps = group["rho"], group["eps"]
    # the step used E[Δθ²] from before its own update: recover it from the new one
    delta = (before - after) / group["lr"]
    previous = dict(state, acc_delta=(state["acc_delta"] - (1 - rho) * delta**2) / rho)
    eff, _ = opt.algorithm.effective_step(previous, group)
    torch.testing.assert_close(after - before, -eff.double() * GRAD, rtol=1e-5, atol=0)
    assert math.isclose(float(eff.max()), float(
        (group["lr"] * (previous["acc_delta"] + eps).sqrt()
         / (state["square_avg"] + eps).sqrt()).max()), rel_tol=1e-6)


def test_sgd_and_empty_state_have_no_effective_step():
    group = adaptim.SGD([torch.zeros(1)], lr=0.1).param_groups[0]
    assert ALGORITHMS["sgd"].effective_step({}, group) is None
    adam_group = adaptim.Adam([torch.zeros(1)]).param_groups[0]
    assert ALGORITHMS["adam"].effective_step({}, adam_group) is None


def _code(path: Path) -> str:
    """Source without comments and docstrings (string literals stay)."""
    text = re.sub(r'"""(.|\n)*?"""', "", path.read_text())
    return "\n".join(line.split("#")[0] for line in text.splitlines())


def test_backends_name_no_algorithm():
    """The fused dispatch, the Triton host path and the optimizer shell use only the spec: no
    algorithm name or state key appears in their code, and _triton does not import its parent."""
    names = set(ALGORITHMS) | {"adamw"}
    keys = {k for spec in ALGORITHMS.values() for k in spec.state_keys}
    for rel in ("_fused/__init__.py", "_fused/_triton.py", "_base.py"):
        code = _code(SRC / rel)
        for word in names | keys:
            assert f'"{word}"' not in code, f"{rel} names {word!r}"
    assert "from adaptim import _fused" not in (SRC / "_fused/_triton.py").read_text()
