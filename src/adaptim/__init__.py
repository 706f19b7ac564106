"""adaptim: the adaptive gradient-descent family for PyTorch, exact and drop-in for torch.optim.

>>> import torch, adaptim
>>> model = torch.nn.Linear(4, 1)
>>> opt = adaptim.RMSprop(model.parameters(), lr=1e-3, eps_in_sqrt=True)
>>> opt = adaptim.create("nesterov", model.parameters(), lr=0.1)
>>> type(opt).__name__, opt.defaults["momentum"], opt.defaults["nesterov"]
('SGD', 0.9, True)

Each algorithm's math, state and kernel fields live in :mod:`adaptim.algorithms`.
"""

from adaptim import algorithms, conventions, functional
from adaptim.clip import adaptive_clip_grad_, clip_grad_norm_, clip_grad_value_
from adaptim.diagnostics import (GradientMonitor, GradientReport, GradientThresholds,
                                 NonFiniteGradientError)
from adaptim.optimizers import SGD, Adadelta, Adagrad, Adam, AdamW, RMSprop
from adaptim.registry import create, get_spec, list_optimizers

__version__ = "0.1.0"

__all__ = [
    "SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW",
    "create", "get_spec", "list_optimizers", "algorithms", "conventions", "functional",
    "__version__",
    "clip_grad_norm_", "clip_grad_value_", "adaptive_clip_grad_",
    "GradientMonitor", "GradientReport", "GradientThresholds", "NonFiniteGradientError",
]
