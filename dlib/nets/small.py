"""A small MLP denoiser for low-dimensional toy data (the 2D point clouds of ``dlib.data.toy_2d``).

The toy data sets appear in notebook 01; the denoiser uses the sinusoidal time embedding derived in
notebook 03 and is trained by the ``toy-2d`` recipe. Same contract as the U-Net:
``model(x_t (B, dim), t (B,)) -> (B, dim)``; conditioning keywords are accepted and ignored.
"""

from __future__ import annotations

import torch
from torch import nn

from dlib.nets.blocks import timestep_embedding


class MLPDenoiser(nn.Module):
    """[x_t, embedding(t)] -> an output of x_t's shape, through ``layers`` hidden SiLU layers.

    ``dim`` is the data dimension (2 for the toys), ``hidden`` the width of each hidden layer,
    ``emb_dim`` the width of the sinusoidal embedding of t.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 3, emb_dim: int = 32):
        super().__init__()
        if min(dim, hidden, layers, emb_dim) < 1:
            raise ValueError(f"dim, hidden, layers and emb_dim must be >= 1, got {dim}, {hidden}, {layers}, {emb_dim}")
        self.dim, self.emb_dim = dim, emb_dim
        blocks, width = [], dim + emb_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        if x_t.ndim != 2 or x_t.shape[1] != self.dim:
            raise ValueError(f"MLPDenoiser expects x_t of shape (B, dim={self.dim}), got {tuple(x_t.shape)}")
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"t must have shape (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
        h = torch.cat([x_t, timestep_embedding(t, self.emb_dim)], dim=1)  # (B, dim + emb_dim)
        return self.net(h)  # (B, dim)
