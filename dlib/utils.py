"""Small shared helpers: broadcasting, devices. Nothing here knows about diffusion."""

from __future__ import annotations

import torch


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims to ``x`` until it has ``ndim`` dims.

    The one broadcasting helper of the package: a per-sample value of shape (B,) becomes
    (B, 1, 1, 1) so it multiplies an image batch (B, C, H, W).
    """
    if x.ndim > ndim:
        raise ValueError(f"append_dims: input has {x.ndim} dims, more than the target {ndim}")
    return x.reshape(*x.shape, *([1] * (ndim - x.ndim)))


def default_device() -> torch.device:
    """CUDA when it is there, else the CPU. Library code follows ``x.device`` instead."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn on the generator's device, moved to ``x``'s.

    Drawing on the generator's own device keeps a seeded CPU generator usable with CUDA tensors.
    """
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
