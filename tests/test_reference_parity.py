"""adaptim == the NumPy reference written from the equations, in float64 after 50 steps, every
state tensor compared."""

import numpy as np
import pytest
import torch

import adaptim
from cases import all_cases, case_id, gradient_sequence
from reference import REFERENCES

STEPS = 50


def _grad_fn(theta_np):
    # A real objective plus noise: a quadratic bowl with an anisotropic Hessian.
    return theta_np * np.linspace(0.1, 10.0, theta_np.size).reshape(theta_np.shape)


# the default path (the C kernel where it runs) and the multi-tensor path, whose adaptim-only
# options (eps_in_sqrt, eps_hat, bias_correction, lr_in_momentum, conventions) have no torch
# counterpart: the equations decide
PATHS = {"default": {}, "foreach": {"foreach": True}}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name,kwargs", all_cases(), ids=[case_id(*c) for c in all_cases()])
def test_matches_numpy_reference(name, kwargs, path):
    shape = (4, 5)
    theta0 = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p = theta0.clone().requires_grad_()
    opt = getattr(adaptim, name)([p], **PATHS[path], **kwargs)
    hp = {**_resolved(opt), **{k: v for k, v in kwargs.items() if k != "convention"}}
    ref = REFERENCES[name](**hp)
    theta = theta0.numpy().copy()
    noise = gradient_sequence(shape, STEPS)
    for t in range(STEPS):
        g = _grad_fn(theta) + noise[t].numpy()
        p.grad = torch.from_numpy(g.copy())
        opt.step()
        theta = ref.step(theta, g)
        np.testing.assert_allclose(p.detach().numpy(), theta, rtol=1e-9, atol=1e-12,
                                   err_msg=f"step {t + 1}")
    state = opt.state[p]
    for key, value in ref.state.items():
        if value is None:
            continue
        np.testing.assert_allclose(state[key].numpy(), value, rtol=1e-9, atol=1e-12,
                                   err_msg=f"state {key}")
    if name != "SGD":
        assert int(state["step"]) == STEPS


def _resolved(opt):
    """The hyperparameters the optimizer resolved (conventions applied), for the reference."""
    group = opt.param_groups[0]
    keys = ["lr", "alpha", "eps", "rho", "betas", "eps_in_sqrt", "eps_hat", "lr_in_momentum",
            "initial_accumulator_value", "bias_correction", "weight_decay"]
    return {k: group[k] for k in keys if k in group}


def test_adam_without_bias_correction_and_beta1_zero_is_rmsprop():
    gs = gradient_sequence((3, 3), 30)
    pa = torch.ones(3, 3, dtype=torch.float64, requires_grad=True)
    pr = torch.ones(3, 3, dtype=torch.float64, requires_grad=True)
    adam = adaptim.Adam([pa], lr=1e-2, betas=(0.0, 0.95), eps=1e-6, bias_correction=False)
    rms = adaptim.RMSprop([pr], lr=1e-2, alpha=0.95, eps=1e-6)
    for g in gs:
        pa.grad, pr.grad = g.clone(), g.clone()
        adam.step()
        rms.step()
    torch.testing.assert_close(pa, pr, rtol=1e-12, atol=0)
    torch.testing.assert_close(adam.state[pa]["exp_avg_sq"], rms.state[pr]["square_avg"],
                               rtol=1e-12, atol=0)


def test_eps_placement_changes_the_step():
    """Inside vs outside the root are different algorithms: with a tiny E[g²] they differ."""
    outs = []
    for inside in (False, True):
        p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = adaptim.RMSprop([p], lr=1.0, alpha=0.0, eps=1e-4, eps_in_sqrt=inside)
        p.grad = torch.tensor([1e-4], dtype=torch.float64)
        opt.step()
        outs.append(-p.item())
    # outside: 1e-4/(1e-4 + 1e-4) = 0.5 ; inside: 1e-4/sqrt(1e-8 + 1e-4) ≈ 0.0099995
    assert outs[0] == pytest.approx(0.5, rel=1e-12)
    assert outs[1] == pytest.approx(1e-4 / np.sqrt(1e-8 + 1e-4), rel=1e-12)


def test_centered_rmsprop_stays_finite_when_the_variance_cancels():
    """With α = 0, E[g²] − E[g]² = g² − g² is 0 in exact arithmetic; a fused multiply-add can
    leave a tiny negative residue whose square root is NaN (torch.optim's result). adaptim clamps
    it at 0, so the step is g / ε."""
    p = torch.zeros(64, dtype=torch.float32, requires_grad=True)
    opt = adaptim.RMSprop([p], lr=1e-3, alpha=0.0, centered=True, eps=1e-3)
    for g in gradient_sequence((64,), 50, dtype=torch.float32):
        p.grad = g.clone()
        opt.step()
    assert torch.isfinite(p).all()
