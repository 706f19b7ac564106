"""The table of named optimizers that tools (CLI, lab, tests) pick from.

Each entry is a class plus the settings that make it the named textbook algorithm, so
``create("nesterov", params)`` is ``SGD(params, momentum=0.9, nesterov=True)``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from adaptim.optimizers import SGD, Adadelta, Adagrad, Adam, AdamW, RMSprop

__all__ = ["OptimizerSpec", "REGISTRY", "create", "get_spec", "list_optimizers"]


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


def get_spec(name: str) -> OptimizerSpec:
    """The registry entry for ``name``; ValueError listing the valid names if unknown."""
    key = name.lower() if isinstance(name, str) else name
    if key not in REGISTRY:
        hint = difflib.get_close_matches(str(name).lower(), REGISTRY, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"Unknown optimizer {name!r}{extra}; valid names: "
                         f"{', '.join(REGISTRY)}")
    return REGISTRY[key]


def create(name: str, params, **kwargs):
    """Build the optimizer called ``name`` over ``params``; keyword arguments override its
    settings. Example: ``adaptim.create("rmsprop", model.parameters(), lr=1e-3)``."""
    return get_spec(name).create(params, **kwargs)
