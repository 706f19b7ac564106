import pytest
import torch

import adaptim
from adaptim.registry import REGISTRY


def test_list_optimizers_names_the_textbook_family():
    assert adaptim.list_optimizers() == ["sgd", "momentum", "nesterov", "adagrad", "rmsprop",
                                         "adadelta", "adam", "adamw"]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_create_builds_the_named_algorithm(name):
    p = torch.zeros(2, requires_grad=True)
    opt = adaptim.create(name, [p], lr=0.01)
    spec = REGISTRY[name]
    assert type(opt) is spec.cls
    for key, value in spec.settings.items():
        assert opt.param_groups[0][key] == value
    assert opt.param_groups[0]["lr"] == 0.01
    p.grad = torch.ones(2)
    opt.step()
    assert (p.detach() < 0).all()


def test_create_is_case_insensitive_and_kwargs_override_settings():
    opt = adaptim.create("Momentum", [torch.zeros(1, requires_grad=True)], momentum=0.5)
    assert opt.param_groups[0]["momentum"] == 0.5


@pytest.mark.parametrize("bad", ["adamx", "", "rmsprob"])
def test_unknown_name_lists_valid_names(bad):
    with pytest.raises(ValueError, match="valid names: sgd, momentum"):
        adaptim.create(bad, [torch.zeros(1, requires_grad=True)])


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="did you mean 'rmsprop'"):
        adaptim.create("rmsprob", [torch.zeros(1, requires_grad=True)])


def test_public_api_is_explicit():
    for name in adaptim.__all__:
        assert hasattr(adaptim, name), name
    import adaptim.functional as F
    for name in F.__all__:
        assert callable(getattr(F, name))
