"""NumPy reference implementations, written straight from the update equations in
shared/docs/mission.md and the papers (not from torch's code). They are the oracle the tests
compare adaptim against. Each ``*_ref`` takes float64 arrays and a dict of hyperparameters in
adaptim's argument names, and returns a stepper: ``step(theta, g) -> theta`` that keeps its own
state (exposed as ``.state`` with torch's key names)."""

from __future__ import annotations

import math

import numpy as np


class Reference:
    """A NumPy optimizer over one parameter array; ``state`` uses torch's key names."""

    def __init__(self, **hp):
        self.hp = hp
        self.state: dict[str, np.ndarray | None] = {}
        self.t = 0

    def step(self, theta: np.ndarray, g: np.ndarray) -> np.ndarray:
        self.t += 1
        if self.hp.get("maximize", False):
            g = -g
        return self.update(theta.copy(), g.copy())


class SGDRef(Reference):
    # v_1 = g_1; v ← μ v + (1 − τ) g; θ ← θ − η (g + μ v if nesterov else v)
    def update(self, theta, g):
        lr, mu = self.hp.get("lr", 1e-3), self.hp.get("momentum", 0.0)
        tau, wd = self.hp.get("dampening", 0.0), self.hp.get("weight_decay", 0.0)
        g = g + wd * theta
        if mu != 0:
            v = self.state.get("momentum_buffer")
            v = g.copy() if v is None else mu * v + (1 - tau) * g
            self.state["momentum_buffer"] = v
            d = g + mu * v if self.hp.get("nesterov", False) else v
        else:
            d = g
        return theta - lr * d


class AdagradRef(Reference):
    # G ← G + g²; θ ← θ − η/(1 + (t−1)·decay) · g / (√G + ε)   [or √(G + ε)]
    def update(self, theta, g):
        hp = self.hp
        lr, eps = hp.get("lr", 1e-2), hp.get("eps", 1e-10)
        g = g + hp.get("weight_decay", 0.0) * theta
        G = self.state.get("sum")
        if G is None:
            G = np.full_like(theta, hp.get("initial_accumulator_value", 0.0))
        G = G + g * g
        self.state["sum"] = G
        eta_t = lr / (1 + (self.t - 1) * hp.get("lr_decay", 0.0))
        denom = np.sqrt(G + eps) if hp.get("eps_in_sqrt", False) else np.sqrt(G) + eps
        return theta - eta_t * g / denom


class RMSpropRef(Reference):
    # E[g²] ← α E[g²] + (1−α) g²; θ ← θ − η g / (√E[g²] + ε)   [or √(E[g²] + ε)]
    def update(self, theta, g):
        hp = self.hp
        lr, alpha, eps = hp.get("lr", 1e-2), hp.get("alpha", 0.99), hp.get("eps", 1e-8)
        mu = hp.get("momentum", 0.0)
        g = g + hp.get("weight_decay", 0.0) * theta
        Eg2 = self.state.get("square_avg")
        if Eg2 is None:
            Eg2 = np.full_like(theta, hp.get("initial_accumulator_value", 0.0))
        Eg2 = alpha * Eg2 + (1 - alpha) * g * g
        self.state["square_avg"] = Eg2
        s = Eg2
        if hp.get("centered", False):
            Eg = self.state.get("grad_avg", np.zeros_like(theta))
            Eg = alpha * Eg + (1 - alpha) * g
            self.state["grad_avg"] = Eg
            s = Eg2 - Eg * Eg
        r = np.sqrt(s + eps) if hp.get("eps_in_sqrt", False) else np.sqrt(s) + eps
        if mu > 0:
            b = self.state.get("momentum_buffer", np.zeros_like(theta))
            if hp.get("lr_in_momentum", False):
                b = mu * b + lr * g / r
                self.state["momentum_buffer"] = b
                return theta - b
            b = mu * b + g / r
            self.state["momentum_buffer"] = b
            return theta - lr * b
        return theta - lr * g / r


class AdadeltaRef(Reference):
    # E[g²] ← ρE[g²] + (1−ρ)g²; Δ = √(E[Δ²]+ε)/√(E[g²]+ε)·g; E[Δ²] ← ρE[Δ²] + (1−ρ)Δ²; θ ← θ − ηΔ
    def update(self, theta, g):
        hp = self.hp
        lr, rho, eps = hp.get("lr", 1.0), hp.get("rho", 0.9), hp.get("eps", 1e-6)
        g = g + hp.get("weight_decay", 0.0) * theta
        Eg2 = rho * self.state.get("square_avg", np.zeros_like(theta)) + (1 - rho) * g * g
        Ed2 = self.state.get("acc_delta", np.zeros_like(theta))
        delta = np.sqrt(Ed2 + eps) / np.sqrt(Eg2 + eps) * g
        self.state["square_avg"] = Eg2
        self.state["acc_delta"] = rho * Ed2 + (1 - rho) * delta * delta
        return theta - lr * delta


class AdamRef(Reference):
    # m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; m̂ = m/(1−β₁ᵗ); v̂ = v/(1−β₂ᵗ); θ ← θ − η m̂/(√v̂ + ε)
    def update(self, theta, g):
        hp = self.hp
        lr, eps = hp.get("lr", 1e-3), hp.get("eps", 1e-8)
        b1, b2 = hp.get("betas", (0.9, 0.999))
        wd = hp.get("weight_decay", 0.0)
        if hp.get("decoupled_weight_decay", False):
            theta = theta * (1 - lr * wd)
        else:
            g = g + wd * theta
        m = b1 * self.state.get("exp_avg", np.zeros_like(theta)) + (1 - b1) * g
        v = b2 * self.state.get("exp_avg_sq", np.zeros_like(theta)) + (1 - b2) * g * g
        self.state["exp_avg"], self.state["exp_avg_sq"] = m, v
        if hp.get("amsgrad", False):
            v = np.maximum(self.state.get("max_exp_avg_sq", np.zeros_like(theta)), v)
            self.state["max_exp_avg_sq"] = v
        if hp.get("bias_correction", True):
            c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        else:
            c1 = c2 = 1.0
        if hp.get("eps_hat", False):
            # Kingma & Ba §2: α_t = α √(1−β₂ᵗ)/(1−β₁ᵗ); θ ← θ − α_t m / (√v + ε̂)
            return theta - lr * math.sqrt(c2) / c1 * m / (np.sqrt(v) + eps)
        m_hat, v_hat = m / c1, v / c2
        denom = np.sqrt(v_hat + eps) if hp.get("eps_in_sqrt", False) else np.sqrt(v_hat) + eps
        return theta - lr * m_hat / denom


class AdamWRef(AdamRef):
    def __init__(self, **hp):
        hp.setdefault("weight_decay", 1e-2)
        super().__init__(**hp, decoupled_weight_decay=True)


REFERENCES = {"SGD": SGDRef, "Adagrad": AdagradRef, "RMSprop": RMSpropRef,
              "Adadelta": AdadeltaRef, "Adam": AdamRef, "AdamW": AdamWRef}
