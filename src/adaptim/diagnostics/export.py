"""Exporting: the history as rows, JSON Lines, CSV and TensorBoard scalars, and a report as
text. Exports carry full layer names; the text table shortens a long name only to a form no
other layer shares (see :func:`display_names`)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import fields

from adaptim.diagnostics.collect import LayerStats

__all__ = ["display_names", "render_report", "rows", "to_csv", "to_jsonl", "to_tensorboard"]

NAME_WIDTH = 32  # a layer-name column wider than this shortens the names that need it


def display_names(names: list[str], width: int = NAME_WIDTH) -> dict[str, str]:
    """Full name -> label of at most ``width`` characters where possible: a name that fits is
    itself; a longer one keeps its last dotted components behind "…" (``h.11.attn.c_attn`` of
    ``transformer.h.11.attn.c_attn``). Two labels never coincide: names whose shortened forms
    would be shared, and names whose last component alone is too long, stay in full."""
    labels = {}
    for name in names:
        label = name
        if len(name) > width:
            parts = name.split(".")
            for k in range(1, len(parts)):
                candidate = "…" + ".".join(parts[k:])
                if len(candidate) <= width:
                    label = candidate
                    break
        labels[name] = label
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {name: (label if counts[label] == 1 else name) for name, label in labels.items()}


def render_report(report) -> str:
    """The text of ``print(report)``: status, layers concerned, advice, notes and a per-layer
    table whose name column is as wide as the longest label."""
    lines = [f"gradient health at step {report.step}: {report.status.upper()}"]
    if report.layers:
        shown = ", ".join(report.layers[:12]) + (" ..." if len(report.layers) > 12 else "")
        lines.append(f"  layers concerned ({len(report.layers)}): {shown}")
    lines += [f"  advice: {a}" for a in report.advice]
    lines += [f"  note: {n}" for n in report.notes]
    labels = display_names([s.layer for s in report.stats])
    w = max([len("layer")] + [len(v) for v in labels.values()]) + 2
    kw = max([len("kind")] + [len(s.kind) for s in report.stats]) + 2
    lines.append(f"  {'layer':<{w}}{'kind':<{kw}}{'|g|':>10}{'|g|/|w|':>10}{'zero%':>7}"
                 f"{'upd/|w|':>10}")
    for s in report.stats:
        upd = f"{s.update_ratio:10.1e}" if s.update_ratio is not None else f"{'-':>10}"
        lines.append(f"  {labels[s.layer]:<{w}}{s.kind:<{kw}}{s.grad_norm:10.2e}"
                     f"{s.rel_grad:10.2e}{100 * s.zero_frac:7.1f}{upd}")
    return "\n".join(lines)


def rows(history: list[dict]) -> list[dict]:
    """The history flattened: one dict per (step, layer)."""
    return [{"step": r["step"], **s} for r in history for s in r["layers"]]


def to_jsonl(history: list[dict], path) -> None:
    """One record (step + its layers) per line; non-finite numbers as "nan", "inf", "-inf"."""
    def clean(v):
        return v if not isinstance(v, float) or math.isfinite(v) else str(v)
    with open(path, "w", encoding="utf-8") as fh:
        for r in history:
            layers = [{k: clean(v) for k, v in s.items()} for s in r["layers"]]
            fh.write(json.dumps({"step": r["step"], "layers": layers}) + "\n")


def to_csv(history: list[dict], path) -> None:
    """One row per (step, layer); empty cells for missing values."""
    columns = ["step"] + [f.name for f in fields(LayerStats)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows(history):
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})


def to_tensorboard(history: list[dict], log_dir=None, writer=None,
                   prefix: str = "gradients") -> None:
    """Scalars ``{prefix}/{quantity}/{layer}`` through :mod:`torch.utils.tensorboard`, which
    needs the optional ``tensorboard`` package: ImportError saying how to install it."""
    own = writer is None
    if own:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # tensorboard is optional
            raise ImportError("to_tensorboard needs the 'tensorboard' package "
                              "(pip install tensorboard); to_jsonl/to_csv need nothing"
                              ) from err
        writer = SummaryWriter(log_dir=log_dir)
    for row in rows(history):
        for key in ("grad_norm", "param_norm", "rel_grad", "zero_frac", "update_ratio",
                    "eff_lr_p50", "eps_frac"):
            if row.get(key) is not None:
                writer.add_scalar(f"{prefix}/{key}/{row['layer']}", row[key], row["step"])
    if own:
        writer.close()
