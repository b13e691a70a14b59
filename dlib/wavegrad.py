"""Training a vocoder on a continuous noise level (Chen et al. 2021, WaveGrad, sec. 3.1 and Algorithm 1).

A discrete-time model learns eps_hat(x_t, t) for the T levels of one schedule. WaveGrad conditions on the
noise level itself, l = sqrt(alpha_bar) (``dlib.nets.vocoder``), and trains on levels drawn *between*
the schedule's: pick s ~ U{1..T}, then l ~ U[l_s, l_{s-1}) with l_s = sqrt(alpha_bar_s) and l_0 = 1. Every
level from l_T up to 1 is then trained on, so any schedule whose levels lie in that range can sample:
6 steps or 1,000, chosen after training (``dlib.samplers.vocoder``).

The data are waveforms x_0 (B, L) or (B, 1, L) with their mel images (B, n_mels, L / hop); the loss is
WaveGrad's L1 distance between eps and eps_hat.
"""

from __future__ import annotations

import torch

from dlib.losses import ONE_PROCESS, Shard
from dlib.schedules import Schedule


def level_grid(sched: Schedule) -> torch.Tensor:
    """(T + 1,) noise levels l_0 = 1 > l_1 > ... > l_T: l_s = sqrt(alpha_bar_s), the schedule's signal scales."""
    return torch.cat([torch.ones(1, dtype=torch.float64), sched.float64()["alpha_bar"].sqrt()])


def sample_levels(grid: torch.Tensor, u_step: torch.Tensor, u_level: torch.Tensor) -> torch.Tensor:
    """Continuous levels (B,) from two U[0, 1) draws each: s = 1 + floor(u_step * T), l = l_s + (l_{s-1} - l_s) u_level."""
    T = len(grid) - 1
    s = (u_step * T).long().clamp(0, T - 1) + 1
    hi, lo = grid[s - 1].to(u_level), grid[s].to(u_level)
    return lo + (hi - lo) * u_level


class VocoderLoss:
    """``loss(model, x_0, generator, mel=...)``: E |eps - eps_hat(l x_0 + sqrt(1 - l^2) eps, l, mel)|, l continuous."""

    def __init__(self, sched: Schedule, *, shard: Shard = ONE_PROCESS):
        self.grid, self.shard = level_grid(sched), shard

    def __call__(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None, *, mel: torch.Tensor):
        x_0 = x_0.unsqueeze(1) if x_0.ndim == 2 else x_0  # (B, 1, L)
        level = sample_levels(self.grid, self.shard.rand(x_0, generator), self.shard.rand(x_0, generator))
        eps = self.shard.randn(x_0, generator)
        l = level[:, None, None]
        x_t = l * x_0 + (1 - l**2).sqrt() * eps
        return (model(x_t, level, mel) - eps).abs().mean()
