"""Sampling a diffusion vocoder with any noise schedule, and WaveGrad's search for a few-step one (notebook 09).

``vocode(net, mel, betas)`` runs the ancestral sampler (DDPM Algorithm 2, ``ddpm_step``) over the N levels of
``betas`` (betas[0..N-1], smallest first; alpha_bar[n] = prod_{k<=n} (1 - betas[k])): x ~ N(0, I) at level
sqrt(alpha_bar[N-1]), then one step down per level, the network's eps_hat read at level sqrt(alpha_bar[n]). The network was trained on a continuous level (``dlib.wavegrad``), so N is free:
50 steps, 6 or 1. A short schedule need not reach pure noise: with the mel as a strong condition, WaveGrad's
and DiffWave's 6-step schedules end at alpha_bar_N ~ 0.4 and still start from N(0, I).

``search_schedule`` is WaveGrad's grid search at small scale (Chen et al. 2021, sec. 4): try geometric
schedules betas[n] = first * (last / first)^(n / (N - 1)), n = 0..N-1, and keep the one whose audio is closest to the
real recordings (any score, e.g. ``dlib.audio.log_mel_distance``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch

from dlib.audio import check_mel
from dlib.samplers.discrete import ddpm_step

FAST_SCHEDULES = {  # published few-step schedules (betas), for comparison with a searched one
    # DiffWave's fast schedule: inference_noise_schedule in the reference implementation (lmnt-com/diffwave, params.py)
    "diffwave-6": (1e-4, 1e-3, 1e-2, 5e-2, 2e-1, 5e-1),
}


def check_betas(betas) -> torch.Tensor:
    betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
    if betas.numel() == 0 or not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError(f"betas must be a non-empty sequence in (0, 1), smallest noise first; got {betas.tolist()}")
    return betas


def linear_betas(steps: int, first: float = 1e-4, last: float = 0.05) -> torch.Tensor:
    """DiffWave's sampling schedule: ``steps`` betas evenly spaced from 1e-4 to 0.05 (50 steps in the paper)."""
    return torch.linspace(first, last, steps, dtype=torch.float64)


def geometric_betas(steps: int, first: float, last: float) -> torch.Tensor:
    """``steps`` betas evenly spaced in log from ``first`` to ``last`` (one step: just ``first``)."""
    return torch.logspace(math.log10(first), math.log10(last), steps, dtype=torch.float64)


@torch.no_grad()
def vocode(
    net: torch.nn.Module,
    mel: torch.Tensor,
    betas,
    *,
    generator: torch.Generator | None = None,
    callback: Callable | None = None,
) -> torch.Tensor:
    """Waveforms (B, frames * hop) from mel images (B, n_mels, frames) by the ancestral sampler over ``betas``.

    ``callback(n, x_n)`` sees each intermediate waveform (B, 1, L). The noise comes from ``generator``.
    """
    mel = check_mel(mel)
    betas = check_betas(betas)
    alpha_bar = torch.cumprod(1 - betas, 0)
    device = next(net.parameters()).device
    mel = mel.to(device)
    shape = (len(mel), 1, mel.shape[-1] * net.cfg.hop)
    x = torch.randn(shape, generator=generator).to(device)
    for n in reversed(range(len(betas))):
        level = alpha_bar[n].sqrt().float().expand(len(mel)).to(device)
        eps_hat = net(x, level, mel)
        prev = alpha_bar[n - 1].item() if n > 0 else 1.0
        noise = torch.randn(shape, generator=generator).to(device) if n > 0 else None
        x, _ = ddpm_step(x, eps_hat, alpha_bar[n].item(), prev, noise)
        if callback is not None:
            callback(n, x)
    return x[:, 0].clamp(-1, 1)


def search_schedule(
    score: Callable[[torch.Tensor], float], steps: int, firsts, lasts
) -> tuple[torch.Tensor, list[tuple[float, float, float]]]:
    """The geometric schedule of ``steps`` betas with the lowest ``score(betas)``, over every (first, last) pair
    of the two grids with first <= last (one step: first == last, the single beta); returns (best betas,
    [(first, last, score), ...] in the order tried)."""
    table = []
    for first, last in itertools.product(firsts, lasts):
        if first <= last and (steps > 1 or first == last):
            table.append((first, last, float(score(geometric_betas(steps, first, last)))))
    if not table:
        need = "first == last (one step has one beta)" if steps == 1 else "first <= last"
        raise ValueError(f"no (first, last) pair with {need} in {list(firsts)} x {list(lasts)}")
    first, last, _ = min(table, key=lambda row: row[2])
    return geometric_betas(steps, first, last), table
