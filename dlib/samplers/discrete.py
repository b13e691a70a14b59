"""Samplers on the training grid of time indices: DDPM (ancestral) and DDIM. Derived in notebook 05.

Both visit the time indices ``timesteps(T, steps, spacing)`` (descending, integers) and finish
with a jump to alpha_bar = 1, the data. The model is always called at an integer t it was
trained on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlib.forward import eps_from_x0, posterior_coefs, x0_from_eps
from dlib.schedules import Schedule
from dlib.utils import randn_like

SPACINGS = ("leading", "trailing", "linspace", "quadratic")


def timesteps(T: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """The descending time indices a sampler visits, shape (steps,), each in [0, T-1].

    leading:   0, T//steps, 2 T//steps, ...   (DDIM paper, diffusers' default; never reaches T-1)
    trailing:  T-1, T-1-T/steps, ...          (Lin et al. 2023: start at the noisiest step; the default)
    linspace:  round(linspace(0, T-1, steps)) (both ends: the last call is spent at t = 0)
    quadratic: floor(linspace(0, sqrt(0.8 T), steps)^2), the DDIM paper's CIFAR-10 choice
    """
    if not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer with 1 <= steps <= T = {T}, got {steps!r}")
    if spacing == "leading":
        ts = torch.arange(steps) * (T // steps)
    elif spacing == "trailing":
        ts = (torch.arange(T, 0, -T / steps, dtype=torch.float64).round() - 1).flip(0)
    elif spacing == "linspace":
        ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round()
    elif spacing == "quadratic":
        ts = (torch.linspace(0, (0.8 * T) ** 0.5, steps, dtype=torch.float64) ** 2).floor()
    else:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {SPACINGS}")
    ts = ts.long().flip(0)
    if len(torch.unique(ts)) != steps:
        raise ValueError(f"spacing {spacing!r} gives repeated time indices for T={T}, steps={steps}")
    return ts


def alpha_bar_grid(sched: Schedule, ts: torch.Tensor) -> list[float]:
    """alpha_bar at each visited index in float64, followed by 1.0 (the data): len(ts) + 1 floats.

    Raises a clear error at a zero-terminal-SNR start, where an eps-prediction says nothing about x_0.
    """
    alpha_bar = sched.float64()["alpha_bar"][ts.cpu()].tolist() + [1.0]
    if alpha_bar[0] == 0:
        raise ValueError(
            "the first sampled step has alpha_bar = 0 (zero terminal SNR): x_0 cannot be recovered from an "
            "eps-prediction there; start one step later or use a v- or x_0-model"
        )
    return alpha_bar


def call_model(eps_model: Callable, x: torch.Tensor, t, cond: dict) -> torch.Tensor:
    """eps_model(x, t) with t broadcast to shape (B,): long for an integer index, float otherwise."""
    dtype = torch.long if float(t).is_integer() else torch.float32
    return eps_model(x, torch.full((x.shape[0],), t, device=x.device, dtype=dtype), **cond)


def ddpm_step(
    x_t: torch.Tensor,
    eps_hat: torch.Tensor,
    alpha_bar_t,
    alpha_bar_prev,
    noise: torch.Tensor | None,
    *,
    variance: str = "fixed_small",
    clip_x0: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step x_t -> x_prev ~ p(x_prev | x_t) (DDPM Algorithm 2, respacing allowed).

    Mean: the posterior mean q(x_prev | x_t, x_0 = x_0_hat). Variance: beta_tilde ("fixed_small")
    or beta ("fixed_large") of the jump from alpha_bar_t to alpha_bar_prev. Returns (x_prev, x_0_hat).
    """
    x_0_hat = x0_from_eps(x_t, eps_hat, alpha_bar_t)
    if clip_x0:
        x_0_hat = x_0_hat.clamp(-1, 1)
    coef_x0, coef_xt, var = posterior_coefs(alpha_bar_t, alpha_bar_prev)
    if variance == "fixed_large":
        var = 1 - torch.as_tensor(alpha_bar_t, dtype=torch.float64) / torch.as_tensor(
            alpha_bar_prev, dtype=torch.float64
        )
    elif variance != "fixed_small":
        raise ValueError(f"variance must be 'fixed_small' or 'fixed_large', got {variance!r}")
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step (Song et al. 2021, eq. 12): returns (x_prev, x_0_hat).

    x_prev = sqrt(alpha_bar_prev) x_0_hat + sqrt(1 - alpha_bar_prev - s^2) eps_hat + s noise, with
    s^2 = eta^2 beta_tilde, beta_tilde the DDPM posterior variance of the jump. eta = 0 is
    deterministic; eta = 1 has the variance of DDPM's fixed_small. Works in either direction:
    with alpha_bar_prev < alpha_bar_t and eta = 0 it is one step of DDIM inversion.
    With ``clip_x0``, eps_hat is re-derived from the clipped x_0_hat so both stay consistent.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    x_0_hat = x0_from_eps(x_t, eps_hat, alpha_bar_t)
    if clip_x0:
        x_0_hat = x_0_hat.clamp(-1, 1)
        eps_hat = eps_from_x0(x_t, x_0_hat, alpha_bar_t)
    a_prev = torch.as_tensor(alpha_bar_prev, dtype=torch.float64)
    s2 = eta**2 * posterior_coefs(alpha_bar_t, a_prev)[2] if eta > 0 else torch.zeros_like(a_prev)
    x_prev = a_prev.sqrt() * x_0_hat + (1 - a_prev - s2).clamp(min=0).sqrt() * eps_hat
    if eta > 0 and noise is not None:
        x_prev = x_prev + s2.sqrt() * noise
    return x_prev.to(x_t.dtype), x_0_hat


@torch.no_grad()
def sample_ddpm(
    eps_model: Callable,
    x_T: torch.Tensor,
    sched: Schedule,
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
    sec. 4). No noise is added on the last step. One network call per step."""
    ts = timesteps(sched.T, steps or sched.T, spacing)
    alpha_bar = alpha_bar_grid(sched, ts)
    x = x_T
    for i, t in enumerate(ts.tolist()):
        eps_hat = call_model(eps_model, x, t, cond)
        noise = None if i + 1 == len(ts) else randn_like(x, generator)
        x, x_0_hat = ddpm_step(x, eps_hat, alpha_bar[i], alpha_bar[i + 1], noise, variance=variance, clip_x0=clip_x0)
        if callback:
            callback(dict(i=i, t=t, x=x, x_0_hat=x_0_hat))
    return x


@torch.no_grad()
def sample_ddim(
    eps_model: Callable,
    x_T: torch.Tensor,
    sched: Schedule,
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
    eta = 1 is DDPM with fixed_small variance on the same time indices."""
    ts = timesteps(sched.T, steps, spacing)
    alpha_bar = alpha_bar_grid(sched, ts)
    x = x_T
    for i, t in enumerate(ts.tolist()):
        eps_hat = call_model(eps_model, x, t, cond)
        noise = randn_like(x, generator) if eta > 0 and i + 1 < len(ts) else None
        x, x_0_hat = ddim_step(x, eps_hat, alpha_bar[i], alpha_bar[i + 1], eta, noise, clip_x0=clip_x0)
        if callback:
            callback(dict(i=i, t=t, x=x, x_0_hat=x_0_hat))
    return x


@torch.no_grad()
def ddim_invert(
    eps_model: Callable,
    x_0: torch.Tensor,
    sched: Schedule,
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
    ts = timesteps(sched.T, steps, spacing).flip(0)  # ascending
    alpha_bar = alpha_bar_grid(sched, ts.flip(0))[::-1]  # 1.0 (the data), then ascending noise
    x, ts = x_0, ts.tolist()
    for i, t in enumerate(ts):
        # the model is called where x is: at the previous index (the first jump, from the data, uses ts[0])
        eps_hat = call_model(eps_model, x, ts[max(i - 1, 0)], cond)
        x, x_0_hat = ddim_step(x, eps_hat, alpha_bar[i], alpha_bar[i + 1])
        if callback:
            callback(dict(i=i, t=t, x=x, x_0_hat=x_0_hat))
    return x
