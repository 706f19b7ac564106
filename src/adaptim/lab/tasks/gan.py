"""A small GAN on a 2-D mixture of Gaussians on a ring (the "GANs" use the tutorials name for
Adam): how many modes the generator covers, and how many of its samples are good."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from adaptim.lab.probes import state_bytes
from adaptim.lab.tasks._base import RunOutput, Task, seeded_generator

__all__ = ["MODES", "MODE_STD", "gan_task", "mode_coverage", "ring_modes", "ring_samples"]

MODES = 8
RADIUS = 2.0
MODE_STD = 0.05
QUALITY_STDS = 3.0     # a sample is high quality within 3 std of its nearest mode
MIN_MODE_SHARE = 0.25  # a mode is covered when it holds >= 1/4 of its fair share of samples
LATENT = 8
HIDDEN = 64
BATCH = 128
N_EVAL = 2000
DCGAN_BETA1 = 0.5      # Radford et al. 2016: β1 = 0.9 made GAN training oscillate


def ring_modes(modes: int = MODES, radius: float = RADIUS) -> torch.Tensor:
    """The ``modes`` centres, evenly spaced on a circle (shape modes × 2)."""
    angles = torch.arange(modes, dtype=torch.float32) * (2 * math.pi / modes)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


_RING = ring_modes()


def ring_samples(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points from the equal-weight mixture of N(centre, MODE_STD² I) over the ring."""
    which = torch.randint(MODES, (n,), generator=generator)
    return _RING[which] + MODE_STD * torch.randn(n, 2, generator=generator)


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor | None = None, *,
                  std: float = MODE_STD, quality_stds: float = QUALITY_STDS,
                  min_share: float = MIN_MODE_SHARE) -> tuple[int, float]:
    """(modes covered, high-quality share) of generated ``samples`` (n × 2).

    A sample is high quality when it lies within ``quality_stds`` standard deviations of its
    nearest centre; a mode is covered when its high-quality samples are at least ``min_share``
    of the share a perfect generator gives it (1 / number of modes). Non-finite samples count
    as low quality.
    """
    centres = ring_modes() if centres is None else centres
    samples = samples.detach().float().cpu()
    finite = torch.isfinite(samples).all(dim=1)
    distance = torch.cdist(torch.where(finite[:, None], samples, 0.0), centres)
    nearest_distance, nearest = distance.min(dim=1)
    good = finite & (nearest_distance <= quality_stds * std)
    counts = torch.bincount(nearest[good], minlength=len(centres))
    needed = min_share * len(samples) / len(centres)
    return int((counts >= needed).sum()), float(good.float().mean())


def _mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, n_out))


def _run_gan(variant, make_optimizer, seed, steps, device) -> RunOutput:
    """Alternating updates, one discriminator step then one generator step, with the
    non-saturating generator loss (Goodfellow et al. 2014); each network has its own optimizer
    built by ``make_optimizer``. ``loss`` is the discriminator's loss; ``generator_loss`` the
    generator's. Variant ``beta1-0.5`` sets β1 = 0.5 in optimizers that have betas (Adam,
    AdamW), as DCGAN does; other optimizers run unchanged."""
    torch.manual_seed(seed)
    generator_net = _mlp(LATENT, 2).to(device)
    discriminator = _mlp(2, 1).to(device)
    opt_g = make_optimizer(list(generator_net.parameters()))
    opt_d = make_optimizer(list(discriminator.parameters()))
    if variant == "beta1-0.5":
        for group in opt_g.param_groups + opt_d.param_groups:
            if "betas" in group:
                group["betas"] = (DCGAN_BETA1, group["betas"][1])
    gen = seeded_generator(seed, salt=30)
    bce = nn.functional.binary_cross_entropy_with_logits
    ones = torch.ones(BATCH, 1, device=device)
    zeros = torch.zeros(BATCH, 1, device=device)
    d_params = list(discriminator.parameters())
    eval_noise = torch.randn(N_EVAL, LATENT, generator=seeded_generator(10_000 + seed, salt=31))
    eval_noise = eval_noise.to(device)

    out = RunOutput(n_params=sum(p.numel() for m in (generator_net, discriminator)
                                 for p in m.parameters()))
    d_losses: list[float] = []
    g_losses: list[float] = []
    probe_every = max(steps // 10, 1)
    probe_steps: list[int] = []
    probe_modes: list[float] = []
    with torch.no_grad():
        initial_modes, initial_quality = mode_coverage(generator_net(eval_noise))
    start = time.perf_counter()
    for step in range(steps):
        real = ring_samples(BATCH, gen).to(device)
        noise = torch.randn(BATCH, LATENT, generator=gen).to(device)
        fake = generator_net(noise)
        opt_d.zero_grad(set_to_none=True)
        d_loss = bce(discriminator(real), ones) + bce(discriminator(fake.detach()), zeros)
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        # The generator's step needs no gradient for the discriminator's weights.
        for p in d_params:
            p.requires_grad_(False)
        g_loss = bce(discriminator(fake), ones)
        g_loss.backward()
        for p in d_params:
            p.requires_grad_(True)
        opt_g.step()
        d_value, g_value = float(d_loss.detach()), float(g_loss.detach())
        if not (math.isfinite(d_value) and math.isfinite(g_value)):
            out.diverged = True
            d_losses.extend([math.nan] * (steps - step))
            g_losses.extend([math.nan] * (steps - step))
            out.seconds.extend([out.seconds[-1] if out.seconds else 0.0] * (steps - step))
            break
        d_losses.append(d_value)
        g_losses.append(g_value)
        out.seconds.append(time.perf_counter() - start)
        if step % probe_every == 0 or step == steps - 1:
            with torch.no_grad():
                probe_steps.append(step)
                probe_modes.append(float(mode_coverage(generator_net(eval_noise[:500]))[0]))
    out.curves["loss"] = d_losses
    out.curves["generator_loss"] = g_losses
    out.sparse["modes_covered"] = (probe_steps, probe_modes)
    out.state_bytes = state_bytes(opt_g) + state_bytes(opt_d)
    with torch.no_grad():
        samples = generator_net(eval_noise)
    modes, quality = (0, 0.0) if out.diverged else mode_coverage(samples)
    # One number for the sweep (lower is better): every missed mode costs more than any
    # share of low-quality samples.
    out.scalars.update(modes_covered=float(modes), high_quality_share=quality,
                       score=float(modes) / MODES, initial_modes_covered=float(initial_modes),
                       initial_high_quality_share=initial_quality,
                       selection_loss=(MODES - modes) + (1.0 - quality))
    return out


gan_task = Task(
    name="gan",
    summary=f"GAN on a ring of {MODES} Gaussians: modes covered",
    description=(f"A generator ({LATENT}-d noise → two hidden layers of {HIDDEN} → a 2-D point) "
                 f"against a discriminator of the same size, on a mixture of {MODES} Gaussians "
                 f"(std {MODE_STD}) evenly spaced on a circle of radius {RADIUS}. One "
                 "discriminator step then one generator step (non-saturating loss), each "
                 f"network with its own optimizer, batches of {BATCH}. On {N_EVAL} generated "
                 f"points: a point is high quality within {QUALITY_STDS:g} std of a mode; a "
                 f"mode is covered when it holds at least {MIN_MODE_SHARE:.0%} of its fair "
                 "share. The score is the fraction of modes covered; mode collapse shows as "
                 "few modes with many high-quality points. Variant beta1-0.5 runs Adam and "
                 f"AdamW with β1 = {DCGAN_BETA1} (DCGAN's setting) instead of 0.9."),
    variants=("default", "beta1-0.5"),
    run=_run_gan,
    steps=800,
    fast_steps=200,
    # Adam's grid is centred where its sweep settles; SGD's stays at the typical rate.
    lr_scale={"adam": math.sqrt(10)},
    target={"default": 1.2, "beta1-0.5": 1.2},
    loss_name="discriminator loss",
    test_metric="modes_covered",
    log_loss=False,
)
