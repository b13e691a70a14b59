"""Figures the notebooks share: image grids and 2D scatter plots. No diffusion logic here."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


def image_grid(x: torch.Tensor, nrow: int = 8, pad: int = 1) -> torch.Tensor:
    """Tile a batch (B, C, H, W) in [-1, 1] into one (H', W', C) array in [0, 1] for imshow."""
    if x.ndim != 4:
        raise ValueError(f"image_grid expects (B, C, H, W), got shape {tuple(x.shape)}")
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)  # (B, H, W, C)
    B, H, W, C = x.shape
    ncol = min(nrow, B)
    nrows = -(-B // ncol)
    grid = torch.ones(nrows * (H + pad) - pad, ncol * (W + pad) - pad, C)
    for i in range(B):
        r, c = divmod(i, ncol)
        grid[r * (H + pad) : r * (H + pad) + H, c * (W + pad) : c * (W + pad) + W] = x[i]
    return grid.squeeze(-1) if C == 1 else grid


def show_images(x: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None):
    """Show a batch of images in [-1, 1] as one grid; returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(min(12, 1.2 * min(nrow, len(x))), 1.2 * -(-len(x) // nrow) + 0.4))
    ax.imshow(image_grid(x, nrow), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def scatter_2d(points: torch.Tensor, ax=None, title: str | None = None, lim: float = 2.5, **kwargs):
    """Scatter (N, 2) points on square axes with fixed limits, so panels compare at a glance."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    p = points.detach().cpu()
    ax.scatter(p[:, 0], p[:, 1], s=kwargs.pop("s", 2), alpha=kwargs.pop("alpha", 0.5), **kwargs)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="$x_1$", ylabel="$x_2$")
    if title:
        ax.set_title(title)
    return ax
