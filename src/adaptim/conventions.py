"""Framework conventions: one word that reproduces another framework's optimizer exactly.

``RMSprop(params, convention="keras")`` sets every default that differs between frameworks
(ε value and placement, starting accumulator, decay rate, whether η sits inside the momentum
buffer, the default learning rate where that framework has one). Arguments given explicitly
always win over the preset.

Sources (each preset is checked against these update rules in tests/test_conventions.py):

- torch: torch.optim.{RMSprop, Adagrad, Adadelta, Adam}, PyTorch 2.x documentation.
- tf1:   tf.compat.v1.train.{RMSPropOptimizer, AdagradOptimizer, AdadeltaOptimizer, AdamOptimizer}
         and the ApplyRMSProp / ApplyAdagrad / ApplyAdadelta / ApplyAdam kernels they call.
         RMSPropOptimizer starts its mean square at 1.0; AdagradOptimizer's accumulator at 0.1
         and it has no ε; AdamOptimizer uses "epsilon hat" (ε added to √v before bias
         correction, Kingma & Ba §2).
- keras: keras.optimizers.{RMSprop, Adagrad, Adadelta, Adam} (Keras 3): ε = 1e-7 inside the
         square root for RMSprop/Adagrad, "epsilon hat" for Adam, η inside the momentum buffer.
- optax: optax.{rmsprop, adagrad, adadelta, adam}: rmsprop decay 0.9, ε = 1e-8 inside the root,
         momentum as optax.trace applied after scaling by -η; adagrad ε = 1e-7 inside the root,
         accumulator 0.1; adam as PyTorch (eps_root = 0).

Learning rates: where a framework has no default (TF1 RMSProp/Adagrad, optax) the preset keeps
PyTorch's default learning rate; pass ``lr`` to match your run.
"""

from __future__ import annotations

import difflib

from adaptim.algorithms import ALGORITHMS

__all__ = ["CONVENTIONS", "PRESETS", "check", "resolve"]

CONVENTIONS = ("torch", "tf1", "keras", "optax")

# algorithm name -> convention -> settings that differ from the signature defaults; each preset
# lives in its algorithm's spec (adaptim.algorithms).
PRESETS: dict[str, dict[str, dict[str, object]]] = {
    name: spec.presets for name, spec in ALGORITHMS.items() if spec.presets}


_NONE_MEANS_PRESET = frozenset({"eps_in_sqrt", "eps_hat", "lr_in_momentum"})


class Default(float):
    """A float default that remembers it was not passed explicitly, so a convention may replace
    it. It compares and computes exactly like the float it wraps."""

    def __repr__(self) -> str:
        return float.__repr__(self)


def check(convention) -> None:
    """ValueError naming the valid conventions (and the closest one) unless ``convention`` is
    one of :data:`CONVENTIONS`."""
    if not isinstance(convention, str) or convention not in CONVENTIONS:
        hint = difflib.get_close_matches(str(convention), CONVENTIONS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"Unknown convention {convention!r}{extra}; valid conventions: "
                         f"{', '.join(CONVENTIONS)}")


def resolve(optimizer: str, convention: str, given: dict[str, object]) -> dict[str, object]:
    """Merge a convention's preset under the explicitly given arguments.

    ``given`` holds the constructor's arguments; :class:`Default` instances (torch's arguments
    left at their default) and ``None`` for adaptim's own switches (``eps_in_sqrt``, ``eps_hat``,
    ``lr_in_momentum``, whose signature default is None) count as not given and are taken from
    the preset. ``None`` for one of torch's numeric arguments stays None and is refused by
    validation, as torch.optim refuses it.
    """
    check(convention)
    preset = PRESETS[optimizer][convention]
    out = {}
    for key, value in given.items():
        if key in preset and ((value is None and key in _NONE_MEANS_PRESET)
                              or type(value) is Default):
            out[key] = preset[key]
        elif type(value) is Default:
            out[key] = float(value)
        else:
            out[key] = value
    return out
