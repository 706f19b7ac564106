r"""GradientMonitor: per-layer gradient statistics, a diagnosis and advice, in four roles:

- :mod:`~adaptim.diagnostics.collect`: layers, the optimizer hooks, the statistics of a step;
- :mod:`~adaptim.diagnostics.diagnose`: thresholds, the verdict and notes (pure functions);
- :mod:`~adaptim.diagnostics.advise`: the advice prose for a verdict;
- :mod:`~adaptim.diagnostics.export`: JSON Lines, CSV, TensorBoard, the text table; the heatmap
  is in :mod:`~adaptim.diagnostics._plot` (matplotlib, imported only when asked for).

:class:`GradientMonitor` ties them together. It only reads tensors, never writes a gradient,
parameter or state, and uses no random numbers, so training with and without it is
bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn

from adaptim.diagnostics import export
from adaptim.diagnostics.advise import advice
from adaptim.diagnostics.collect import Collector, Layer, LayerStats
from adaptim.diagnostics.diagnose import (NORMS, GradientReport, GradientThresholds, diagnose,
                                          model_traits, notes)

__all__ = ["GradientMonitor", "GradientReport", "GradientThresholds", "LayerStats"]


class GradientMonitor:
    """Watch the gradients of ``model`` and say whether they vanish or explode.

    Args:
        model: the network (its parameters are grouped into layers by module).
        optimizer: optional. When given, the monitor records automatically through
            ``optimizer.register_step_pre_hook`` (gradients, after backward and any
            GradScaler unscaling) and ``register_step_post_hook`` (update-to-parameter ratio and
            the adaptive effective step size), on every ``every``-th step, counting from the
            first. Without it, call :meth:`record` after ``loss.backward()``.
        every: record every this many optimizer steps (default 10).
        thresholds: a :class:`GradientThresholds` (defaults documented there).
        max_history: keep at most this many records (oldest dropped); None keeps all.
        track_updates: measure ``update_ratio`` (default True). It keeps one copy of the
            parameters (allocated on the first recorded step, refreshed on recorded steps only);
            False saves that memory.

    Example::

        >>> monitor = adaptim.GradientMonitor(model, opt, every=10)
        >>> for x, y in data:
        ...     opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
        >>> report = monitor.check()
        >>> print(report.status, report.layers, report.advice)
        >>> monitor.to_jsonl("grads.jsonl"); monitor.plot_heatmap("grads.png")
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 every: int = 10, thresholds: GradientThresholds | None = None,
                 max_history: int | None = None, track_updates: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got "
                            f"{type(optimizer).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Invalid every: {every!r} (must be an integer >= 1)")
        if thresholds is None:
            thresholds = GradientThresholds()
        if not isinstance(thresholds, GradientThresholds):
            raise TypeError("thresholds must be a GradientThresholds")
        if max_history is not None and (isinstance(max_history, bool)
                                        or not isinstance(max_history, int) or max_history < 1):
            raise ValueError(f"Invalid max_history: {max_history!r} (an integer >= 1 or None)")
        if not isinstance(track_updates, bool):
            raise TypeError(f"track_updates must be True or False, got {track_updates!r}")
        self.model = model
        self.optimizer = optimizer
        self.thresholds = thresholds
        self._collector = Collector(model, optimizer, every=every, max_history=max_history,
                                    track_updates=track_updates)
        self._norm_layers = frozenset(layer.name for layer in self.layers
                                      if isinstance(layer.module, NORMS))

    every = property(lambda self: self._collector.every,
                     lambda self, value: setattr(self._collector, "every", value),
                     doc="Record every this many optimizer steps.")
    max_history = property(lambda self: self._collector.max_history,
                           lambda self, value: setattr(self._collector, "max_history", value),
                           doc="Keep at most this many records (None: all).")
    track_updates = property(lambda self: self._collector.track_updates,
                             lambda self, value: setattr(self._collector, "track_updates", value),
                             doc="Whether recorded steps measure the update ratio.")

    @property
    def layers(self) -> list[Layer]:
        """The layers watched, in registration order (``.name``, ``.kind``, ``.params``)."""
        return self._collector.layers

    @property
    def history(self) -> list[dict]:
        """The records, oldest first: ``{"step": int, "layers": [LayerStats as dict, ...]}``."""
        return self._collector.history

    @property
    def steps_seen(self) -> int:
        """Optimizer steps seen through the hooks."""
        return self._collector.steps_seen

    def close(self) -> None:
        """Remove the optimizer hooks (the history stays)."""
        self._collector.close()

    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, step: int | None = None, *, adaptive: bool = True) -> dict:
        """Read the current gradients (call after ``loss.backward()``) and append a record to
        :attr:`history`: ``{"step": int, "layers": [LayerStats as dict, ...]}``. Layers without
        gradients are left out. Returns the record."""
        return self._collector.record(step, adaptive=adaptive)

    def check(self, record: dict | None = None) -> GradientReport:
        """Diagnose the latest record (recording the current gradients first if there is none
        yet), or ``record`` if given (rules in :mod:`adaptim.diagnostics.diagnose`)."""
        if record is None:
            record = self.history[-1] if self.history else self.record()
        stats = [LayerStats(**s) for s in record["layers"]]
        verdict = diagnose(stats, self.thresholds, self._norm_layers)
        kinds = {s.layer: s.kind for s in stats}
        clip = getattr(self.optimizer, "defaults", {}).get("max_grad_norm")
        return GradientReport(status=verdict.status, step=record["step"],
                              layers=verdict.layers,
                              advice=advice(verdict, kinds, model_traits(self.model)),
                              notes=notes(stats, self.thresholds, clip), stats=stats)

    def rows(self) -> list[dict]:
        """The history flattened: one dict per (step, layer)."""
        return export.rows(self.history)

    def to_jsonl(self, path) -> None:
        """Write the history as JSON Lines, one record (step + its layers) per line.
        Non-finite numbers are written as the strings "nan", "inf", "-inf"."""
        export.to_jsonl(self.history, path)

    def to_csv(self, path) -> None:
        """Write the history as CSV, one row per (step, layer); empty cells for missing values."""
        export.to_csv(self.history, path)

    def to_tensorboard(self, log_dir=None, writer=None, prefix: str = "gradients") -> None:
        """Write the history as TensorBoard scalars (``{prefix}/grad_norm/{layer}``, ...)
        through :mod:`torch.utils.tensorboard`. Needs the optional ``tensorboard`` package
        (not an adaptim dependency): ImportError with instructions if it is missing."""
        export.to_tensorboard(self.history, log_dir=log_dir, writer=writer, prefix=prefix)

    def plot_heatmap(self, path=None, *, title: str | None = None):
        """A layers × steps heatmap of log10 gradient norm (matplotlib, imported only here);
        the layers that :meth:`check` flags on the latest record are named in red. Saves to
        ``path`` if given; returns the figure."""
        from adaptim.diagnostics._plot import gradient_heatmap
        flagged = self.check().layers if self.history else None
        return gradient_heatmap(self.history, path=path, title=title, highlight=flagged)
