"""Samplers on the training grid of time indices: DDPM (ancestral) and DDIM. Derived in notebook 05.

Both visit the time indices ``timesteps(T, steps, spacing)`` (descending, integers) and finish
with a jump to alpha_bar = 1, the data. The model is always called at an integer t it was
trained on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlib.denoiser import VP, Denoiser, as_denoiser
from dlib.forward import eps_from_x0, p_variance, posterior_coefs, x0_from_eps
from dlib.samplers.grid import alpha_bar_grid, timesteps
from dlib.schedules import sigmas
from dlib.utils import check_finite, randn_like


def vp_grid(den: Denoiser, steps: int, spacing: str) -> tuple[list[int], list[float], list[float]]:
    """The visited indices, alpha_bar at each followed by 1.0 (the data), and sigma at each: DDPM and DDIM
    walk the integer indices of a discrete VP schedule."""
    if not isinstance(den.process, VP):
        raise ValueError(
            f"DDPM and DDIM step between the integer indices of a discrete VP schedule; {den.process} has none: use "
            "sample_euler (Euler in sigma is DDIM) or sample_sde (the reverse SDE) instead"
        )
    sched = den.process.sched
    ts = timesteps(sched.T, sched.T if steps is None else steps, spacing)
    return ts.tolist(), alpha_bar_grid(sched, ts), sigmas(sched)[ts].tolist()


def ddpm_step(
    x_t: torch.Tensor,
    eps_hat: torch.Tensor,
    alpha_bar_t,
    alpha_bar_prev,
    noise: torch.Tensor | None,
    *,
    variance: str = "fixed_small",
    clip_x0: bool = False,
    x_0_hat: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step x_t -> x_prev ~ p(x_prev | x_t) (DDPM Algorithm 2, respacing allowed).

    Mean: the posterior mean q(x_prev | x_t, x_0 = x_0_hat). Variance: beta_tilde ("fixed_small")
    or beta ("fixed_large") of the jump from alpha_bar_t to alpha_bar_prev. Returns (x_prev, x_0_hat).
    ``x_0_hat`` defaults to the one implied by eps_hat; a denoiser passes its own (defined at alpha_bar = 0 too).
    """
    x_0_hat = x0_from_eps(x_t, eps_hat, alpha_bar_t) if x_0_hat is None else x_0_hat
    if clip_x0:
        x_0_hat = x_0_hat.clamp(-1, 1)
    coef_x0, coef_xt, _ = posterior_coefs(alpha_bar_t, alpha_bar_prev)
    var = p_variance(alpha_bar_t, alpha_bar_prev, variance)
    x_prev = coef_x0 * x_0_hat + coef_xt * x_t
    if noise is not None:
        x_prev = x_prev + var.sqrt() * noise
    return x_prev.to(x_t.dtype), x_0_hat


def ddim_step(
    x_t: torch.Tensor,
    eps_hat: torch.Tensor,
    alpha_bar_t,
    alpha_bar_prev,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    *,
    clip_x0: bool = False,
    x_0_hat: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step (Song et al. 2021, eq. 12): returns (x_prev, x_0_hat).

    x_prev = sqrt(alpha_bar_prev) x_0_hat + sqrt(1 - alpha_bar_prev - var) eps_hat + sqrt(var) noise, with
    var = eta^2 beta_tilde (Sigma_t in docs/NOTATION.md), beta_tilde the DDPM posterior variance of the jump. eta = 0 is
    deterministic; eta = 1 has the variance of DDPM's fixed_small. Works in either direction:
    with alpha_bar_prev < alpha_bar_t and eta = 0 it is one step of DDIM inversion.
    With ``clip_x0``, eps_hat is re-derived from the clipped x_0_hat so both stay consistent.
    With eta = 0 this is ``sigma.euler_step`` in x_bar = x_t / sqrt(alpha_bar) and sigma (tested): Euler on
    the probability-flow ODE. ``x_0_hat`` as in ``ddpm_step``.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    x_0_hat = x0_from_eps(x_t, eps_hat, alpha_bar_t) if x_0_hat is None else x_0_hat
    if clip_x0:
        x_0_hat = x_0_hat.clamp(-1, 1)
        eps_hat = eps_from_x0(x_t, x_0_hat, alpha_bar_t)
    a_prev = torch.as_tensor(alpha_bar_prev, dtype=torch.float64)
    var = eta**2 * posterior_coefs(alpha_bar_t, a_prev)[2] if eta > 0 else torch.zeros_like(a_prev)
    x_prev = a_prev.sqrt() * x_0_hat + (1 - a_prev - var).clamp(min=0).sqrt() * eps_hat
    if eta > 0 and noise is not None:
        x_prev = x_prev + var.sqrt() * noise
    return x_prev.to(x_t.dtype), x_0_hat


@torch.no_grad()
def sample_ddpm(
    model: Callable,
    x_T: torch.Tensor,
    sched=None,
    steps: int | None = None,
    *,
    spacing: str = "trailing",
    variance: str = "fixed_small",
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """Ancestral sampling from x_T ~ N(0, I) (DDPM Algorithm 2). ``steps=None`` visits all T steps;
    fewer steps jump between the chosen time indices with the respaced betas (Nichol & Dhariwal 2021,
    sec. 4). No noise is added on the last step. One network call per step. ``model`` is an eps-model
    with its ``sched``, or a ``Denoiser`` of any parameterisation on a VP process."""
    den = as_denoiser(model, sched)
    ts, alpha_bar, sig = vp_grid(den, steps, spacing)
    x = x_T
    for i, t in enumerate(ts):
        pred = den(x, sig[i], t, **cond)
        noise = None if i + 1 == len(ts) else randn_like(x, generator)
        x, x_0_hat = ddpm_step(
            x, pred.eps, alpha_bar[i], alpha_bar[i + 1], noise, variance=variance, clip_x0=clip_x0, x_0_hat=pred.x_0
        )
        if callback:
            callback(dict(i=i, t=t, x=x, x_0_hat=x_0_hat))
    return check_finite(x, "sample_ddpm")


@torch.no_grad()
def sample_ddim(
    model: Callable,
    x_T: torch.Tensor,
    sched=None,
    steps: int = 50,
    *,
    eta: float = 0.0,
    spacing: str = "trailing",
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021): ``steps`` network calls, any eta in [0, 1]. eta = 0 is
    a deterministic map x_T -> x_0 (the probability-flow ODE solved by Euler's method in sigma);
    eta = 1 is DDPM with fixed_small variance on the same time indices. ``model`` as in ``sample_ddpm``."""
    den = as_denoiser(model, sched)
    ts, alpha_bar, sig = vp_grid(den, steps, spacing)
    x = x_T
    for i, t in enumerate(ts):
        pred = den(x, sig[i], t, **cond)
        noise = randn_like(x, generator) if eta > 0 and i + 1 < len(ts) else None
        x, x_0_hat = ddim_step(
            x, pred.eps, alpha_bar[i], alpha_bar[i + 1], eta, noise, clip_x0=clip_x0, x_0_hat=pred.x_0
        )
        if callback:
            callback(dict(i=i, t=t, x=x, x_0_hat=x_0_hat))
    return check_finite(x, "sample_ddim")


@torch.no_grad()
def ddim_invert(
    model: Callable,
    x_0: torch.Tensor,
    sched=None,
    steps: int = 50,
    *,
    spacing: str = "trailing",
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """DDIM inversion: run the eta = 0 map backwards, x_0 -> x_T, on the same time indices that
    ``sample_ddim(..., steps, spacing=spacing)`` visits, so that sampling from the result gives x_0
    back up to the discretisation error. Each step evaluates the model at the less noisy end (the
    only point known), which is where the error comes from (Mokady et al. 2023)."""
    den = as_denoiser(model, sched)
    ts, alpha_bar, sig = (v[::-1] for v in vp_grid(den, steps, spacing))  # ascending; alpha_bar starts at 1.0
    x = x_0
    for i, t in enumerate(ts):
        j = max(
            i - 1, 0
        )  # the model is called where x is: at the previous index (the first jump, from the data, uses ts[0])
        pred = den(x, sig[j], ts[j], **cond)
        x, x_0_hat = ddim_step(x, pred.eps, alpha_bar[i], alpha_bar[i + 1], x_0_hat=pred.x_0 if i else x)
        if callback:
            callback(dict(i=i, t=t, x=x, x_0_hat=x_0_hat))
    return check_finite(x, "ddim_invert")
