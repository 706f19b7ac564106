"""The reference rule of AdaGrad: the update, per tensor, with torch operations. The math, the
state and the options are in :mod:`adaptim.algorithms.adagrad`."""

from adaptim.algorithms.adagrad import adagrad, adagrad_foreach, adagrad_tensor

__all__ = ["adagrad", "adagrad_foreach", "adagrad_tensor"]
