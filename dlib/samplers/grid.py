"""Where a sampler evaluates the network: integer time indices (DDPM, DDIM) or noise levels sigma. Notebook 05.

``timesteps`` picks integer indices of a discrete VP schedule; ``sigma_grid`` turns any spacing into
the noise levels a sigma-space solver visits, for every process of ``dlib.denoiser`` (VP, Flow, VE).
"""

from __future__ import annotations

import math

import torch

from dlib.denoiser import VP, Process
from dlib.schedules import Schedule, karras_sigmas, sigmas

SPACINGS = ("leading", "trailing", "linspace", "quadratic")  # integer indices of a VP schedule
SIGMA_SPACINGS = (*SPACINGS, "karras", "logsnr", "uniform")


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
    """alpha_bar at each visited index in float64, followed by 1.0 (the data): len(ts) + 1 floats."""
    return sched.float64()["alpha_bar"][ts.cpu()].tolist() + [1.0]


def sigma_grid(
    process: Process | Schedule, steps: int, spacing: str | None = None, rho: float = 7.0, *, default: str = "karras"
) -> tuple[list[float], list[float]]:
    """The noise levels a sigma-space solver visits and the network time at each: (steps + 1 sigmas
    ending in 0.0, the data; steps times).

    spacing: an integer-index spacing of ``timesteps`` (VP schedules; exact integer t), "karras"
    (equal steps in sigma^(1/rho) over the process's finite sigma range), "logsnr" (equal steps in
    ell = -log sigma, DPM-Solver's choice for small images), or "uniform" (equal steps in the
    network's time: the flow's t from 1 to 0). None takes the process's default, else ``default``.
    """
    process = VP(process) if isinstance(process, Schedule) else process
    spacing = spacing or process.default_spacing or default
    if spacing not in SIGMA_SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {SIGMA_SPACINGS}")
    if spacing in SPACINGS:
        if not isinstance(process, VP):
            raise ValueError(f"spacing {spacing!r} picks integer indices of a VP schedule; {process} has none")
        ts = timesteps(process.sched.T, steps, spacing)
        return sigmas(process.sched)[ts].tolist() + [0.0], [float(t) for t in ts.tolist()]
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    lo, hi = process.sigma_range
    if spacing == "uniform":
        t_hi, t_lo = process.time(hi).item(), process.time(lo).item()
        times = torch.linspace(t_hi, t_lo, steps + 1, dtype=torch.float64)[:-1]
        s = process.sigma_of_time(times)
        s[0] = hi  # exact at the start (the flow's t = 1 is sigma = inf)
    else:
        if not (math.isfinite(hi) and lo > 0):
            raise ValueError(
                f"spacing {spacing!r} needs a finite sigma range, but {process} has sigma in [{lo}, {hi}] "
                "(zero terminal SNR or a flow from t = 1): use an integer spacing or 'uniform'"
            )
        if spacing == "karras":
            s = karras_sigmas(lo, hi, steps, rho)
        else:
            s = torch.linspace(math.log(hi), math.log(lo), steps, dtype=torch.float64).exp()
    return s.tolist() + [0.0], process.time(s).tolist()
