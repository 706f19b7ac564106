"""Advising: the prose that turns a verdict into what to try. Pure functions of the verdict,
the kinds of the layers concerned and what the model is built from."""

from __future__ import annotations

from adaptim.diagnostics.diagnose import RECURRENT_KINDS, ModelTraits, Verdict

__all__ = ["advice"]


def advice(verdict: Verdict, kinds: dict[str, str], traits: ModelTraits) -> list[str]:
    """What to try, matched to the verdict, the kinds of the layers concerned (layer name ->
    module class name) and what the model is built from. Empty when healthy."""
    status, concerned = verdict.status, verdict.layers
    if status == "healthy":
        return []
    recurrent = any(kinds.get(name) in RECURRENT_KINDS for name in concerned)
    out: list[str] = []
    if status == "nonfinite":
        out.append(
            "NaN/Inf in the gradients of " + ", ".join(concerned[:5]) + ": find the first "
            "step where it appears (monitor history) and look for log(0), division by zero "
            "or overflowing exp. To ride over rare overflows, build the optimizer with "
            "on_nonfinite='skip' (skips the step, counts optimizer.skipped_steps); with "
            "fp16 autocast use torch.amp.GradScaler.")
        out.append("If gradient norms were growing before the NaN it is an explosion: "
                   "clip (max_grad_norm=1.0) and lower the learning rate.")
        return out
    if status == "exploding":
        if recurrent or traits.vanilla_rnn:
            out.append(
                "Recurrent explosion (gradients grow through time; Pascanu et al. 2013): "
                "clip the gradient norm — max_grad_norm=1.0 in the adaptim optimizer, or "
                "adaptim.clip_grad_norm_(model.parameters(), 1.0) before step() — and lower "
                "the learning rate.")
            if traits.vanilla_rnn:
                out.append(
                    "A vanilla RNN over long sequences multiplies the gradient by W_hh at "
                    "every time step: an LSTM or GRU (nn.LSTM / nn.GRU) keeps it in range; "
                    "or initialise W_hh orthogonal with spectral radius <= 1.")
        else:
            out.append(
                "Gradients grow towards the input: the initialisation is too large for the "
                "depth — use Xavier (tanh/sigmoid) or He (ReLU) initialisation.")
            out.append(
                "Clip the gradient norm (max_grad_norm=1.0 or adaptim.clip_grad_norm_), "
                "lower the learning rate, and consider L2 weight decay to keep weights small.")
        return out
    # vanishing
    dead = verdict.dead
    if traits.saturating and not recurrent:
        out.append(
            "Sigmoid/tanh saturate (σ' <= 0.25) and the gradient shrinks by that factor at "
            "every layer: use ReLU hidden activations with He initialisation "
            "(nn.init.kaiming_normal_(w, nonlinearity='relu')), or add batch normalization "
            "(nn.BatchNorm1d) after each linear layer.")
    elif traits.relu and not recurrent:
        out.append(
            "ReLU with PyTorch's default init (variance 1/(3·fan_in), too small for ReLU) "
            "shrinks the gradient at every layer: use He initialisation "
            "(nn.init.kaiming_normal_(w, nonlinearity='relu')) and/or batch normalization.")
    if recurrent or traits.vanilla_rnn:
        out.append(
            "A vanilla RNN over long sequences loses the gradient through time: use an LSTM "
            "or GRU (nn.LSTM / nn.GRU), whose gated cell state carries it.")
    if dead:
        out.append(
            "No gradient at all in " + ", ".join(dead[:5]) + " (every entry exactly 0): "
            "dead ReLUs or a layer cut off from the loss — lower the learning rate, try "
            "LeakyReLU, check that the layer is used in forward().")
    if not out:
        out.append("Gradients shrink towards the input: use an initialisation matched "
                   "to the activation (Xavier for tanh, He for ReLU), normalization layers "
                   "or residual connections.")
    if not traits.norm and not recurrent:
        out.append("The model has no normalization layer: batch normalization keeps "
                   "each layer's input scale, and so its gradient, in range.")
    return out
