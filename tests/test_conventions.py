"""Each ``convention=`` preset reproduces that framework's published update rule exactly.

The rules below are written in each framework's own form, from its documentation, with its own
default hyperparameters — not from adaptim's code:

- TF1: tf.raw_ops.ApplyRMSProp / ApplyCenteredRMSProp, ApplyAdagrad, ApplyAdadelta, ApplyAdam,
  with the defaults of tf.compat.v1.train.RMSPropOptimizer (decay 0.9, ε 1e-10, mean square
  initialised to ones), AdagradOptimizer (accumulator 0.1), AdadeltaOptimizer (lr 0.001,
  ρ 0.95, ε 1e-8) and AdamOptimizer (lr 0.001, ε 1e-8).
- Keras 3: keras.optimizers.RMSprop (lr 0.001, ρ 0.9, ε 1e-7), Adagrad (lr 0.001, accumulator
  0.1, ε 1e-7), Adadelta (lr 0.001, ρ 0.95, ε 1e-7), Adam (lr 0.001, ε 1e-7, "epsilon hat").
- optax: rmsprop = chain(scale_by_rms(decay=0.9, eps=1e-8), scale(-lr), trace(momentum));
  adagrad = chain(scale_by_rss(0.1, eps=1e-7), scale(-lr)); adam (eps 1e-8, eps_root 0).
"""

import math

import numpy as np
import pytest
import torch

import adaptim
from cases import gradient_sequence

STEPS = 40
SHAPE = (3, 4)


# ----------------------------------------------------------------------------- framework rules
def tf1_rmsprop(lr, momentum=0.0, centered=False, decay=0.9, epsilon=1e-10):
    ms, mom, mg = np.ones(SHAPE), np.zeros(SHAPE), np.zeros(SHAPE)

    def step(var, grad):
        nonlocal ms, mom, mg
        ms = decay * ms + (1 - decay) * grad * grad
        if centered:
            mg = decay * mg + (1 - decay) * grad
            mom = momentum * mom + lr * grad / np.sqrt(ms - mg * mg + epsilon)
        else:
            mom = momentum * mom + lr * grad / np.sqrt(ms + epsilon)
        return var - mom
    return step


def keras_rmsprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    velocity, mom, average_grad = np.zeros(SHAPE), np.zeros(SHAPE), np.zeros(SHAPE)

    def step(variable, gradient):
        nonlocal velocity, mom, average_grad
        velocity = rho * velocity + (1 - rho) * np.square(gradient)
        if centered:
            average_grad = rho * average_grad + (1 - rho) * gradient
            denominator = velocity - np.square(average_grad) + epsilon
        else:
            denominator = velocity + epsilon
        increment = learning_rate * gradient / np.sqrt(denominator)
        if momentum > 0:
            mom = momentum * mom + increment
            return variable - mom
        return variable - increment
    return step


def optax_rmsprop(learning_rate, decay=0.9, eps=1e-8, momentum=None):
    nu, trace = np.zeros(SHAPE), np.zeros(SHAPE)

    def step(params, updates):
        nonlocal nu, trace
        nu = decay * nu + (1 - decay) * updates ** 2           # scale_by_rms
        updates = updates / np.sqrt(nu + eps)
        updates = -learning_rate * updates                       # scale(-lr)
        if momentum is not None:                                 # trace(decay=momentum)
            trace = updates + momentum * trace
            updates = trace
        return params + updates                                  # apply_updates
    return step


def tf1_adagrad(lr, initial_accumulator_value=0.1):
    accum = np.full(SHAPE, initial_accumulator_value)

    def step(var, grad):
        nonlocal accum
        accum = accum + grad * grad
        return var - lr * grad * (1 / np.sqrt(accum))
    return step


def keras_adagrad(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
    accumulator = np.full(SHAPE, initial_accumulator_value)

    def step(variable, gradient):
        nonlocal accumulator
        accumulator = accumulator + np.square(gradient)
        return variable - learning_rate * gradient / np.sqrt(accumulator + epsilon)
    return step


def optax_adagrad(learning_rate, initial_accumulator_value=0.1, eps=1e-7):
    sum_of_squares = np.full(SHAPE, initial_accumulator_value)

    def step(params, updates):
        nonlocal sum_of_squares
        sum_of_squares = updates ** 2 + sum_of_squares
        inv = np.where(sum_of_squares > 0, 1 / np.sqrt(sum_of_squares + eps), 0.0)
        return params - learning_rate * inv * updates
    return step


def tf_adadelta(lr=0.001, rho=0.95, epsilon=1e-8):
    accum, accum_update = np.zeros(SHAPE), np.zeros(SHAPE)

    def step(var, grad):
        nonlocal accum, accum_update
        accum = accum * rho + grad * grad * (1 - rho)
        update = np.sqrt(accum_update + epsilon) * (1 / np.sqrt(accum + epsilon)) * grad
        accum_update = accum_update * rho + update * update * (1 - rho)
        return var - update * lr
    return step


def tf_adam(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
    m, v, t = np.zeros(SHAPE), np.zeros(SHAPE), 0

    def step(variable, g):
        nonlocal m, v, t
        t += 1
        lr_t = learning_rate * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        return variable - lr_t * m / (np.sqrt(v) + epsilon)
    return step


def optax_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0):
    mu, nu, count = np.zeros(SHAPE), np.zeros(SHAPE), 0

    def step(params, updates):
        nonlocal mu, nu, count
        mu = b1 * mu + (1 - b1) * updates
        nu = b2 * nu + (1 - b2) * updates ** 2
        count += 1
        mu_hat, nu_hat = mu / (1 - b1 ** count), nu / (1 - b2 ** count)
        return params - learning_rate * mu_hat / (np.sqrt(nu_hat + eps_root) + eps)
    return step


# (adaptim class, constructor kwargs, framework rule) — the framework rule uses its own defaults.
PRESET_CASES = {
    "rmsprop-tf1": ("RMSprop", dict(convention="tf1", lr=0.01), tf1_rmsprop(0.01)),
    "rmsprop-tf1-momentum-centered": (
        "RMSprop", dict(convention="tf1", lr=0.01, momentum=0.9, centered=True),
        tf1_rmsprop(0.01, momentum=0.9, centered=True)),
    "rmsprop-keras": ("RMSprop", dict(convention="keras"), keras_rmsprop()),
    "rmsprop-keras-momentum": ("RMSprop", dict(convention="keras", momentum=0.9),
                               keras_rmsprop(momentum=0.9)),
    "rmsprop-keras-centered": ("RMSprop", dict(convention="keras", centered=True),
                               keras_rmsprop(centered=True)),
    "rmsprop-optax-momentum": ("RMSprop", dict(convention="optax", lr=0.01, momentum=0.9),
                               optax_rmsprop(0.01, momentum=0.9)),
    "adagrad-tf1": ("Adagrad", dict(convention="tf1", lr=0.1), tf1_adagrad(0.1)),
    "adagrad-keras": ("Adagrad", dict(convention="keras"), keras_adagrad()),
    "adagrad-optax": ("Adagrad", dict(convention="optax", lr=0.1), optax_adagrad(0.1)),
    "adadelta-tf1": ("Adadelta", dict(convention="tf1"), tf_adadelta()),
    "adadelta-keras": ("Adadelta", dict(convention="keras"), tf_adadelta(epsilon=1e-7)),
    "adam-tf1": ("Adam", dict(convention="tf1"), tf_adam()),
    "adam-keras": ("Adam", dict(convention="keras"), tf_adam(epsilon=1e-7)),
    "adam-optax": ("Adam", dict(convention="optax", lr=0.01), optax_adam(0.01)),
}


@pytest.mark.parametrize("case", sorted(PRESET_CASES))
def test_preset_reproduces_framework(case):
    name, kwargs, rule = PRESET_CASES[case]
    theta = np.random.default_rng(0).normal(size=SHAPE)
    p = torch.tensor(theta, requires_grad=True)
    opt = getattr(adaptim, name)([p], **kwargs)
    for g in gradient_sequence(SHAPE, STEPS):
        p.grad = g.clone()
        opt.step()
        theta = rule(theta, g.numpy())
    np.testing.assert_allclose(p.detach().numpy(), theta, rtol=1e-10, atol=1e-13)


def test_tf1_and_torch_rmsprop_really_differ():
    """The presets are not cosmetic: on the same gradients TF1's and torch's RMSprop differ."""
    out = []
    for conv in ("torch", "tf1"):
        p = torch.zeros(SHAPE, dtype=torch.float64, requires_grad=True)
        opt = adaptim.RMSprop([p], lr=0.01, convention=conv)
        for g in gradient_sequence(SHAPE, 5):
            p.grad = g.clone()
            opt.step()
        out.append(p.detach().clone())
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_explicit_arguments_override_the_preset():
    p = torch.zeros(2, requires_grad=True)
    opt = adaptim.RMSprop([p], convention="keras", eps=1e-3, alpha=0.99, eps_in_sqrt=False)
    g = opt.param_groups[0]
    assert (g["eps"], g["alpha"], g["eps_in_sqrt"], g["lr"], g["lr_in_momentum"]) == (
        1e-3, 0.99, False, 1e-3, True)
    # Passing a value equal to torch's default still counts as explicit.
    opt = adaptim.RMSprop([p], convention="keras", alpha=0.99)
    assert opt.param_groups[0]["alpha"] == 0.99


@pytest.mark.parametrize("name", ["RMSprop", "Adagrad", "Adadelta", "Adam", "AdamW"])
def test_torch_convention_is_the_default(name):
    p = torch.zeros(2, requires_grad=True)
    a = getattr(adaptim, name)([p]).param_groups[0]
    b = getattr(adaptim, name)([p], convention="torch").param_groups[0]
    t = getattr(torch.optim, name)([p]).param_groups[0]
    assert {k: v for k, v in a.items() if k != "params"} == \
           {k: v for k, v in b.items() if k != "params"}
    for key in t:
        if key not in ("params", "foreach", "fused"):
            assert a[key] == t[key], key


@pytest.mark.parametrize("bad", ["pytorch", "tf2", "", None, 3])
def test_unknown_convention_raises(bad):
    with pytest.raises(ValueError, match="convention"):
        adaptim.RMSprop([torch.zeros(1, requires_grad=True)], convention=bad)


def test_unknown_convention_suggests_close_name():
    with pytest.raises(ValueError, match="did you mean 'keras'"):
        adaptim.Adam([torch.zeros(1, requires_grad=True)], convention="kera")
