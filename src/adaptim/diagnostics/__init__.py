"""Gradient-health diagnostics: see vanishing and exploding gradients while training.

Reads gradients only; never changes training results. By role: ``collect`` (layers, hooks,
per-layer statistics), ``diagnose`` (statistics -> verdict), ``advise`` (verdict -> advice),
``export`` (JSON Lines, CSV, TensorBoard, text); :class:`GradientMonitor` ties them together.
Plotting lives in :mod:`adaptim.diagnostics._plot`, imported only when a heatmap is asked for.
"""

from adaptim.diagnostics.collect import LayerStats
from adaptim.diagnostics.diagnose import GradientReport, GradientThresholds
from adaptim.diagnostics.errors import NonFiniteGradientError
from adaptim.diagnostics.monitor import GradientMonitor

__all__ = ["GradientMonitor", "GradientReport", "GradientThresholds", "LayerStats",
           "NonFiniteGradientError"]
