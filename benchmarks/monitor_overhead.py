"""Overhead of GradientMonitor on a training step (forward + backward + optimizer.step()).

Runs the same training loop without a monitor, with a monitor recording every 10 steps (and
calling check() each time it records), and recording every step; blocks of 10 steps are
interleaved (base, every=10, every=1, base, ...) so machine noise hits all three alike. Two
clocks: wall time and this process's CPU time (``time.process_time``, which other processes on
a shared, overloaded machine disturb far less; with --threads 1 it is the work done). Overheads
are from the median block. A ratio within one process: absolute times vary on shared machines.

    .venv/bin/python benchmarks/monitor_overhead.py [--threads 2] [--blocks 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import adaptim


def mlp():
    layers, d = [], 256
    for _ in range(8):
        lin = nn.Linear(d, 512)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")  # He: no vanishing, no denormals
        layers += [lin, nn.ReLU()]
        d = 512
    layers.append(nn.Linear(512, 10))
    return nn.Sequential(*layers)


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(32, 128)
        self.rnn = nn.LSTM(128, 256, num_layers=2, batch_first=True)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        return self.fc(self.rnn(self.emb(x))[0][:, -1])


WORKLOADS = {
    "mlp 8x512 (2.2M params), batch 256, Adam": (mlp, lambda: torch.randn(256, 256)),
    "lstm 2x256 (0.9M params), batch 32 x 50 steps, Adam": (LSTMNet,
                                                            lambda: torch.randn(32, 50, 32)),
}


def bench(make_model, make_x, blocks, steps_per_block=10):
    torch.manual_seed(0)
    x = make_x()
    y = torch.randint(0, 10, (x.shape[0],))
    runs = {}
    for label, every in (("base", None), ("every=10", 10), ("every=1", 1)):
        torch.manual_seed(1)  # the three runs train identical models on identical data
        model = make_model()
        opt = adaptim.Adam(model.parameters(), lr=1e-4)
        monitor = adaptim.GradientMonitor(model, opt, every=every) if every else None
        runs[label] = (model, opt, monitor, [])

    def block(model, opt, monitor):
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps_per_block):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            if monitor is not None and monitor.steps_seen % monitor.every == 1 % monitor.every:
                monitor.check()
        return time.perf_counter() - start, time.process_time() - cpu

    for model, opt, monitor, _ in runs.values():  # warm-up
        block(model, opt, monitor)
    for _ in range(blocks):
        for model, opt, monitor, times in runs.values():
            times.append([t / steps_per_block for t in block(model, opt, monitor)])
    out = {}
    for clock, k in (("wall", 0), ("cpu", 1)):
        base = statistics.median(t[k] for t in runs["base"][3])
        row = {"base_ms": 1e3 * base}
        for label in ("every=10", "every=1"):
            t = statistics.median(t[k] for t in runs[label][3])
            row[label] = (1e3 * t, 100 * (t - base) / base)
        out[clock] = row
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.blocks} "
          "blocks of 10 steps")
    for name, (make_model, make_x) in WORKLOADS.items():
        result = bench(make_model, make_x, args.blocks)
        for clock, r in result.items():
            print(f"{name} [{clock:>4}]: step {r['base_ms']:.1f} ms | every=10 (+check): "
                  f"{r['every=10'][0]:.1f} ms ({r['every=10'][1]:+.1f}%) | every=1: "
                  f"{r['every=1'][0]:.1f} ms ({r['every=1'][1]:+.1f}%)")


if __name__ == "__main__":
    main()
