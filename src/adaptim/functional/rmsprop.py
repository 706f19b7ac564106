"""The reference rule of RMSProp: the update, per tensor, with torch operations. The math, the
state and the options are in :mod:`adaptim.algorithms.rmsprop`."""

from adaptim.algorithms.rmsprop import rmsprop, rmsprop_foreach, rmsprop_tensor

__all__ = ["rmsprop", "rmsprop_foreach", "rmsprop_tensor"]
