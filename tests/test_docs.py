"""The optimizer classes' docstrings: composed from the spec (math, every argument, state), and
their examples (and the specs') run as doctests with the output they show."""

import doctest
import importlib
import inspect
import pydoc

import pytest
import torch

import adaptim

MODULES = ["adaptim", "adaptim.optimizers.sgd", "adaptim.optimizers.adagrad",
           "adaptim.optimizers.rmsprop", "adaptim.optimizers.adadelta", "adaptim.optimizers.adam",
           "adaptim.algorithms",
           "adaptim.algorithms.sgd"]
CLASSES = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"torch": torch, "adaptim": adaptim},
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


@pytest.mark.parametrize("name", CLASSES)
def test_help_shows_math_and_every_argument(name):
    cls = getattr(adaptim, name)
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    spec_module = importlib.import_module(type(cls.algorithm).__module__)
    first_rule_line = next(line.strip() for line in spec_module.__doc__.splitlines() if "←" in line)
    assert first_rule_line in text  # the update rule, from the spec
    for arg in inspect.signature(cls.__init__).parameters:
        if arg != "self":
            assert f"\n    {arg} (" in cls.__doc__, f"{name}.{arg} is not documented"
    for option in ("fused", "state_dtype", "max_grad_norm", "on_nonfinite"):
        assert f"    {option} (" in text
    torch_args = set(inspect.signature(getattr(torch.optim, name).__init__).parameters) - {"self"}
    torch_part = cls.__doc__.split("adaptim's options")[0]
    assert all(f"    {arg} (" in torch_part for arg in torch_args)
    assert ">>> " in cls.__doc__ and "Parameter containing:" in cls.__doc__
