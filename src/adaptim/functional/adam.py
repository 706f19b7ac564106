"""The reference rule of Adam, AMSGrad and AdamW: the update, per tensor, with torch operations.
The math, the state and the options are in :mod:`adaptim.algorithms.adam`."""

from adaptim.algorithms.adam import adam, adam_foreach, adam_tensor

__all__ = ["adam", "adam_foreach", "adam_tensor"]
