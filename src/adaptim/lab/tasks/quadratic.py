"""Ill-conditioned quadratics: where momentum should beat plain gradient descent, and where
noisy gradients test robustness to noise."""

from __future__ import annotations

import torch

from adaptim.lab.tasks._base import Arm, RunOutput, Task, seeded_generator, train

__all__ = ["quadratic_task"]

DIM = 20
NOISE = 0.3  # standard deviation of the additive gradient noise per coordinate (noisy variant)
CONDITION = {"kappa100": 100.0, "kappa1000": 1000.0, "noisy": 100.0}


def _run(variant, make_optimizer, seed, steps, device) -> RunOutput:
    gen = seeded_generator(seed, salt=7)
    kappa = CONDITION[variant]
    # f(x) = ½ Σ λ_i (Qx)_i², eigenvalues log-spaced from 1 down to 1/κ, a random rotation Q.
    eig = kappa ** (-torch.arange(DIM, dtype=torch.float64) / (DIM - 1))
    q, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=gen, dtype=torch.float64))
    hessian = (q * eig) @ q.T
    x = torch.randn(DIM, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    hessian = hessian.to(device)
    with torch.no_grad():
        f0 = float(0.5 * x @ hessian @ x)
    optimizer = make_optimizer([x])
    noisy = variant == "noisy"
    true_loss = []

    def compute_loss(step):
        f = 0.5 * x @ hessian @ x / f0
        true_loss.append(float(f.detach()))
        if noisy:  # the gradient gets additive N(0, NOISE²) noise per coordinate
            noise = NOISE * torch.randn(DIM, generator=gen, dtype=torch.float64).to(device)
            return f + (noise * x).sum() - (noise * x).sum().detach()
        return f

    out = train([x], optimizer, compute_loss, steps, probe_every=max(steps // 20, 1))
    out.curves["loss"] = true_loss + [float("nan")] * (steps - len(true_loss))
    return out


_CENTRES = {("momentum", "kappa100"): 0.949, ("momentum", "kappa1000"): 3.0,
            ("momentum", "noisy"): 0.003, ("nesterov", "kappa100"): 0.949,
            ("adagrad", "kappa100"): 0.999, ("rmsprop", "kappa100"): 0.00999,
            ("adadelta", "kappa100"): 3.16}

quadratic_task = Task(
    name="quadratic",
    summary="ill-conditioned quadratics (κ = 100, 1000) and one with noisy gradients",
    description=(f"f(x) = ½ xᵀHx / f(x₀) in {DIM} dimensions, H with eigenvalues log-spaced "
                 "from 1 down to 1/κ in a random basis (per seed), a random start; the loss is "
                 "f relative to its start, the target 10⁻³. The noisy variant (κ = 100) adds "
                 f"N(0, {NOISE}²) noise to every gradient coordinate. Gradient descent needs "
                 "about κ steps per e-fold on the flattest direction, momentum about √κ."),
    variants=("kappa100", "kappa1000", "noisy"),
    run=_run,
    steps=400,
    fast_steps=60,
    target={"kappa100": 1e-3, "kappa1000": 1e-3, "noisy": 1e-3},
    # Grids of the arms no claim reads the sweep of are centred where their sweeps settle
    # (Adam's and SGD's sweeps feed the learning-rate-window row and keep the typical rates).
    arms=tuple(Arm(opt, v, centre=_CENTRES.get((opt, v)))
               for v in ("kappa100", "kappa1000", "noisy") for opt in ("sgd", "momentum", "adam"))
    + tuple(Arm(opt, "kappa100", centre=_CENTRES[(opt, "kappa100")])
            for opt in ("nesterov", "adagrad", "rmsprop", "adadelta")),
    lr_scale={"sgd": 3.0, "momentum": 3.0, "nesterov": 3.0, "adam": 10.0, "rmsprop": 10.0,
              "adagrad": 10.0},
    loss_name="f / f(x₀)",
    stochastic=False,
    grid_exponents=(-1, 0, 1),
)
