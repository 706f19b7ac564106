"""The table of option sets that drives the parity tests (style: torch.optim's OptimizerInfo).

``CASES[name]`` lists keyword-argument sets for ``adaptim.<name>``. A set that uses only
arguments torch.optim has is also run against torch.optim; ``ADAPTIM_ONLY`` names the rest.
"""

from __future__ import annotations

import torch

ADAPTIM_ONLY = {"eps_in_sqrt", "initial_accumulator_value_rms", "lr_in_momentum", "eps_hat",
                "bias_correction", "convention"}

CASES: dict[str, list[dict]] = {
    "SGD": [
        dict(lr=0.1),
        dict(lr=0.1, momentum=0.9),
        dict(lr=0.05, momentum=0.9, nesterov=True),
        dict(lr=0.1, momentum=0.9, dampening=0.5),
        dict(lr=0.1, momentum=0.5, weight_decay=0.1),
        dict(lr=0.1, momentum=0.9, maximize=True),
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True),
        dict(lr=0.1, weight_decay=0.1, maximize=True),
    ],
    "Adagrad": [
        dict(),
        dict(lr=0.1, lr_decay=0.01),
        dict(lr=0.1, weight_decay=0.1),
        dict(lr=0.1, initial_accumulator_value=0.5),
        dict(lr=0.1, maximize=True, eps=1e-3),
        dict(lr=0.1, eps=1e-3, eps_in_sqrt=True),
        dict(lr=0.1, convention="keras"),
        dict(lr=0.1, convention="tf1"),
    ],
    "RMSprop": [
        dict(),
        dict(lr=1e-3, alpha=0.9),
        dict(lr=1e-3, centered=True),
        dict(lr=1e-3, momentum=0.9),
        dict(lr=1e-3, momentum=0.9, centered=True, weight_decay=0.1),
        dict(lr=1e-3, maximize=True, eps=1e-3),
        dict(lr=1e-3, alpha=0.0), dict(lr=1e-3, alpha=1.0, eps=1e-2),
        dict(lr=1e-3, alpha=0.3, centered=True),  # lerp weight ≥ 0.5: torch's other branch
        dict(lr=1e-3, alpha=0.0, eps=1e-3),
        dict(lr=1e-3, eps=1e-3, eps_in_sqrt=True),
        dict(lr=1e-3, eps=1e-3, eps_in_sqrt=True, centered=True, momentum=0.5),
        dict(lr=1e-3, initial_accumulator_value=1.0),
        dict(lr=1e-3, momentum=0.9, lr_in_momentum=True),
        dict(lr=1e-3, convention="tf1", momentum=0.9, centered=True),
        dict(convention="keras"),
        dict(convention="optax", momentum=0.9),
    ],
    "Adadelta": [
        dict(),
        dict(lr=0.5, rho=0.95),
        dict(weight_decay=0.1, eps=1e-4),
        dict(maximize=True),
        dict(convention="keras", lr=0.1),
        dict(convention="tf1"),
    ],
    "Adam": [
        dict(),
        dict(lr=1e-2, betas=(0.8, 0.99)),
        dict(lr=1e-2, amsgrad=True),
        dict(lr=1e-2, weight_decay=0.1),
        dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, amsgrad=True),
        dict(lr=1e-2, maximize=True, eps=1e-4),
        dict(lr=1e-2, betas=(0.0, 0.9)),
        dict(lr=1e-2, eps=1e-6, eps_in_sqrt=True),
        dict(lr=1e-2, eps=1e-6, eps_hat=True, amsgrad=True),
        dict(lr=1e-2, bias_correction=False),
        dict(lr=1e-2, convention="keras"),
        dict(lr=1e-2, convention="tf1", weight_decay=0.01),
    ],
    "AdamW": [
        dict(),
        dict(lr=1e-2, weight_decay=0.1),
        dict(lr=1e-2, amsgrad=True, maximize=True),
        dict(lr=1e-2, weight_decay=0.5, eps_hat=True),
    ],
}

# RMSprop's initial_accumulator_value is adaptim-only; Adagrad's is torch's.
_ONLY_BY_CLASS = {"RMSprop": ADAPTIM_ONLY | {"initial_accumulator_value"}}


def torch_supported(name: str, kwargs: dict) -> bool:
    return not (set(kwargs) & _ONLY_BY_CLASS.get(name, ADAPTIM_ONLY))


def case_id(name: str, kwargs: dict) -> str:
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def all_cases():
    return [(n, kw) for n, kws in CASES.items() for kw in kws]


def gradient_sequence(shape, steps: int, dtype=torch.float64, seed: int = 0):
    """A fixed sequence of gradients of varied scale (some near zero, some large)."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-3, 1, steps, dtype=torch.float64)
    out = []
    for t in range(steps):
        g = torch.randn(shape, generator=gen, dtype=torch.float64) * scale[t]
        out.append(g.to(dtype) if not dtype.is_complex else torch.complex(
            g, torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype))
    return out


# ---------------------------------------------------------------- a shared fused-path scenario
# Optimizers whose step depends on the tensor's own step count (bias corrections, lr decay).
STEP_COUNT_CASES = [("adam", {}), ("adamw", dict(amsgrad=True)), ("adagrad", dict(lr_decay=0.1)),
                    ("adam", dict(eps_hat=True))]


def check_per_tensor_step_counts(name: str, kw: dict) -> None:
    """A parameter that misses every other step (grad None) keeps its own step count, and a
    fused step (whichever kernel fused=True reaches) stays equal to the unfused one."""
    import adaptim

    def run(fused):
        torch.manual_seed(0)
        a = torch.randn(30, dtype=torch.float64, requires_grad=True)
        b = torch.randn(20, dtype=torch.float64, requires_grad=True)
        opt = adaptim.create(name, [a, b], fused=fused, **kw)
        for step in range(6):
            a.grad = torch.sin(torch.arange(30.0, dtype=torch.float64) + step)
            b.grad = torch.cos(torch.arange(20.0, dtype=torch.float64) * step) if step % 2 else None
            opt.step()
        return a, b, opt

    af, bf, of = run(True)
    au, bu, _ = run(False)
    assert float(of.state[af]["step"]) == 6 and float(of.state[bf]["step"]) == 3
    torch.testing.assert_close(af, au, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bf, bu, rtol=1e-12, atol=1e-12)


def check_grad_scale_in_the_kernel(name: str, **kw) -> None:
    """fused_update(..., grad_scale=s) (whichever kernel fused=True reaches) equals the
    reference step on s·g and leaves .grad alone."""
    import adaptim
    from adaptim import _fused

    torch.manual_seed(0)
    p_f = torch.randn(100, dtype=torch.float64, requires_grad=True)
    p_u = p_f.detach().clone().requires_grad_()
    opt_f = adaptim.create(name, [p_f], fused=True, **kw)
    opt_u = adaptim.create(name, [p_u], fused=False, **kw)
    for _ in range(3):
        g = torch.randn(100, dtype=torch.float64)
        p_f.grad, p_u.grad = g.clone(), g * 0.37
        for group in opt_f.param_groups:
            params, grads, states = opt_f._gather(group)
            _fused.fused_update(opt_f, group, params, grads, states, 0.37)
        opt_u.step()
        assert torch.equal(p_f.grad, g)
    torch.testing.assert_close(p_f, p_u, rtol=1e-12, atol=1e-12)
