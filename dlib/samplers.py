"""Samplers: the reverse process p, as pure functions with one shared signature.

    sample_X(eps_model, x_T, sched, steps, *, ..., generator=None, callback=None) -> x_0

No object carries state between calls. Each per-step rule is its own pure function so that a
notebook can derive it and a test can feed it fixed noise. ``callback(dict(i=, t=, x=, x_0_hat=))``
sees every intermediate. Derived in notebook 05.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlib.forward import posterior_coefs, x0_from_eps
from dlib.schedules import Schedule
from dlib.utils import randn_like

SPACINGS = ("leading", "trailing", "linspace", "quadratic")


def timesteps(T: int, steps: int, spacing: str = "linspace") -> torch.Tensor:
    """The descending time indices a sampler visits, shape (steps,), each in [0, T-1].

    leading:   0, T//steps, 2 T//steps, ...   (diffusers' default; never reaches T-1)
    trailing:  T-1, T-1-T/steps, ...          (Lin et al. 2023: start at the noisiest step)
    linspace:  round(linspace(0, T-1, steps)) (both ends)
    quadratic: floor(linspace(0, sqrt(0.8 T), steps)^2), the DDIM paper's CIFAR-10 choice
    """
    if not 1 <= steps <= T:
        raise ValueError(f"steps must satisfy 1 <= steps <= T = {T}, got {steps}")
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
        var = 1 - torch.as_tensor(alpha_bar_t) / torch.as_tensor(alpha_bar_prev)
    elif variance != "fixed_small":
        raise ValueError(f"variance must be 'fixed_small' or 'fixed_large', got {variance!r}")
    x_prev = coef_x0 * x_0_hat + coef_xt * x_t
    if noise is not None:
        x_prev = x_prev + var.sqrt() * noise
    return x_prev, x_0_hat


@torch.no_grad()
def sample_ddpm(
    eps_model: Callable,
    x_T: torch.Tensor,
    sched: Schedule,
    steps: int | None = None,
    *,
    spacing: str = "linspace",
    variance: str = "fixed_small",
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """Ancestral sampling from x_T ~ N(0, I). ``steps=None`` visits all T steps; fewer steps
    jump between the chosen time indices with the respaced betas (Nichol & Dhariwal 2021, sec. 4)."""
    ts = timesteps(sched.T, steps or sched.T, spacing)
    alpha_bar = sched.alpha_bar.double()
    if alpha_bar[ts[0]] == 0:
        raise ValueError(
            "the first sampled step has alpha_bar = 0 (zero terminal SNR): x_0 cannot be recovered from an "
            "eps-prediction there; start one step later or use a v- or x_0-model"
        )
    x = x_T
    for i, t in enumerate(ts.tolist()):
        a = alpha_bar[t].item()
        a_prev = alpha_bar[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        eps_hat = eps_model(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long), **cond)
        last = i + 1 == len(ts)
        noise = None if last else randn_like(x, generator)
        x, x_0_hat = ddpm_step(x, eps_hat, a, a_prev, noise, variance=variance, clip_x0=clip_x0)
        if callback:
            callback(dict(i=i, t=t, x=x, x_0_hat=x_0_hat))
    return x
