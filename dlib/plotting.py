"""Figures the notebooks share: image grids and 2D scatter plots. No diffusion logic here."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid


def image_grid(x: torch.Tensor, nrow: int = 8, pad: int = 1) -> torch.Tensor:
    """Tile a batch (B, C, H, W) in [-1, 1] into one (H', W', C) array in [0, 1] for imshow.

    Images sit ``pad`` white pixels apart, ``nrow`` to a row, with no border around the grid
    (torchvision's ``make_grid``, whose outer border is cropped).
    """
    if x.ndim != 4:
        raise ValueError(f"image_grid expects (B, C, H, W), got shape {tuple(x.shape)}")
    x = (x.detach().float().cpu().clamp(-1, 1) + 1) / 2
    C = x.shape[1]
    grid = make_grid(x, nrow=nrow, padding=pad, pad_value=1.0)  # (3 or C, H', W'), a 1-image batch unpadded
    if len(x) > 1 and pad > 0:
        grid = grid[:, pad:-pad, pad:-pad]
    grid = grid[:C].permute(1, 2, 0)  # make_grid repeats a single channel to three
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
