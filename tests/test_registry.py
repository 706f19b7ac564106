import numpy as np
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


# Names other libraries use: create() refuses them and names the call that reproduces them.
@pytest.mark.parametrize("name, call", [
    ("rmsproptf", "adaptim.create('rmsprop', params, convention='tf1')"),
    ("timm.optim.RMSpropTF", "adaptim.create('rmsprop', params, convention='tf1')"),
    ("tf.compat.v1.train.RMSPropOptimizer", "adaptim.create('rmsprop', params, convention='tf1')"),
    ("AdamOptimizer", "adaptim.create('adam', params, convention='tf1')"),
    ("AdagradOptimizer", "adaptim.create('adagrad', params, convention='tf1')"),
    ("keras.optimizers.RMSprop", "adaptim.create('rmsprop', params, convention='keras')"),
    ("tf.keras.optimizers.Adam", "adaptim.create('adam', params, convention='keras')"),
    ("keras:adadelta", "adaptim.create('adadelta', params, convention='keras')"),
    ("optax.rmsprop", "adaptim.create('rmsprop', params, convention='optax')"),
    ("optax.adamw", "adaptim.create('adamw', params, convention='optax')"),
    ("optax.sgd", "adaptim.create('momentum', params, momentum=0.9)"),
    ("MomentumOptimizer", "adaptim.create('momentum', params)"),
])
def test_foreign_name_error_says_which_create_reproduces_it(name, call):
    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError) as exc:
        adaptim.create(name, params)
    message = str(exc.value)
    assert call in message and "did you mean" not in message
    opt = eval(call, {"adaptim": adaptim, "params": params})  # the advice itself runs
    assert isinstance(opt, torch.optim.Optimizer)


def test_unrelated_qualified_name_gets_the_plain_error():
    with pytest.raises(ValueError, match=r"^Unknown optimizer 'keras.optimizers.Lion'; valid"):
        adaptim.create("keras.optimizers.Lion", [torch.zeros(1, requires_grad=True)])


def _timm_rmsprop_tf(grads, lr, alpha, eps, momentum):
    """timm.optim.RMSpropTF's single-tensor rule (timm 1.0, rmsprop_tf.py), written in NumPy:
    square_avg starts at 1 and moves by (g² − v)(1 − α), ε sits inside the root, and η is
    accumulated in the momentum buffer (lr_in_momentum=True, timm's default)."""
    p = np.zeros_like(grads[0])
    v = np.ones_like(p)
    buf = np.zeros_like(p)
    for g in grads:
        v = v + (g * g - v) * (1 - alpha)
        avg = np.sqrt(v + eps)
        if momentum > 0:
            buf = momentum * buf + lr * g / avg
            p = p - buf
        else:
            p = p - lr * g / avg
    return p


def _grad_sequence(n=40, size=64):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(size) * 10 ** rng.uniform(-3, 1) for _ in range(n)]


def _run_adaptim(grads, **kwargs):
    p = torch.zeros(grads[0].shape, dtype=torch.float64, requires_grad=True)
    opt = adaptim.create("rmsprop", [p], **kwargs)
    for g in grads:
        p.grad = torch.from_numpy(g)
        opt.step()
    return p.detach().numpy()


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("fused", [False, None])
def test_rmsproptf_advice_matches_timms_rule(momentum, fused):
    grads = _grad_sequence()
    want = _timm_rmsprop_tf(grads, lr=1e-2, alpha=0.9, eps=1e-10, momentum=momentum)
    got = _run_adaptim(grads, convention="tf1", momentum=momentum, fused=fused)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # the name's nearest neighbour, plain 'rmsprop', is a different rule
    plain = _run_adaptim(grads, momentum=momentum, fused=fused)
    assert np.abs(plain - want).max() > 0.05


def test_rmsproptf_advice_matches_timm_itself():
    timm_optim = _import_timm_optim()
    grads = _grad_sequence()
    for momentum in (0.0, 0.9):
        p = torch.zeros(grads[0].shape, dtype=torch.float64, requires_grad=True)
        opt = timm_optim.RMSpropTF([p], lr=1e-2, momentum=momentum)
        for g in grads:
            p.grad = torch.from_numpy(g)
            opt.step()
        got = _run_adaptim(grads, convention="tf1", momentum=momentum, fused=False)
        np.testing.assert_allclose(got, p.detach().numpy(), rtol=0, atol=1e-12)


def _import_timm_optim():
    try:
        import timm.optim
    except Exception as exc:  # timm imports torchvision at import time; a CUDA-only build fails
        pytest.skip(f"timm does not import here: {type(exc).__name__}: {exc}")
    return timm.optim


def test_timm_registry_reads_an_underscore_as_a_separator():
    timm_optim = _import_timm_optim()
    from timm.optim import OptimInfo, create_optimizer_v2
    from timm.optim._optim_factory import default_registry

    default_registry.register(OptimInfo(name="adaptimadamw", opt_class=adaptim.AdamW,
                                        has_betas=True))
    model = torch.nn.Linear(3, 2)
    assert type(create_optimizer_v2(model, "adaptimadamw", lr=1e-3)) is adaptim.AdamW
    # "adaptim_adamw" is read as the prefix "adaptim" and timm's own "adamw"
    assert type(create_optimizer_v2(model, "adaptim_adamw", lr=1e-3)) is torch.optim.AdamW
    assert timm_optim is not None
