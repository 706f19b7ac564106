"""What bfloat16 optimizer state costs in accuracy, on a real small task.

scikit-learn's digits (1,797 8x8 images, 10 classes; 75/25 split), an MLP 64-256-256-10 with
ReLU, mini-batches of 64 for ``epochs`` epochs, the same seed for both runs: fused steps with
float32 state vs ``state_dtype=torch.bfloat16``. Prints final training loss and test accuracy.
Run: ``python -m adaptim.bench.bf16_digits`` (needs the ``lab`` extra for scikit-learn).
"""

from __future__ import annotations

import argparse
import json

import torch

import adaptim

SETTINGS = {"momentum": dict(lr=0.05), "adagrad": dict(lr=0.05), "rmsprop": dict(lr=1e-3),
            "adadelta": dict(lr=1.0), "adam": dict(lr=1e-3), "adamw": dict(lr=1e-3)}


def _data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return f(xtr), torch.tensor(ytr), f(xte), torch.tensor(yte)


def train(name: str, state_dtype, epochs: int, data, seed: int = 0) -> dict:
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    opt = adaptim.create(name, model.parameters(), fused=True, state_dtype=state_dtype,
                         **SETTINGS[name])
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss_fn(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    with torch.no_grad():
        train_loss = loss_fn(model(xtr), ytr).item()
        test_acc = (model(xte).argmax(1) == yte).float().mean().item()
    return {"train_loss": train_loss, "test_accuracy": test_acc}


def run(epochs: int = 30, names=None) -> dict:
    data = _data()
    out = {}
    for name in names or SETTINGS:
        out[name] = {label: train(name, dt, epochs, data)
                     for label, dt in (("fp32 state", None), ("bf16 state", torch.bfloat16))}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptim.bench.bf16_digits")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    res = run(args.epochs)
    print(f"digits MLP, {args.epochs} epochs: final training loss / test accuracy")
    print("| optimizer | fp32 state | bf16 state |\n|---|---|---|")
    for name, r in res.items():
        a, b = r["fp32 state"], r["bf16 state"]
        print(f"| {name} | {a['train_loss']:.4f} / {100 * a['test_accuracy']:.1f}% | "
              f"{b['train_loss']:.4f} / {100 * b['test_accuracy']:.1f}% |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
