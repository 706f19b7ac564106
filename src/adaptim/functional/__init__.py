"""Pure update rules: one module per algorithm, the single place where each equation lives.

Every function updates parameters and state in place and works on real tensors (the optimizer
classes view complex tensors as real before calling, as torch.optim does).
"""

from adaptim.functional.adadelta import adadelta, adadelta_foreach, adadelta_tensor
from adaptim.functional.adagrad import adagrad, adagrad_foreach, adagrad_tensor
from adaptim.functional.adam import adam, adam_foreach, adam_tensor
from adaptim.functional.rmsprop import rmsprop, rmsprop_foreach, rmsprop_tensor
from adaptim.functional.sgd import sgd, sgd_foreach, sgd_tensor

__all__ = [
    "adadelta", "adadelta_tensor", "adagrad", "adagrad_tensor", "adam", "adam_tensor",
    "rmsprop", "rmsprop_tensor", "sgd", "sgd_tensor",
    "adadelta_foreach", "adagrad_foreach", "adam_foreach", "rmsprop_foreach", "sgd_foreach",
]
