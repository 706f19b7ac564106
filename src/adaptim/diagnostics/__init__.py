"""Gradient-health diagnostics: see vanishing and exploding gradients while training.

Reads gradients only; never changes training results. Plotting lives in
:mod:`adaptim.diagnostics._plot`, imported only when a heatmap is asked for.
"""

from adaptim.diagnostics.errors import NonFiniteGradientError
from adaptim.diagnostics.monitor import GradientMonitor, GradientReport, GradientThresholds

__all__ = ["GradientMonitor", "GradientReport", "GradientThresholds", "NonFiniteGradientError"]
