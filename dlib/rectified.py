"""Rectified flow (Liu et al. 2023): reflow's coupling, and how straight a model's ODE paths are (notebook 11).

A flow-matching model trained on independent (data, noise) pairs learns crossing-free but curved paths:
its ODE maps each noise z to a sample x = ODE(z). Reflow retrains on those pairs (x, z), whose straight
interpolants cross much less, so the new model's paths are straighter and a few Euler steps go far.
Straightness is measured in the flow's coordinates y_t = (1 - t) x_0 + t eps, where every model of the
course has a velocity: y = x / (a + b) and dy/dt = eps_hat - x_0_hat = (y - x_0_hat) / t, whatever its
process (VP, VE or the flow itself). Liu et al.'s measure (their eq. 12, per example, mean over dimensions):

    S = int_0^1 || (y_1 - y_0) - dy_t/dt ||^2 dt          (0 for a straight path traversed at constant speed)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from dlib.denoiser import as_denoiser
from dlib.samplers import SAMPLERS, sample_euler


class FlowPath(NamedTuple):
    """An Euler path in flow coordinates: times t (N + 1,) from ~1 to 0, states y (N + 1, B, ...), velocities v (N, B, ...)."""

    t: torch.Tensor
    y: torch.Tensor
    v: torch.Tensor


@torch.no_grad()
def ode_path(model: Callable, x_T: torch.Tensor, sched=None, steps: int = 100, *, spacing=None, **cond) -> FlowPath:
    """Euler's path of the model's probability-flow ODE from x_T (``sample_euler``, ``steps`` calls), read in the
    flow's coordinates y = x / (a + b), t = sigma / (1 + sigma), with the velocity (y - x_0_hat) / t of every step."""
    den = as_denoiser(model, sched)
    records = []
    x_end = sample_euler(den, x_T, None, steps, spacing=spacing, callback=records.append, **cond)
    sig = [r["sigma"] for r in records] + [0.0]

    def scale(sigma: float) -> float:  # a + b = s (1 + sigma): y = x / (a + b)
        return sum(den.process.coefs(sigma)).item()

    ys, vs = [x_T / scale(sig[0])], []
    for i, r in enumerate(records):
        a, b = (c.item() for c in den.process.coefs(sig[i]))
        vs.append((ys[-1] - r["x_0_hat"]) / (b / (a + b)))  # t = sigma / (1 + sigma) = b / (a + b), 1 at sigma = inf
        ys.append(r["x"] / scale(sig[i + 1]))
    ts = [(b / (a + b)).item() for a, b in (den.process.coefs(s) for s in sig)]
    ys[-1] = x_end
    return FlowPath(torch.tensor(ts, dtype=torch.float64), torch.stack(ys), torch.stack(vs))


def straightness(path: FlowPath) -> torch.Tensor:
    """Liu et al.'s S per example, (B,): sum_i (t_i - t_{i+1}) mean_dims ||(y_start - y_end) - v_i||^2 / (t_0 - t_N)."""
    chord = path.y[0] - path.y[-1]
    dt = (path.t[:-1] - path.t[1:]).to(path.v)
    gap = (chord.unsqueeze(0) - path.v).flatten(2).pow(2).mean(2)  # (N, B)
    return (dt.unsqueeze(1) * gap).sum(0) / dt.sum()


@torch.no_grad()
def reflow_pairs(
    model: Callable,
    shape: tuple[int, ...],
    n: int,
    *,
    sampler: str = "heun",
    steps: int = 10,
    batch: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
    **cond,
) -> dict:
    """Reflow's training data: n noises z ~ N(0, I) of ``shape`` and the samples x_0 = ODE(z) the model's
    deterministic ``sampler`` carries them to, in batches (``steps`` is ignored by the adaptive "pf_ode"). Returns dict(x_0, noise, card), both (n, *shape)
    float32 on the CPU, and what made them (for the model card)."""
    if sampler not in ("euler", "heun", "pf_ode", "dpm_solver", "ddim"):
        raise ValueError(
            f"reflow needs a deterministic ODE sampler (euler, heun, pf_ode, dpm_solver, ddim), got {sampler!r}"
        )
    if n < 1 or batch < 1:
        raise ValueError(f"n and batch must be positive, got n={n}, batch={batch}")
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *shape), generator=gen)
    start, out = time.perf_counter(), []
    for i in range(0, n, batch):
        x_T = noise[i : i + batch].to(device)
        out.append(SAMPLERS[sampler](model, x_T, steps=None if sampler == "pf_ode" else steps, **cond).float().cpu())
    card = dict(n=n, sampler=sampler, steps=steps, seed=seed, wall_time_s=round(time.perf_counter() - start, 1))
    return dict(x_0=torch.cat(out), noise=noise, card=card)
