"""The optimizer classes: validation, parameter groups and state over the functional rules."""

from adaptim.optimizers.adadelta import Adadelta
from adaptim.optimizers.adagrad import Adagrad
from adaptim.optimizers.adam import Adam, AdamW
from adaptim.optimizers.rmsprop import RMSprop
from adaptim.optimizers.sgd import SGD

__all__ = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW"]
