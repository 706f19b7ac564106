"""The reference rule of Gradient descent, heavy-ball momentum and Nesterov momentum: the update,
per tensor, with torch operations. The math, the state and the options are in
:mod:`adaptim.algorithms.sgd`."""

from adaptim.algorithms.sgd import sgd, sgd_foreach, sgd_tensor

__all__ = ["sgd", "sgd_foreach", "sgd_tensor"]
