"""Vanishing gradients through depth, as a small factorial design: activation (sigmoid, tanh,
ReLU) × initialization (PyTorch default, Xavier, He) and batch norm, with every layer's
gradient norm, the relative update of the first and last layer, and the share of entries whose
adaptive step is dominated by ε."""

from __future__ import annotations

import math

import torch
from torch import nn

from adaptim.lab.probes import effective_lr, eps_dominated_share
from adaptim.lab.tasks._base import Arm, RunOutput, Task
from adaptim.lab.tasks.digits import fit_classifier

__all__ = ["DEPTH", "VARIANTS", "deep_task"]

DEPTH = 10   # hidden layers
RESOLUTION = 2.0 ** -24  # smallest relative change of a float32 weight
WIDTH = 32
# variant -> (activation, initialization, batch norm)
VARIANTS = {
    "sigmoid": ("sigmoid", "default", False),
    "tanh": ("tanh", "default", False),
    "relu": ("relu", "default", False),
    "tanh+xavier": ("tanh", "xavier", False),
    "relu+he": ("relu", "he", False),
    "sigmoid+bn": ("sigmoid", "default", True),
}
_ACT = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


def _deep_mlp(variant: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    activation, init, batchnorm = VARIANTS[variant]
    layers: list[nn.Module] = []
    fan_in = 64
    for _ in range(DEPTH):
        linear = nn.Linear(fan_in, WIDTH)
        if init == "xavier":
            nn.init.xavier_normal_(linear.weight, gain=nn.init.calculate_gain(activation))
            nn.init.zeros_(linear.bias)
        elif init == "he":
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")  # He et al. 2015
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if batchnorm:
            layers.append(nn.BatchNorm1d(WIDTH))
        layers.append(_ACT[activation]())
        fan_in = WIDTH
    layers.append(nn.Linear(fan_in, 10))
    return nn.Sequential(*layers)


def _run(variant, make_optimizer, seed, steps, device) -> RunOutput:
    model = _deep_mlp(variant, seed).to(device)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    first, last = linears[0].weight, linears[-1].weight
    record_every = max(steps // 10, 1)
    norm_steps: list[int] = []
    norms: list[list[float]] = [[] for _ in linears]
    update_ratios: list[float] = []
    before: dict[str, torch.Tensor] = {}
    holder: dict = {}

    def probe(step):
        return step % record_every == 0 or step == steps - 1

    def after_backward(step):
        # Read directly from .grad after backward (before the update): layer 1 is next to the input.
        if probe(step):
            norm_steps.append(step)
            for i, layer in enumerate(linears):
                norms[i].append(float(layer.weight.grad.norm()))
            before["first"], before["last"] = first.detach().clone(), last.detach().clone()

    @torch.no_grad()
    def after_step(step):
        if probe(step):
            # An update below float32's resolution leaves the weights unchanged (a relative
            # change of 0): it counts as the smallest measurable one, 2⁻²⁴.
            rel_first = max(float((first - before["first"]).norm() / before["first"].norm()),
                            RESOLUTION)
            rel_last = max(float((last - before["last"]).norm() / before["last"].norm()),
                           RESOLUTION)
            update_ratios.append(math.log10(rel_first / rel_last))

    def make(params):
        holder["opt"] = make_optimizer(params)
        return holder["opt"]

    out = fit_classifier(model, make, seed, steps, device, after_backward=after_backward,
                         after_step=after_step)
    for i, values in enumerate(norms):
        out.sparse[f"grad_norm/layer{i + 1}"] = (list(norm_steps), values)
    at_init = [values[0] for values in norms]
    out.scalars["grad_ratio_log10"] = (math.log10(at_init[0] / at_init[-1])
                                       if at_init[0] > 0 and at_init[-1] > 0 else math.nan)
    out.scalars["first_to_last_grad_ratio"] = at_init[0] / at_init[-1] if at_init[-1] else math.nan
    out.scalars["update_ratio_log10"] = (sum(update_ratios) / len(update_ratios)
                                         if update_ratios else math.nan)
    opt = holder["opt"]
    out.scalars["first_layer_efflr"] = effective_lr(opt, [first])
    out.scalars["last_layer_efflr"] = effective_lr(opt, [last])
    out.scalars["first_layer_eps_share"] = eps_dominated_share(opt, [first])
    return out


_SGD_CENTRES = {"sigmoid": 0.00999, "tanh": 0.999, "relu": 0.0316, "tanh+xavier": 0.316,
                "relu+he": 0.0999, "sigmoid+bn": 0.316}

deep_task = Task(
    name="deep",
    summary=f"vanishing gradients: {DEPTH}-layer MLPs, activation × initialization × batch norm",
    description=(f"A {DEPTH}-hidden-layer, {WIDTH}-wide MLP on the digits in six versions: "
                 "sigmoid, tanh and ReLU with PyTorch's default initialization, tanh with "
                 "Xavier (Glorot) normal init, ReLU with He (Kaiming) normal init, and sigmoid "
                 "with batch normalization before every activation. The gradient norm of every "
                 "layer's weight is read from .grad after backward; the first/last ratio at "
                 "initialization shows how much signal reaches the early layers. Under "
                 "RMSProp and Adam the relative update ‖ΔW‖/‖W‖ of the first layer is compared "
                 "with the last layer's, and the share of first-layer entries whose adaptive "
                 "denominator is dominated by ε is recorded."),
    variants=tuple(VARIANTS),
    run=_run,
    steps=200,
    fast_steps=25,
    target={v: 0.5 for v in VARIANTS},
    # Grids centred on the rates the sweeps settle on (no extension needed).
    arms=tuple(Arm("sgd", v, centre=_SGD_CENTRES[v]) for v in VARIANTS)
    + (Arm("rmsprop", "sigmoid", centre=0.00999), Arm("adam", "sigmoid", centre=0.00999)),
    test_metric="test_accuracy",
    figures=("loss", "layers", "sweep"),
)
