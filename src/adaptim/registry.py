"""The table of named optimizers that tools (CLI, lab, tests) pick from.

Each entry is a class plus the settings that make it the named textbook algorithm, so
``create("nesterov", params)`` is ``SGD(params, momentum=0.9, nesterov=True)``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from adaptim.optimizers import SGD, Adadelta, Adagrad, Adam, AdamW, RMSprop

__all__ = ["FOREIGN_NAMES", "OptimizerSpec", "REGISTRY", "create", "foreign_name", "get_spec",
           "list_optimizers"]


@dataclass(frozen=True)
class OptimizerSpec:
    """One named optimizer: its class, the settings that define it and a one-line summary."""

    name: str
    cls: type
    settings: dict = field(default_factory=dict)
    summary: str = ""
    state_tensors: int = 0  # per-parameter state tensors (optimizer memory = this × params)

    def create(self, params, **kwargs):
        return self.cls(params, **{**self.settings, **kwargs})


REGISTRY: dict[str, OptimizerSpec] = {s.name: s for s in [
    OptimizerSpec("sgd", SGD, {}, "plain gradient descent: θ ← θ − η g", 0),
    OptimizerSpec("momentum", SGD, {"momentum": 0.9},
                  "heavy-ball momentum, μ = 0.9: v ← μ v + g ; θ ← θ − η v", 1),
    OptimizerSpec("nesterov", SGD, {"momentum": 0.9, "nesterov": True},
                  "Nesterov accelerated gradient (look-ahead momentum), μ = 0.9", 1),
    OptimizerSpec("adagrad", Adagrad, {},
                  "AdaGrad: divide by the root of the running *sum* of g²", 1),
    OptimizerSpec("rmsprop", RMSprop, {},
                  "RMSProp: divide by the root of a decaying average of g²", 1),
    OptimizerSpec("adadelta", Adadelta, {},
                  "AdaDelta: RMSProp with a unit-correcting ratio, no learning rate needed", 2),
    OptimizerSpec("adam", Adam, {},
                  "Adam: momentum on g plus RMSProp scaling, both bias-corrected", 2),
    OptimizerSpec("adamw", AdamW, {},
                  "AdamW: Adam with weight decay decoupled from the adaptive step", 2),
]}


def list_optimizers() -> list[str]:
    """The names ``create`` accepts, in textbook order."""
    return list(REGISTRY)


# Names that other libraries give to one of these optimizers under their own conventions.
# create() refuses them (the same word means different arithmetic there) and names the call
# that reproduces them: lower-case name -> (registry name, create() settings, what it is).
_TF1 = {"convention": "tf1"}
FOREIGN_NAMES: dict[str, tuple[str, dict, str]] = {
    # timm (timm.optim.create_optimizer_v2(opt=...)); timm's own "sgd" is Nesterov momentum
    "rmsproptf": ("rmsprop", _TF1, "timm's RMSpropTF (TensorFlow 1's RMSProp)"),
    # TensorFlow 1 (tf.compat.v1.train.*Optimizer)
    "rmspropoptimizer": ("rmsprop", _TF1, "TensorFlow 1's RMSPropOptimizer"),
    "adamoptimizer": ("adam", _TF1, "TensorFlow 1's AdamOptimizer"),
    "adagradoptimizer": ("adagrad", _TF1, "TensorFlow 1's AdagradOptimizer"),
    "adadeltaoptimizer": ("adadelta", _TF1, "TensorFlow 1's AdadeltaOptimizer"),
    "momentumoptimizer": ("momentum", {}, "TensorFlow 1's MomentumOptimizer (torch's rule: "
                          "v ← μ v + g, θ ← θ − η v; use_nesterov=True is 'nesterov')"),
    "gradientdescentoptimizer": ("sgd", {}, "TensorFlow 1's GradientDescentOptimizer"),
}
# Keras and optax use the plain names; qualified by the library ("keras.optimizers.RMSprop",
# "tf.keras.optimizers.Adam", "optax.adagrad", "keras:adam") they mean that library's convention.
_QUALIFIED = {"keras": "keras", "optax": "optax"}
_WITH_CONVENTION = ("rmsprop", "adagrad", "adadelta", "adam", "adamw")


def _call(name: str, settings: dict) -> str:
    extra = "".join(f", {k}={v!r}" for k, v in settings.items())
    return f"adaptim.create({name!r}, params{extra})"


def foreign_name(name: str) -> str | None:
    """If ``name`` is another library's name for one of these optimizers, a phrase saying what
    it is and which ``create(...)`` call reproduces it; else None."""
    parts = [p for p in name.strip().lower().replace(":", ".").replace("/", ".").split(".") if p]
    if not parts:
        return None
    base = parts[-1]
    if base in FOREIGN_NAMES:
        target, settings, what = FOREIGN_NAMES[base]
        return f"{what}: {_call(target, settings)} reproduces it"
    library = next((_QUALIFIED[p] for p in parts[:-1] if p in _QUALIFIED), None)
    if library is None:
        return None
    label = {"keras": "Keras", "optax": "optax"}[library]
    if base in _WITH_CONVENTION:
        note = ""
        if base == "adamw":
            note = (" (pass weight_decay=: " + ("Keras's default is 0.004" if library == "keras"
                                                else "optax's default is 1e-4")
                    + ", torch's 1e-2)")
        return f"{label}'s {base}: {_call(base, {'convention': library})} reproduces it{note}"
    if base in ("sgd", "momentum", "nesterov"):
        calls = (f"{_call('sgd', {})}, {_call('momentum', {'momentum': 0.9})} or "
                 f"{_call('nesterov', {})}")
        if library == "keras":
            return (f"Keras's SGD: {calls} computes the same steps while the learning rate is "
                    "constant (Keras keeps η inside the velocity)")
        return f"optax's {base}: {calls} computes the same steps (optax.trace is torch's buffer)"
    return None


def get_spec(name: str) -> OptimizerSpec:
    """The registry entry for ``name``; ValueError listing the valid names if unknown, and for
    another library's name (timm's ``"rmsproptf"``, ``"keras.optimizers.RMSprop"``, TF1's
    ``"RMSPropOptimizer"``) the ``create(...)`` call that reproduces it."""
    key = name.lower() if isinstance(name, str) else name
    if key not in REGISTRY:
        foreign = foreign_name(name) if isinstance(name, str) else None
        if foreign:
            raise ValueError(f"Unknown optimizer {name!r}: that is {foreign}; valid names: "
                             f"{', '.join(REGISTRY)}")
        hint = difflib.get_close_matches(str(name).lower(), REGISTRY, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"Unknown optimizer {name!r}{extra}; valid names: "
                         f"{', '.join(REGISTRY)}")
    return REGISTRY[key]


def create(name: str, params, **kwargs):
    """Build the optimizer called ``name`` over ``params``; keyword arguments override its
    settings. Example: ``adaptim.create("rmsprop", model.parameters(), lr=1e-3)``."""
    return get_spec(name).create(params, **kwargs)
