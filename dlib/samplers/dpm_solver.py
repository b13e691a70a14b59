"""DPM-Solver (Lu et al. 2022) and DPM-Solver++ (Lu et al. 2023) in log-SNR time. Notebook 05.

Written in the scaled state x_bar = x_t / sqrt(alpha_bar) = x_0 + sigma eps of ``dlib.samplers.sigma``,
with ell = -log sigma (half the log-SNR; Lu et al. write lambda for it) and h = ell_next - ell = log(sigma / sigma_next).
The ODE's linear part is then solved exactly and only the network term is approximated:

    DPM-Solver   (eps form):  x_bar_next = x_bar - sigma_next (e^h - 1) eps_hat + higher-order corrections
    DPM-Solver++ (x_0 form):  x_bar_next = e^{-h} x_bar + (1 - e^{-h}) x_0_hat + higher-order corrections

Note sigma_next (e^h - 1) = sigma - sigma_next: first-order DPM-Solver is Euler in sigma, which is
DDIM; first-order DPM-Solver++ is the same step written with x_0_hat. Multiplying x_bar by
sqrt(alpha_bar) gives back the papers' formulas in x_t, with Lu et al.'s alpha_t = sqrt(alpha_bar) and
sigma_t = sqrt(1 - alpha_bar).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dlib.denoiser import as_denoiser
from dlib.samplers.grid import sigma_grid
from dlib.samplers.sigma import denoise, start, to_x
from dlib.utils import check_finite


def dpm_solver_step(
    eps_fn: Callable, x_bar: torch.Tensor, eps_hat: torch.Tensor, sigma: float, sigma_next: float, order: int
):
    """One singlestep DPM-Solver-k step (Lu et al. 2022, Algorithms 4-5 with r1 = 1/2 and r1, r2 = 1/3, 2/3).

    ``eps_fn(x_bar, sigma)`` evaluates the network at intermediate noise levels (order - 1 extra calls,
    at ell + r h); ``eps_hat`` is the network at (x_bar, sigma). Order 1 is DDIM.
    """
    if order == 1 or sigma_next == 0:  # a step to sigma = 0 has h = inf: only the first-order step is defined
        return x_bar - (sigma - sigma_next) * eps_hat
    h = math.log(sigma / sigma_next)
    if order == 2:
        r1 = 0.5
        s1 = sigma * math.exp(-r1 * h)
        u1 = x_bar - (sigma - s1) * eps_hat
        d1 = eps_fn(u1, s1) - eps_hat
        return x_bar - (sigma - sigma_next) * (eps_hat + d1 / (2 * r1))
    if order == 3:
        r1, r2 = 1 / 3, 2 / 3
        s1, s2 = sigma * math.exp(-r1 * h), sigma * math.exp(-r2 * h)
        u1 = x_bar - (sigma - s1) * eps_hat
        d1 = eps_fn(u1, s1) - eps_hat
        phi_2 = (sigma - s2) / (r2 * h) - s2  # sigma_s2 ((e^{r2 h} - 1) / (r2 h) - 1)
        u2 = x_bar - (sigma - s2) * eps_hat - (r2 / r1) * phi_2 * d1
        d2 = eps_fn(u2, s2) - eps_hat
        phi = (sigma - sigma_next) / h - sigma_next  # sigma_next ((e^h - 1) / h - 1)
        return x_bar - (sigma - sigma_next) * eps_hat - phi * d2 / r2
    raise ValueError(f"DPM-Solver order must be 1, 2 or 3, got {order}")


def dpm_solver_pp_step(
    x_bar: torch.Tensor, x_0_hats: list[torch.Tensor], sigmas: list[float], sigma_next: float, order: int
) -> torch.Tensor:
    """One multistep DPM-Solver++ step (Lu et al. 2023, Algorithm 2 for 2M; 3M from the Taylor expansion).

    ``x_0_hats`` and ``sigmas`` hold the latest data predictions and their noise levels, newest first
    (at least ``order`` of each); the earlier ones estimate the derivatives of x_0_hat in ell.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3, got {order}")
    sigma, m0 = sigmas[0], x_0_hats[0]
    ratio = sigma_next / sigma  # e^{-h}
    x_next = ratio * x_bar + (1 - ratio) * m0
    if order == 1:
        return x_next
    h = math.log(sigma / sigma_next)
    r0 = math.log(sigmas[1] / sigma) / h
    d1_0 = (m0 - x_0_hats[1]) / r0
    if order == 2:  # the "midpoint" form of the paper's code
        return x_next + 0.5 * (1 - ratio) * d1_0
    r1 = math.log(sigmas[2] / sigmas[1]) / h
    d1_1 = (x_0_hats[1] - x_0_hats[2]) / r1
    # Divided differences: d1 ~ h x_0_hat' and d2 ~ h^2 x_0_hat'' (in ell), each to the order needed.
    # diffusers and the reference code use d2 = (d1_0 - d1_1) / (r0 + r1), which is h^2 x_0_hat'' / 2:
    # the x_0_hat'' term then gets half its Taylor weight and 3M's local error is O(h^3), not O(h^4).
    d2 = 2 * (d1_0 - d1_1) / (r0 + r1)
    d1 = d1_0 + r0 / 2 * d2
    return x_next + ((ratio - 1) / h + 1) * d1 - ((ratio - 1 + h) / h**2 - 0.5) * d2


@torch.no_grad()
def sample_dpm_solver(
    model: Callable,
    x_T: torch.Tensor,
    sched=None,
    steps: int = 20,
    *,
    order: int = 2,
    plus: bool = True,
    spacing: str | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """DPM-Solver++ (``plus=True``, multistep, orders 1-3: 2M and 3M) or DPM-Solver (``plus=False``,
    singlestep, orders 1-3) on the noise levels ``sigma_grid(process, steps, spacing)`` (default: trailing
    indices for VP, the process's own spacing otherwise), ending at sigma = 0.

    Network calls: DPM-Solver++ makes one per step (``steps``). Multistep warms up with lower orders
    on its first steps, and, as in the reference code, takes the last step (to sigma = 0, where h is
    infinite) at first order, and with fewer than 15 steps the one before at most second order.
    Singlestep DPM-Solver-k spends k calls on every step but the last: order (steps - 1) + 1.
    From pure noise (sigma = inf) the first step is ``sigma.start``'s. Deterministic; ``generator`` is
    accepted for the shared signature and unused.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    den = as_denoiser(model, sched)
    sig, ts = sigma_grid(den.process, steps, spacing, default="trailing")  # sig ends with 0.0, the data
    x, i0 = start(den, x_T, sig, ts, cond, callback)

    def eps_fn(x_bar, sigma):
        return denoise(den, x_bar, sigma, None, cond).eps

    x_0_hats: list[torch.Tensor] = []
    for i in range(i0, steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        pred = denoise(den, x, sigma, ts[i], cond)
        if plus:
            x_0_hats.insert(0, pred.x_0)
            del x_0_hats[order:]
            k = min(order, len(x_0_hats))  # warm-up: only so many predictions exist
            if i == steps - 1:
                k = 1
            elif i == steps - 2 and steps < 15:
                k = min(k, 2)
            x = dpm_solver_pp_step(x, x_0_hats, sig[i::-1], sigma_next, k)
        else:
            x = dpm_solver_step(eps_fn, x, pred.eps, sigma, sigma_next, order)
        if callback:
            callback(dict(i=i, t=ts[i], sigma=sigma, x=to_x(den, x, sigma_next), x_0_hat=pred.x_0))
    return check_finite(x, "sample_dpm_solver")
