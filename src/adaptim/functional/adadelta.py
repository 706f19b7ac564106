"""The reference rule of AdaDelta: the update, per tensor, with torch operations. The math, the
state and the options are in :mod:`adaptim.algorithms.adadelta`."""

from adaptim.algorithms.adadelta import adadelta, adadelta_foreach, adadelta_tensor

__all__ = ["adadelta", "adadelta_foreach", "adadelta_tensor"]
