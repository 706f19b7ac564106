"""2-D test surfaces: Rosenbrock's valley, Beale's plateaus and a saddle, with trajectories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from adaptim.lab.tasks._base import Arm, RunOutput, Task, seeded_generator, train

__all__ = ["SURFACES", "Surface", "surfaces_task"]


@dataclass(frozen=True)
class Surface:
    """f(x, y), where runs start, where the minimum is and the window plotted."""

    name: str
    f: Callable
    start: tuple[float, float]
    jitter: tuple[float, float]  # start-point noise per seed (seed 0: none)
    minimum: tuple[float, float]
    f_min: float
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    formula: str


def _rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def _beale(x, y):
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2
            + (2.625 - x + x * y ** 3) ** 2)


def _saddle(x, y):
    # Saddle point at the origin, minima at (0, ±1); starting almost on the ridge y = 0
    # shows how fast each method escapes a saddle whose downhill direction has a tiny gradient.
    return x ** 2 + y ** 4 / 4 - y ** 2 / 2


SURFACES = {s.name: s for s in [
    Surface("rosenbrock", _rosenbrock, (-1.2, 1.0), (0.05, 0.05), (1.0, 1.0), 0.0,
            (-2.0, 2.0), (-1.0, 3.0), "(1 − x)² + 100 (y − x²)²"),
    Surface("beale", _beale, (1.0, 1.5), (0.05, 0.05), (3.0, 0.5), 0.0,
            (-1.0, 4.0), (-1.5, 2.0), "(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²"),
    Surface("saddle", _saddle, (1.5, 1e-3), (0.05, 2e-4), (0.0, 1.0), -0.25,
            (-2.0, 2.0), (-1.5, 1.5), "x² + y⁴/4 − y²/2"),
]}


def _run(variant: str, make_optimizer, seed: int, steps: int, device) -> RunOutput:
    surface = SURFACES[variant]
    start = torch.tensor(surface.start, dtype=torch.float64)
    if seed:
        noise = torch.randn(2, generator=seeded_generator(seed), dtype=torch.float64)
        start = start + noise * torch.tensor(surface.jitter, dtype=torch.float64)
    point = start.clone().to(device).requires_grad_(True)
    optimizer = make_optimizer([point])
    path = [point.detach().cpu().tolist()]

    def compute_loss(step):
        if step:  # position after the previous step
            path.append(point.detach().cpu().tolist())
        return surface.f(point[0], point[1]) - surface.f_min

    out = train([point], optimizer, compute_loss, steps, probe_every=max(steps // 20, 1))
    path.append(point.detach().cpu().tolist())
    path += [path[-1]] * (steps + 1 - len(path))  # a diverged run stops early
    xs = [p[0] for p in path]
    ys = [p[1] for p in path]
    out.curves["x"] = xs[1:]  # position after each step
    out.curves["y"] = ys[1:]
    out.scalars["start_x"], out.scalars["start_y"] = xs[0], ys[0]
    final = torch.tensor(path[-1], dtype=torch.float64)
    out.scalars["distance_to_minimum"] = float(
        (final - torch.tensor(surface.minimum, dtype=torch.float64)).norm())
    return out


# Where the sweeps settle, per (surface, optimizer): those grids are centred there; the others
# start from the typical rates times lr_scale.
_CENTRES = {("rosenbrock", "momentum"): 0.000999, ("rosenbrock", "nesterov"): 0.000999,
            ("rosenbrock", "adagrad"): 3.16, ("rosenbrock", "rmsprop"): 0.0999,
            ("rosenbrock", "adam"): 0.999, ("rosenbrock", "adamw"): 0.999,
            ("beale", "sgd"): 0.0316, ("beale", "momentum"): 0.00316,
            ("beale", "nesterov"): 0.00316, ("beale", "adagrad"): 0.999,
            ("beale", "rmsprop"): 0.0999, ("beale", "adam"): 0.316, ("beale", "adamw"): 0.316,
            ("saddle", "sgd"): 0.0999, ("saddle", "momentum"): 0.316,
            ("saddle", "nesterov"): 0.0999, ("saddle", "adadelta"): 3.16,
            ("saddle", "adam"): 0.316, ("saddle", "adamw"): 0.316}

surfaces_task = Task(
    name="surfaces",
    summary="2-D test surfaces (Rosenbrock, Beale, a saddle): trajectories on contour plots",
    description=(
        "Each optimizer minimises three classic 2-D functions from a fixed start (seeds add a "
        "small jitter): Rosenbrock's curved valley, Beale's flat plateaus and a saddle "
        "f = x² + y⁴/4 − y²/2 approached almost exactly along its ridge. The loss is f − f*, "
        "so it reaches 0 at the minimum. Gradients here are far larger than a network's, so the "
        "SGD family's learning-rate grid is scaled down."),
    variants=tuple(SURFACES),
    arms=tuple(Arm(o, v, centre=_CENTRES.get((v, o))) for v in SURFACES
               for o in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam",
                         "adamw")),
    run=_run,
    steps=250,
    fast_steps=60,
    target={"rosenbrock": 1e-2, "beale": 1e-2, "saddle": 1e-2},
    lr_scale={"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 10.0,
              "rmsprop": 10.0, "adam": 10.0, "adamw": 10.0, "adadelta": 10.0},
    loss_name="f − f*",
    stochastic=False,
    figures=("paths", "loss", "sweep"),
    max_seeds=2,  # an illustration: no claim reads it
)
