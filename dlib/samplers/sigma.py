"""Solvers of the probability-flow ODE in sigma space: Euler and Heun (on Karras sigmas by default) and
the adaptive RK45 reference. Derived in notebook 05; the same code integrates a flow-matching model (11).

Every process of ``dlib.denoiser`` writes x = s (x_0 + sigma eps). In the scaled state
x_bar = x / s = x_0 + sigma eps the probability-flow ODE is the same for all of them (Karras et al. 2022):

    d x_bar / d sigma = eps_hat(x_bar, sigma) = (x_bar - x_0_hat) / sigma      (DDIM paper, eq. 14)

Euler's method on it is DDIM (``discrete.ddim_step`` with eta = 0, on the same sigmas; tested) and
the flow's Euler step x_{t - dt} = x_t - dt u (tested). A sampler starting at pure noise (sigma = inf:
a flow at t = 1, zero terminal SNR) takes its first step with ``start``: the limit of every solver's
first step, x_bar = x_0_hat + sigma_1 eps_hat.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dlib.denoiser import Denoiser, as_denoiser, euler_step, heun_step
from dlib.samplers.grid import sigma_grid
from dlib.utils import check_finite, randn_like


def denoise(den: Denoiser, x_bar: torch.Tensor, sigma: float, t: float | None, cond: dict):
    """The network's (x_0_hat, eps_hat) at the scaled state x_bar and noise level sigma (time t = t(sigma))."""
    return den(den.process.coefs(sigma)[0].item() * x_bar, sigma, t, **cond)


def start(
    den: Denoiser, x_T: torch.Tensor, sig: list[float], ts: list, cond: dict, callback
) -> tuple[torch.Tensor, int]:
    """(x_bar at sig[i0], i0): x_T / s(sigma_max), or, from pure noise (sigma_max = inf, where x_bar is
    infinite), one step x_bar = x_0_hat + sig[1] eps_hat computed from x_T itself (i0 = 1)."""
    if math.isfinite(sig[0]):
        return x_T / den.process.coefs(sig[0])[0].item(), 0
    pred = den(x_T, sig[0], ts[0], **cond)
    x = pred.x_0 + sig[1] * pred.eps
    if callback:
        callback(dict(i=0, t=ts[0], sigma=sig[0], x=to_x(den, x, sig[1]), x_0_hat=pred.x_0))
    return x, 1


def to_x(den: Denoiser, x_bar: torch.Tensor, sigma: float) -> torch.Tensor:
    """Back from the scaled state to the process's own x = s x_bar (what callbacks report)."""
    return den.process.coefs(sigma)[0].item() * x_bar


@torch.no_grad()
def sample_euler(
    model: Callable,
    x_T: torch.Tensor,
    sched=None,
    steps: int = 50,
    *,
    heun: bool = False,
    spacing: str | None = None,
    rho: float = 7.0,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """Karras et al. (2022) Algorithm 2: Euler's method (``heun=False``: ``steps`` network calls) or
    Heun's (two calls per step except the last, to sigma = 0, which is Euler's: 2 steps - 1 calls) on
    ``sigma_grid(process, steps, spacing)`` (Karras sigmas for VP and VE, uniform t for a flow). With an
    integer-index spacing, Euler is DDIM. ``s_churn > 0`` re-noises each level in [s_tmin, s_tmax] up to
    sigma (1 + gamma), gamma = min(s_churn / steps, sqrt(2) - 1), and evaluates the model there."""
    den = as_denoiser(model, sched)
    sig, ts = sigma_grid(den.process, steps, spacing, rho)
    gamma = min(s_churn / steps, math.sqrt(2) - 1)
    x, i0 = start(den, x_T, sig, ts, cond, callback)
    for i in range(i0, steps):
        sigma, t, sigma_next = sig[i], ts[i], sig[i + 1]
        if gamma > 0 and s_tmin <= sigma <= s_tmax:  # churn: add noise to climb to sigma_hat, then solve from there
            sigma_hat = sigma * (1 + gamma)
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * randn_like(x, generator)
            sigma, t = sigma_hat, None
        pred = denoise(den, x, sigma, t, cond)
        if heun and sigma_next > 0:  # the last step, to sigma = 0, is Euler's: eps_hat is undefined there
            x_euler = euler_step(x, pred.eps, sigma, sigma_next)
            x = heun_step(x, pred.eps, denoise(den, x_euler, sigma_next, ts[i + 1], cond).eps, sigma, sigma_next)
        else:
            x = euler_step(x, pred.eps, sigma, sigma_next)
        if callback:
            callback(dict(i=i, t=t, sigma=sigma, x=to_x(den, x, sigma_next), x_0_hat=pred.x_0))
    return check_finite(x, "sample_euler")


def sample_heun(
    model: Callable,
    x_T: torch.Tensor,
    sched=None,
    steps: int = 25,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **kwargs,
) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Alg. 1-2): ``sample_euler(..., heun=True)``,
    2 steps - 1 network calls. Spacing, churn and conditions as in ``sample_euler``."""
    return sample_euler(model, x_T, sched, steps, heun=True, generator=generator, callback=callback, **kwargs)


@torch.no_grad()
def sample_pf_ode(
    model: Callable,
    x_T: torch.Tensor,
    sched=None,
    steps: None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """The probability-flow ODE solved by scipy's adaptive RK45 (Dormand-Prince) to ``rtol``/``atol``:
    the accurate, slow reference for the fixed-step solvers.

    It integrates in the angle theta = arctan(sigma) and the state y = x_bar cos(theta), where the ODE reads
    dy / d theta = cos(theta) eps_hat - sin(theta) x_0_hat (the v of Salimans & Ho): finite from pure noise
    (theta = pi/2) to the data, for every process. Then the same last step to sigma = 0 as every other
    sampler (x_0 = x_0_hat at the smallest trained sigma; a flow, trained down to sigma = 0, stops at
    sigma = 1e-4, where eps_hat of an x_0-model is still defined: the jump's error is O(sigma^2) = 1e-8). The step count is chosen by the error
    control, so ``steps`` must be None; ``callback`` sees every network call (count them for the NFE).
    Deterministic: ``generator`` is accepted for the shared signature and unused."""
    from scipy.integrate import solve_ivp

    if steps is not None:
        raise ValueError("sample_pf_ode chooses its own steps (adaptive RK45); pass steps=None and set rtol/atol")
    den = as_denoiser(model, sched)
    check_finite(x_T, "sample_pf_ode's x_T")  # scipy refuses a non-finite start with a less helpful message
    s_min, s_max = den.process.sigma_range
    s_min = s_min or 1e-4
    shape, calls = x_T.shape, [0]

    def pred_at(y: torch.Tensor, sigma: float):
        a, b = (c.item() for c in den.process.coefs(sigma))
        pred = den(y * math.hypot(a, b), sigma, **cond)  # x = s x_bar = y sqrt(a^2 + b^2)
        if callback:
            callback(
                dict(
                    i=calls[0], t=den.process.time(sigma).item(), sigma=sigma, x=y * math.hypot(a, b), x_0_hat=pred.x_0
                )
            )
        calls[0] += 1
        return pred

    def rhs(theta: float, y):
        sigma = math.inf if theta >= math.pi / 2 else math.tan(theta)
        pred = pred_at(torch.from_numpy(y).reshape(shape).to(x_T), sigma)
        return (math.cos(theta) * pred.eps - math.sin(theta) * pred.x_0).double().cpu().numpy().ravel()

    a, b = (c.item() for c in den.process.coefs(s_max))
    y0 = (x_T.double() / math.hypot(a, b)).cpu().numpy().ravel()
    sol = solve_ivp(rhs, (math.atan(s_max), math.atan(s_min)), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"RK45 failed: {sol.message}")
    y = torch.from_numpy(sol.y[:, -1]).reshape(shape).to(x_T)
    return check_finite(pred_at(y, s_min).x_0, "sample_pf_ode")
