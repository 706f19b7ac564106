"""Vanishing gradients through depth: a deep sigmoid MLP vs ReLU with He initialization vs
sigmoid with batch normalization, with the gradient norm of every layer."""

from __future__ import annotations

import torch
from torch import nn

from adaptim.lab.tasks._base import RunOutput, Task
from adaptim.lab.tasks.digits import fit_classifier

__all__ = ["deep_task", "DEPTH"]

DEPTH = 10   # hidden layers
WIDTH = 32


def _deep_mlp(variant: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    fan_in = 64
    for _ in range(DEPTH):
        linear = nn.Linear(fan_in, WIDTH)
        if variant == "relu+he":
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")  # He et al. 2015
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.ReLU()]
        elif variant == "sigmoid+batchnorm":
            layers += [linear, nn.BatchNorm1d(WIDTH), nn.Sigmoid()]
        else:  # "sigmoid": PyTorch's default init, the textbook's vanishing case
            layers += [linear, nn.Sigmoid()]
        fan_in = WIDTH
    layers.append(nn.Linear(fan_in, 10))
    return nn.Sequential(*layers)


def _run(variant, make_optimizer, seed, steps, device) -> RunOutput:
    model = _deep_mlp(variant, seed).to(device)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    record_every = max(steps // 10, 1)
    norm_steps: list[int] = []
    norms: list[list[float]] = [[] for _ in linears]

    def layer_norms(step):
        # Read directly from .grad after backward (before any update): layer 1 is next to the input.
        if step % record_every == 0 or step == steps - 1:
            norm_steps.append(step)
            for i, layer in enumerate(linears):
                norms[i].append(float(layer.weight.grad.norm()))

    out = fit_classifier(model, make_optimizer, seed, steps, device, after_backward=layer_norms)
    for i, values in enumerate(norms):
        out.sparse[f"grad_norm/layer{i + 1}"] = (list(norm_steps), values)
    first = [values[0] for values in norms]
    out.scalars["first_to_last_grad_ratio"] = first[0] / first[-1] if first[-1] else float("nan")
    mean_first = sum(norms[0]) / len(norms[0])
    mean_last = sum(norms[-1]) / len(norms[-1])
    out.scalars["mean_first_to_last_grad_ratio"] = mean_first / mean_last if mean_last else float("nan")
    return out


deep_task = Task(
    name="deep",
    summary=f"vanishing gradients: {DEPTH}-layer sigmoid vs ReLU+He vs sigmoid+batch norm",
    description=(f"A {DEPTH}-hidden-layer, {WIDTH}-wide MLP on the digits in three versions: "
                 "sigmoid with PyTorch's default initialization (the textbook vanishing case), "
                 "ReLU with He (Kaiming) normal initialization, and sigmoid with batch "
                 "normalization before every activation. The gradient norm of every layer's "
                 "weight is read from .grad after backward; the ratio first layer / last layer "
                 "shows how much of the signal reaches the early layers."),
    variants=("sigmoid", "relu+he", "sigmoid+batchnorm"),
    run=_run,
    steps=150,
    fast_steps=25,
    target={"sigmoid": 0.3, "relu+he": 0.3, "sigmoid+batchnorm": 0.3},
    optimizers=("sgd", "adam"),
    test_metric="test_accuracy",
)
