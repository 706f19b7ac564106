"""Gradient health, end to end: a deep sigmoid MLP (vanishing), the same depth with ReLU + He
init (healthy), a vanilla RNN with W_hh = 2·orthogonal over 100 steps (exploding) and that RNN
with max_grad_norm=1.0; prints each report and writes heatmaps + JSONL/CSV histories.

    .venv/bin/python examples/gradient_health_demo.py [--out adaptim-report/gradient-health]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import adaptim


def mlp(depth, act, he):
    layers, d = [], 32
    for _ in range(depth):
        lin = nn.Linear(d, 64)
        if he:
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)
        layers += [lin, act()]
        d = 64
    layers.append(nn.Linear(64, 10))
    return nn.Sequential(*layers)


class VanillaRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(8, 64, batch_first=True)
        nn.init.orthogonal_(self.rnn.weight_hh_l0)
        with torch.no_grad():
            self.rnn.weight_hh_l0.mul_(2.0)
        self.fc = nn.Linear(64, 1)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


def train_mlp(model, steps, every):
    opt = adaptim.Adam(model.parameters(), lr=1e-3)
    monitor = adaptim.GradientMonitor(model, opt, every=every)
    x, y = torch.randn(256, 32), torch.randint(0, 10, (256,))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return monitor


def train_rnn(steps, every, max_grad_norm=None):
    torch.manual_seed(0)
    model = VanillaRNN()
    opt = adaptim.SGD(model.parameters(), lr=1e-3, max_grad_norm=max_grad_norm)
    monitor = adaptim.GradientMonitor(model, opt, every=every)
    x, y = torch.randn(16, 100, 8), torch.randn(16, 1)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return monitor


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="adaptim-report/gradient-health")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    runs = {
        "sigmoid-mlp-20": train_mlp(mlp(20, nn.Sigmoid, he=False), args.steps, 5),
        "relu-he-mlp-20": train_mlp(mlp(20, nn.ReLU, he=True), args.steps, 5),
        "vanilla-rnn": train_rnn(max(args.steps // 4, 10), 1),
        "vanilla-rnn-clipped": train_rnn(max(args.steps // 4, 10), 1, max_grad_norm=1.0),
    }
    for name, monitor in runs.items():
        report = monitor.check()
        print(f"== {name}\n{report}\n")
        monitor.to_jsonl(out / f"{name}.jsonl")
        monitor.to_csv(out / f"{name}.csv")
        try:
            monitor.plot_heatmap(out / f"{name}.png", title=f"{name}: {report.status}")
        except ImportError as err:
            print(f"(no heatmap: {err})")
    print(f"histories and heatmaps in {out}/")


if __name__ == "__main__":
    main()
