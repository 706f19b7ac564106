"""Measure the quantities GradientMonitor.check() thresholds, on healthy and sick textbook nets.

For each network: min/max of rel_grad = ‖g‖/‖θ‖ across layers (vanishing_spread compares a
layer with the layers after it), the largest input-side/output-side rel_grad ratio (exploding_
spread), the largest rel_grad (exploding_ratio), and the verdict with default thresholds.
MLPs: 32 -> depth × 64 -> 10, cross-entropy on random data, batch 256, at initialisation and
after 100 steps of SGD (lr 0.05, momentum 0.9). RNNs: 8 -> 64 hidden -> 1 from the last state,
MSE, batch 32, T time steps, at initialisation. 3 seeds each; ranges are over seeds.

    .venv/bin/python benchmarks/gradient_health_thresholds.py
"""

from __future__ import annotations

import math

import torch
from torch import nn

from adaptim import GradientMonitor


def mlp(depth, act, init="default", bn=False, gain=1.0):
    layers, d = [], 32
    for _ in range(depth):
        lin = nn.Linear(d, 64)
        if init == "he":
            nn.init.normal_(lin.weight, std=gain * math.sqrt(2 / d))
            nn.init.zeros_(lin.bias)
        layers += [lin] + ([nn.BatchNorm1d(64)] if bn else []) + [act()]
        d = 64
    layers.append(nn.Linear(64, 10))
    return nn.Sequential(*layers)


class Seq(nn.Module):
    def __init__(self, cell, hh_gain=None):
        super().__init__()
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](8, 64, batch_first=True)
        if hh_gain is not None:
            nn.init.orthogonal_(self.rnn.weight_hh_l0)
            with torch.no_grad():
                self.rnn.weight_hh_l0.mul_(hh_gain)
        self.fc = nn.Linear(64, 1)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


def spreads(stats):
    # as check() does: depth comparisons between weight layers, normalization layers skipped
    rel = [s.rel_grad for s in stats if not s.kind.startswith(("BatchNorm", "LayerNorm"))]
    down = min(rel[i] / max(rel[i + 1:]) for i in range(len(rel) - 1))  # vanishing side
    up = max(rel[i] / min(rel[i + 1:]) for i in range(len(rel) - 1))    # exploding side
    return down, up, max(rel)


def mlp_case(label, steps, **kw):
    rows = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = mlp(**kw)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        x, y = torch.randn(256, 32), torch.randint(0, 10, (256,))
        for step in range(steps + 1):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            if step < steps:
                opt.step()
        report = GradientMonitor(model).check()
        rows.append((*spreads(report.stats), report.status))
    show(f"{label} steps={steps}", rows)


def rnn_case(label, cell, T, hh_gain=None):
    rows = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = Seq(cell, hh_gain)
        x, y = torch.randn(32, T, 8), torch.randn(32, 1)
        nn.functional.mse_loss(model(x), y).backward()
        report = GradientMonitor(model).check()
        rows.append((*spreads(report.stats), report.status))
    show(f"{label} T={T}", rows)


def show(label, rows):
    down = [r[0] for r in rows]
    up = [r[1] for r in rows]
    top = [r[2] for r in rows]
    verdicts = sorted({r[3] for r in rows})
    print(f"{label:<34} min-down {min(down):8.1e}  max-up {max(up):8.1e}  "
          f"max rel_grad {min(top):8.1e}..{max(top):8.1e}  -> {'/'.join(verdicts)}")


def main():
    torch.set_num_threads(1)
    print("MLPs (healthy expected: ReLU+He, BN; vanishing expected: deep sigmoid/tanh, "
          "ReLU with torch default init)")
    for depth in (4, 10, 20):
        for steps in (0, 100):
            mlp_case(f"sigmoid default d={depth}", steps, depth=depth, act=nn.Sigmoid)
            mlp_case(f"tanh default d={depth}", steps, depth=depth, act=nn.Tanh)
            mlp_case(f"relu default d={depth}", steps, depth=depth, act=nn.ReLU)
            mlp_case(f"relu He d={depth}", steps, depth=depth, act=nn.ReLU, init="he")
            mlp_case(f"sigmoid + BN d={depth}", steps, depth=depth, act=nn.Sigmoid, bn=True)
            mlp_case(f"relu He + BN d={depth}", steps, depth=depth, act=nn.ReLU, init="he",
                     bn=True)
    for gain in (1.5, 2.0):
        for depth in (10, 20):
            mlp_case(f"relu He×{gain} d={depth}", 0, depth=depth, act=nn.ReLU, init="he",
                     gain=gain)
    print("RNNs (exploding expected: tanh RNN with W_hh = gain × orthogonal, gain >= 2, long T)")
    for T in (20, 100):
        rnn_case("rnn tanh default", "rnn", T)
        rnn_case("lstm default", "lstm", T)
        rnn_case("gru default", "gru", T)
        for gain in (1.5, 2.0, 3.0):
            rnn_case(f"rnn tanh W_hh gain {gain}", "rnn", T, gain)


if __name__ == "__main__":
    main()
