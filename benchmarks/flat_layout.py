"""The flat layout against the default layout and one tensor: ms per step.

    python benchmarks/flat_layout.py                 # 5,000 x 1,000 float32, 9 rounds
    python benchmarks/flat_layout.py --tensors 1000 --elements 5000 --rounds 15

For each optimizer (Adam, RMSprop, SGD with momentum) four set-ups of the same total size run
in one process, interleaved round by round (so a busy machine slows them alike):

- ``default``: ``--tensors`` tensors, the default layout;
- ``flat``: the same with ``flat=True``, gradients kept as the buffer's views (the loop with
  ``zero_grad(set_to_none=False)``);
- ``flat/new-grads``: ``flat=True`` with a new gradient tensor per parameter before each step
  (what backward leaves after ``zero_grad()``), assigned outside the timed region;
- ``one``: one tensor of ``tensors x elements`` elements.

Each round times 3 steps of each; the median over rounds is printed with the range and the
ratio to ``one``. Print ``uptime`` beside it: on a shared machine compare ratios, not times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import adaptim

KINDS = ("default", "flat", "flat/new-grads", "one")


def _setup(kind: str, name: str, tensors: int, elements: int):
    gen = torch.Generator().manual_seed(0)
    shapes = [(tensors * elements,)] if kind == "one" else [(elements,)] * tensors
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-2
    opt = adaptim.create(name, params, lr=1e-3, flat=kind.startswith("flat"))
    opt.zero_grad(set_to_none=False)  # flat: the gradients are the buffer's views from here on
    for p in params:
        p.grad.normal_(generator=gen)
    opt.step()
    opt.step()
    return params, opt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=5000)
    parser.add_argument("--elements", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in ("adam", "rmsprop", "momentum"):
        runs = {k: _setup(k, name, args.tensors, args.elements) for k in KINDS}
        times = {k: [] for k in KINDS}
        for _ in range(args.rounds):
            for kind in KINDS:
                params, opt = runs[kind]
                total = 0.0
                for _ in range(3):
                    if kind == "flat/new-grads":
                        for p in params:
                            p.grad = torch.ones_like(p)
                    start = time.perf_counter()
                    opt.step()
                    total += time.perf_counter() - start
                times[kind].append(total / 3 * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name:9s}" + "  ".join(
            f"{k} {med[k]:.1f} ms [{min(times[k]):.1f}-{max(times[k]):.1f}] "
            f"({med[k] / med['one']:.2f}x)" for k in KINDS), flush=True)


if __name__ == "__main__":
    main()
