"""Samplers of the probability-flow ODE in sigma space: the adaptive RK45 reference, Euler and
Heun on Karras sigmas. Derived in notebook 05.

Divide x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps by sqrt(alpha_bar): the scaled state
x_bar = x_t / sqrt(alpha_bar) = x_0 + sigma eps has noise level sigma = sqrt((1 - alpha_bar) / alpha_bar)
(Karras et al. 2022), and the probability-flow ODE of any of our schedules becomes

    d x_bar / d sigma = eps_hat(x_bar / sqrt(1 + sigma^2), t(sigma))        (DDIM paper, eq. 14)

The network is trained at integer t only; ``t_of_sigma`` extends the schedule to every sigma by
interpolating log sigma linearly between neighbouring indices (as k-diffusion and diffusers do),
so a solver can call the model at any noise level in [sigma(0), sigma(T-1)].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from dlib.samplers.discrete import SPACINGS, alpha_bar_grid, call_model, timesteps
from dlib.schedules import Schedule, sigmas, t_of_sigma
from dlib.utils import randn_like


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> torch.Tensor:
    """n noise levels from sigma_max down to sigma_min, equally spaced in sigma^(1/rho)
    (Karras et al. 2022, eq. 5; rho = 7 crowds the steps at low noise). float64, shape (n,)."""
    if n < 1:
        raise ValueError(f"need at least 1 noise level, got n={n}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def eps_at_sigma(eps_model: Callable, x_bar: torch.Tensor, sigma: float, t: float, cond: dict) -> torch.Tensor:
    """The network's eps_hat at the scaled state x_bar and noise level sigma (time index t = t(sigma))."""
    return call_model(eps_model, x_bar / math.sqrt(1 + sigma**2), t, cond)


SIGMA_SPACINGS = (*SPACINGS, "karras", "logsnr")


def sigma_grid(sched: Schedule, steps: int, spacing: str, rho: float = 7.0) -> tuple[list[float], list[float]]:
    """The noise levels a sigma-space solver visits and their time indices: (steps + 1 sigmas ending
    in 0.0, the data; steps time indices). ``spacing`` is one of the integer-index spacings of
    ``timesteps`` or, between sigma(T-1) and sigma(0), "karras" (equal steps in sigma^(1/rho)) or
    "logsnr" (equal steps in lambda = -log sigma, DPM-Solver's choice for small images)."""
    if spacing in SPACINGS:
        ts = timesteps(sched.T, steps, spacing)
        return [math.sqrt((1 - a) / a) for a in alpha_bar_grid(sched, ts)], [float(t) for t in ts.tolist()]
    if spacing not in SIGMA_SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {SIGMA_SPACINGS}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    table = sigmas(sched)
    if not torch.isfinite(table[-1]):
        raise ValueError("sigma(T-1) is infinite (zero terminal SNR): an eps-model cannot start there")
    if spacing == "karras":
        s = karras_sigmas(table[0].item(), table[-1].item(), steps, rho)
    else:
        s = torch.linspace(table[-1].log().item(), table[0].log().item(), steps, dtype=torch.float64).exp()
    return s.tolist() + [0.0], t_of_sigma(sched, s).tolist()


def euler_step(x_bar: torch.Tensor, eps_hat: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One Euler step of d x_bar / d sigma = eps_hat: x_bar + (sigma_next - sigma) eps_hat."""
    return x_bar + (sigma_next - sigma) * eps_hat


def heun_step(
    x_bar: torch.Tensor, eps_hat: torch.Tensor, eps_next: torch.Tensor, sigma: float, sigma_next: float
) -> torch.Tensor:
    """Heun's correction (the trapezoid rule): the slope is the mean of eps_hat at both ends."""
    return euler_step(x_bar, (eps_hat + eps_next) / 2, sigma, sigma_next)


def _sample_karras(eps_model, x_T, sched, steps, heun, spacing, rho, churn, generator, callback, cond):
    """Karras et al. (2022) Algorithm 2 (Heun) or its first-order variant (Euler), with optional churn."""
    s_churn, s_tmin, s_tmax, s_noise = churn
    sig, ts = sigma_grid(sched, steps, spacing, rho)
    gamma = min(s_churn / steps, math.sqrt(2) - 1)
    x = x_T * math.sqrt(1 + sig[0] ** 2)  # x_T ~ N(0, I) is x_bar / sqrt(1 + sigma_max^2)
    for i in range(steps):
        sigma, t, sigma_next = sig[i], ts[i], sig[i + 1]
        if gamma > 0 and s_tmin <= sigma <= s_tmax:  # churn: add noise to climb to sigma_hat, then solve from there
            sigma_hat = sigma * (1 + gamma)
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * randn_like(x, generator)
            sigma, t = sigma_hat, t_of_sigma(sched, sigma_hat).item()
        eps_hat = eps_at_sigma(eps_model, x, sigma, t, cond)
        x_0_hat = x - sigma * eps_hat
        if heun and sigma_next > 0:  # the last step, to sigma = 0, is Euler's: eps_hat is undefined there
            x_euler = euler_step(x, eps_hat, sigma, sigma_next)
            x = heun_step(x, eps_hat, eps_at_sigma(eps_model, x_euler, sigma_next, ts[i + 1], cond), sigma, sigma_next)
        else:
            x = euler_step(x, eps_hat, sigma, sigma_next)
        if callback:
            callback(dict(i=i, t=t, sigma=sigma, x=x / math.sqrt(1 + sigma_next**2), x_0_hat=x_0_hat))
    return x


@torch.no_grad()
def sample_euler(
    eps_model: Callable,
    x_T: torch.Tensor,
    sched: Schedule,
    steps: int = 50,
    *,
    spacing: str = "karras",
    rho: float = 7.0,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """Euler's method on Karras sigmas (or any ``spacing`` of ``sigma_grid``) between sigma(T-1) and
    sigma(0), then a last step to 0: ``steps`` network calls. With an integer-index spacing this is DDIM. ``s_churn > 0`` re-noises each level in [s_tmin, s_tmax] up to sigma (1 + gamma),
    gamma = min(s_churn / steps, sqrt(2) - 1), and evaluates the model there (Karras et al. 2022, Alg. 2)."""
    return _sample_karras(
        eps_model, x_T, sched, steps, False, spacing, rho, (s_churn, s_tmin, s_tmax, s_noise), generator, callback, cond
    )


@torch.no_grad()
def sample_heun(
    eps_model: Callable,
    x_T: torch.Tensor,
    sched: Schedule,
    steps: int = 25,
    *,
    spacing: str = "karras",
    rho: float = 7.0,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """Heun's second-order method on Karras sigmas (Karras et al. 2022, Alg. 1-2): two network calls per
    step except the last (Euler, to sigma = 0), so 2 steps - 1 calls. Spacing and churn as in ``sample_euler``."""
    return _sample_karras(
        eps_model, x_T, sched, steps, True, spacing, rho, (s_churn, s_tmin, s_tmax, s_noise), generator, callback, cond
    )


@torch.no_grad()
def sample_pf_ode(
    eps_model: Callable,
    x_T: torch.Tensor,
    sched: Schedule,
    steps: None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """The probability-flow ODE solved by scipy's adaptive RK45 (Dormand-Prince) to ``rtol``/``atol``:
    the accurate, slow reference for the fixed-step solvers. Integrates d x_bar / d log sigma =
    sigma eps_hat from sigma(T-1) to sigma(0), then takes the same last step to sigma = 0 as every
    other sampler (x_0 = x_bar - sigma(0) eps_hat). The step count is chosen by the error control,
    so ``steps`` must be None; ``callback`` sees every network call (count them for the NFE).
    Deterministic: ``generator`` is accepted for the shared signature and unused."""
    from scipy.integrate import solve_ivp

    if steps is not None:
        raise ValueError("sample_pf_ode chooses its own steps (adaptive RK45); pass steps=None and set rtol/atol")
    table = sigmas(sched)
    if not torch.isfinite(table[-1]):
        raise ValueError("sigma(T-1) is infinite (zero terminal SNR): an eps-model cannot start there")
    shape, calls = x_T.shape, [0]

    def eps(x_bar: torch.Tensor, sigma: float) -> torch.Tensor:
        t = t_of_sigma(sched, sigma).item()
        eps_hat = eps_at_sigma(eps_model, x_bar, sigma, t, cond)
        if callback:
            callback(
                dict(i=calls[0], t=t, sigma=sigma, x=x_bar / math.sqrt(1 + sigma**2), x_0_hat=x_bar - sigma * eps_hat)
            )
        calls[0] += 1
        return eps_hat

    def rhs(log_sigma: float, y: np.ndarray) -> np.ndarray:
        sigma = math.exp(log_sigma)
        x_bar = torch.from_numpy(y).reshape(shape).to(x_T)
        return (sigma * eps(x_bar, sigma)).double().cpu().numpy().ravel()

    s_max, s_min = table[-1].item(), table[0].item()
    y0 = (x_T.double() * math.sqrt(1 + s_max**2)).cpu().numpy().ravel()
    sol = solve_ivp(rhs, (math.log(s_max), math.log(s_min)), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"RK45 failed: {sol.message}")
    x_bar = torch.from_numpy(sol.y[:, -1]).reshape(shape).to(x_T)
    return euler_step(x_bar, eps(x_bar, s_min), s_min, 0.0)
