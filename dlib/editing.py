"""Editing with a trained diffusion model, at sampling time: inpainting by replacement and by
resampling (RePaint), and image-to-image (SDEdit). Notebook 08.

All of it walks one grid of noise levels, the respaced DDPM grid of ``samplers.discrete.vp_grid``:
level l = steps is pure noise, level 0 the data. A walk is a list of levels, each move either one
level down (a DDPM step, or DDIM with ``eta`` < 1) or ``jump`` levels up (forward noising, RePaint's
jump back in time). Masks follow ``dlib.controls``: 1 = generate, 0 = keep.

- ``replace_known``: the known pixels noised to the level the state has just reached, pasted in.
- ``repaint_levels``: the walk of RePaint (Lugmayr et al. 2022, Algorithm 1 with jumps).
- ``sample_inpaint``: replacement (``resamples=1``) or RePaint; the known region is exact at the end.
- ``sdedit``: noise an image to ``strength`` and walk back down (Meng et al. 2022).
- ``seam``: how much sharper the image changes across the mask's edge than the original did.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlib.controls import check_mask
from dlib.denoiser import as_denoiser
from dlib.samplers.discrete import ddim_step, vp_grid
from dlib.utils import check_finite, randn_like


def noise_to(x: torch.Tensor, alpha_bar, noise: torch.Tensor) -> torch.Tensor:
    """sqrt(alpha_bar) x + sqrt(1 - alpha_bar) noise: q(x_t | x_0) when x is clean data, and the jump up the grid
    q(x_high | x_low) when alpha_bar is the ratio alpha_bar_high / alpha_bar_low (VP: the jumps compose)."""
    a = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return (a.sqrt() * x + (1 - a).sqrt() * noise).to(x.dtype)


def replace_known(
    x: torch.Tensor, x_known: torch.Tensor, mask: torch.Tensor, alpha_bar, noise: torch.Tensor
) -> torch.Tensor:
    """Inpainting by replacement, one step: the state x (at the level with ``alpha_bar``) keeps its pixels
    where mask = 1; elsewhere it takes the known image noised to that same level,
    sqrt(alpha_bar) x_known + sqrt(1 - alpha_bar) noise. At alpha_bar = 1 the known pixels are exact."""
    return mask * x + (1 - mask) * noise_to(x_known, alpha_bar, noise)


def repaint_levels(steps: int, jump: int = 1, resamples: int = 1) -> list[int]:
    """RePaint's walk over levels steps -> 0: down one level at a time; at every level that is a multiple of
    ``jump`` (with room above it), go back up ``jump`` levels and down again, ``resamples - 1`` times, so
    each stretch of ``jump`` levels is denoised ``resamples`` times. ``resamples=1``: steps, ..., 1, 0."""
    if steps < 1 or jump < 1 or resamples < 1 or jump > steps:
        raise ValueError(f"need steps >= 1, 1 <= jump <= steps and resamples >= 1; got {steps}, {jump}, {resamples}")
    return jump_walk(steps, range(0, steps - jump + 1, jump), jump, resamples - 1)


def jump_walk(steps: int, points, up: int, jumps: int) -> list[int]:
    """Down one level at a time from ``steps`` to 0; on arriving at each level in ``points``, back up ``up`` levels,
    ``jumps`` times in all (RePaint's walk is ``repaint_levels``)."""
    left = {level: jumps for level in points}
    levels, level = [steps], steps
    while level > 0:
        level -= 1
        levels.append(level)
        if left.get(level, 0) > 0:
            left[level] -= 1
            level += up
            levels.append(level)
    return levels


@torch.no_grad()
def walk(
    model: Callable,
    x: torch.Tensor,
    levels: list[int],
    sched=None,
    steps: int = 50,
    *,
    eta: float = 1.0,
    known: tuple[torch.Tensor, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """Walk ``levels`` (each move -1, or up by any amount) on the ``steps``-step grid from the state x at
    ``levels[0]``. Down: one DDIM step with ``eta`` (1 = DDPM's ancestral step), then, with
    ``known=(x_known, mask)``, ``replace_known`` at the new level. Up: forward noising
    q(x_high | x_low) = N(sqrt(ab_high / ab_low) x_low, (1 - ab_high / ab_low) I). One network call per down move."""
    den = as_denoiser(model, sched)
    ts, alpha_bar, sig = vp_grid(den, steps, "trailing")  # alpha_bar[i] at position i = steps - level
    for k, (a, b) in enumerate(zip(levels[:-1], levels[1:], strict=True)):
        i, j = steps - a, steps - b
        if not (0 <= b <= steps and 0 <= a <= steps):
            raise ValueError(f"levels must lie in 0..{steps}, got a move {a} -> {b}")
        if b == a - 1:
            pred = den(x, sig[i], ts[i], **cond)
            noise = randn_like(x, generator) if eta > 0 and b > 0 else None
            x, x_0_hat = ddim_step(x, pred.eps, alpha_bar[i], alpha_bar[j], eta, noise, x_0_hat=pred.x_0)
            if known is not None:
                x = replace_known(x, known[0], known[1], alpha_bar[j], randn_like(x, generator))
        elif b > a:
            x = noise_to(x, alpha_bar[j] / alpha_bar[i], randn_like(x, generator))
            x_0_hat = None
        else:
            raise ValueError(f"a walk moves one level down or any number up; got {a} -> {b}")
        if callback:
            callback(dict(k=k, level=b, x=x, x_0_hat=x_0_hat))
    return check_finite(x, "walk")


def sample_inpaint(
    model: Callable,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    sched=None,
    steps: int = 50,
    *,
    jump: int = 1,
    resamples: int = 1,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """Fill the region mask = 1 of ``x_known`` (B, C, H, W) with an unconditional (or conditioned) model:
    replacement with ``resamples=1`` (``steps`` network calls), RePaint otherwise
    (``steps + (resamples - 1) * jump * (steps // jump)`` calls, roughly)."""
    mask = check_mask(mask, x_known)
    x = randn_like(x_known, generator)
    levels = repaint_levels(steps, jump, resamples)
    return walk(model, x, levels, sched, steps, known=(x_known, mask), generator=generator, callback=callback, **cond)


def sdedit(
    model: Callable,
    x: torch.Tensor,
    strength: float,
    sched=None,
    steps: int = 50,
    *,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    **cond,
) -> torch.Tensor:
    """SDEdit: noise x to level round(strength * steps) of the grid (q(x_t | x_0)) and walk down to the data.
    strength 0 returns x; 1 starts from (almost) pure noise and ignores it. ``eta`` as in ``walk``."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1] (the share of the noise levels to walk back), got {strength}")
    n = round(strength * steps)
    if n == 0:
        return x.clone()
    den = as_denoiser(model, sched)
    _, alpha_bar, _ = vp_grid(den, steps, "trailing")
    x_n = noise_to(x, alpha_bar[steps - n], randn_like(x, generator))
    return walk(
        model, x_n, list(range(n, -1, -1)), sched, steps, eta=eta, generator=generator, callback=callback, **cond
    )


def seam(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |difference| between 4-neighbours on either side of the mask's edge (one pixel known, one generated),
    per image (B,). Compare it with the same measure on the original image: the excess is the seam."""
    mask = check_mask(mask, x).expand(len(x), -1, -1, -1)
    out = []
    for dim in (-1, -2):
        d = (x.narrow(dim, 1, x.shape[dim] - 1) - x.narrow(dim, 0, x.shape[dim] - 1)).abs().sum(1, keepdim=True)
        cross = (mask.narrow(dim, 1, mask.shape[dim] - 1) != mask.narrow(dim, 0, mask.shape[dim] - 1)).to(x.dtype)
        out.append(((d * cross).flatten(1).sum(1), cross.flatten(1).sum(1)))
    total, count = out[0][0] + out[1][0], out[0][1] + out[1][1]
    return total / count.clamp(min=1)
