"""Stochastic samplers in sigma space: the reverse-time SDE (Euler-Maruyama) and multistep consistency
sampling. Derived in notebooks 11 (the SDE view) and 12 (consistency models).

In the scaled state x_bar = x / s = x_0 + sigma eps every process of ``dlib.denoiser`` (VP, VE, the flow)
is the variance-exploding one, so one reverse SDE serves them all (Song et al. 2021, eq. 6; Karras et al.
2022, eq. 6): with the score grad log p(x_bar) = -eps_hat / sigma,

    d x_bar = -d[sigma^2] grad log p(x_bar) + sqrt(d[sigma^2]) dw      (run from sigma_max down to 0)

Its Euler-Maruyama step from sigma to sigma_next < sigma (Song et al.'s reverse-diffusion predictor):

    x_bar_next = x_bar - (sigma^2 - sigma_next^2) / sigma * eps_hat + sqrt(sigma^2 - sigma_next^2) z

Its drift is twice the probability-flow ODE's (d x_bar = eps_hat d sigma): half of it undoes the noise
the SDE injects. The last step, to sigma = 0, is the denoising step x_0_hat, as in DDPM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from dlib.denoiser import as_denoiser
from dlib.samplers.grid import sigma_grid
from dlib.samplers.sigma import denoise, start, to_x
from dlib.utils import check_finite, randn_like


def sde_step(
    x_bar: torch.Tensor, eps_hat: torch.Tensor, sigma: float, sigma_next: float, noise: torch.Tensor
) -> torch.Tensor:
    """One Euler-Maruyama step of the reverse SDE from sigma to sigma_next (see the module docstring)."""
    jump = sigma**2 - sigma_next**2
    return x_bar - jump / sigma * eps_hat + math.sqrt(jump) * noise


@torch.no_grad()
def sample_sde(
    model: Callable,
    x_T: torch.Tensor,
    sched=None,
    steps: int = 100,
    *,
    spacing: str | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """The reverse SDE by Euler-Maruyama on ``sigma_grid(process, steps, spacing)`` (default: Karras sigmas
    for VP and VE, uniform t for a flow): ``steps`` network calls, the last one a plain denoising step.
    First order in the step (weak order 1): it needs more steps than the ODE solvers."""
    den = as_denoiser(model, sched)
    sig, ts = sigma_grid(den.process, steps, spacing)
    x, i0 = start(den, x_T, sig, ts, cond, callback)
    for i in range(i0, steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        pred = denoise(den, x, sigma, ts[i], cond)
        x = pred.x_0 if sigma_next == 0 else sde_step(x, pred.eps, sigma, sigma_next, randn_like(x, generator))
        if callback:
            callback(dict(i=i, t=ts[i], sigma=sigma, x=to_x(den, x, sigma_next), x_0_hat=pred.x_0))
    return check_finite(x, "sample_sde")


@torch.no_grad()
def sample_consistency(
    model: Callable,
    x_T: torch.Tensor,
    sched=None,
    steps: int = 1,
    *,
    spacing: str | None = None,
    sigmas: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): jump to x_0_hat in one network call, re-noise
    it to the next level with fresh noise and jump again; ``steps`` calls. ``model`` is a consistency model
    (``dlib.distill.ConsistencyModel``); with a diffusion model's denoiser the same loop is a (poor) few-step sampler.

    The levels are ``sigmas`` (descending; x_T sits at the first) or the first ``steps`` of ``sigma_grid(process,
    steps + 1, spacing)``: its last level is the smallest, where a consistency model returns its input. The fresh
    noise is scaled by sqrt(sigma^2 - sigma_min^2), since x_0_hat already sits at the smallest level sigma_min."""
    den = as_denoiser(model, sched)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer (network calls), got {steps!r}")
    if sigmas is None:
        sig, ts = sigma_grid(den.process, steps + 1, spacing)
        sig, ts = sig[:steps], ts[:steps]
    else:
        sig, ts = [float(s) for s in sigmas], [None] * len(sigmas)
        if len(sig) != steps or any(b >= a for a, b in zip(sig, sig[1:], strict=False)):
            raise ValueError(f"sigmas must be {steps} descending noise levels, got {sigmas}")
    s_min = den.process.sigma_range[0]
    x = x_T  # the model's own state at sig[0] (pure noise included)
    for i in range(steps):
        pred = den(x, sig[i], ts[i], **cond)
        x = pred.x_0
        if i + 1 < steps:
            x = to_x(den, x + math.sqrt(max(sig[i + 1] ** 2 - s_min**2, 0.0)) * randn_like(x, generator), sig[i + 1])
        if callback:
            callback(dict(i=i, t=ts[i], sigma=sig[i], x=x, x_0_hat=pred.x_0))
    return check_finite(x, "sample_consistency")


def langevin_step(x: torch.Tensor, score: torch.Tensor, step, noise: torch.Tensor) -> torch.Tensor:
    """One step of (unadjusted) Langevin dynamics, x + step grad log p(x) + sqrt(2 step) z: for small steps its
    chain samples p (Song & Ermon 2019 write alpha = 2 step). ``step`` a float or a per-example tensor."""
    if isinstance(step, torch.Tensor):
        step = step.to(x.dtype).view(-1, *[1] * (x.ndim - 1))
    return x + step * score + (2 * step) ** 0.5 * noise


@torch.no_grad()
def sample_annealed_langevin(
    model: Callable,
    x_T: torch.Tensor,
    sched=None,
    steps: int = 10,
    *,
    n_each: int = 20,
    step_lr: float = 2e-5,
    spacing: str = "logsnr",
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1; NCSN): ``n_each`` Langevin steps at each of
    ``steps`` decreasing noise levels of ``sigma_grid`` (geometric by default, as NCSN's), the step at level sigma
    being step_lr sigma^2 / sigma_min^2 / 2 (step / sigma^2 the same everywhere), then one denoising step x_0_hat
    at the smallest level (Jolicoeur-Martineau et al. 2021): steps n_each + 1 network calls (a ``callback``, which
    sees x_0_hat after each level, costs one more call per level). The score is the
    model's -eps_hat / sigma in the scaled state x_bar, so any model of the course runs (not a flow from t = 1)."""
    den = as_denoiser(model, sched)
    sig, ts = sigma_grid(den.process, steps, spacing)
    if not math.isfinite(sig[0]):
        raise ValueError("annealed Langevin needs a finite largest sigma; a flow starts at sigma = inf")
    x, _ = start(den, x_T, sig, ts, cond, None)
    times = dict(zip(sig, ts, strict=False))

    def score(x, sigma):
        return -denoise(den, x, sigma, times[sigma], cond).eps / sigma

    def report(i, x):
        if callback:
            callback(
                dict(i=i, t=ts[i], sigma=sig[i], x=to_x(den, x, sig[i]), x_0_hat=x + sig[i] ** 2 * score(x, sig[i]))
            )

    x = annealed_langevin(score, x, sig[:steps], n_each, step_lr, lambda: randn_like(x, generator), report)
    return check_finite(denoise(den, x, sig[steps - 1], ts[steps - 1], cond).x_0, "sample_annealed_langevin")


def annealed_langevin(
    score: Callable, x: torch.Tensor, sigmas, n_each: int, step_lr: float, noise: Callable, callback=None
) -> torch.Tensor:
    """NCSN's loop (Song & Ermon 2019, Algorithm 1) on any ``score(x, sigma)``: at each level of the decreasing
    ``sigmas``, ``n_each`` ``langevin_step`` s with step step_lr sigma^2 / sigma_min^2 / 2 (Song & Ermon's
    alpha = 2 step), fresh noise from ``noise()``. ``callback(i, x)`` after each level."""
    s_min = sigmas[-1]
    for i, sigma in enumerate(sigmas):
        step = step_lr * (sigma / s_min) ** 2 / 2
        for _ in range(n_each):
            x = langevin_step(x, score(x, sigma), step, noise())
        if callback:
            callback(i, x)
    return x


@torch.no_grad()
def sample_pc(
    model: Callable,
    x_T: torch.Tensor,
    sched=None,
    steps: int = 100,
    *,
    corrector_steps: int = 1,
    snr: float = 0.16,
    spacing: str | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """Predictor-corrector sampling (Song et al. 2021, Algorithms 2-3): each reverse-SDE step (``sde_step``,
    the predictor) is followed by ``corrector_steps`` Langevin steps at the new level (the corrector), the
    step chosen so that the signal-to-noise ratio ||step score|| / ||sqrt(2 step) z|| is about ``snr``:
    step = 2 (snr ||z|| / ||score||)^2, with the norms averaged over the batch as in the authors' code (one
    example's tiny score between two modes would otherwise take a huge step). The grid as ``sample_sde``'s; about
    steps (1 + corrector_steps) network calls (no correction at sigma = 0)."""
    den = as_denoiser(model, sched)
    sig, ts = sigma_grid(den.process, steps, spacing)
    x, i0 = start(den, x_T, sig, ts, cond, callback)
    for i in range(i0, steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        pred = denoise(den, x, sigma, ts[i], cond)
        if sigma_next == 0:
            x = pred.x_0
        else:
            x = sde_step(x, pred.eps, sigma, sigma_next, randn_like(x, generator))
            for _ in range(corrector_steps):
                score = -denoise(den, x, sigma_next, ts[i + 1], cond).eps / sigma_next
                z = randn_like(x, generator)
                ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean()
                x = langevin_step(x, score, 2 * (snr * ratio.item()) ** 2, z)
        if callback:
            callback(dict(i=i, t=ts[i], sigma=sigma, x=to_x(den, x, sigma_next), x_0_hat=pred.x_0))
    return check_finite(x, "sample_pc")
