"""The unCLIP prior in miniature: a denoiser in the contrastive model's embedding space (notebook 07).

DALL-E 2 (Ramesh et al. 2022) generates in two stages: a *prior* turns a caption's CLIP text
embedding into a CLIP image embedding, and a *decoder* turns that image embedding into an image.
The prior is itself a diffusion model, on vectors rather than images: it denoises a noisy image
embedding x_t (B, dim), conditioned on the caption's text embedding, and predicts x_0 directly, as
DALL-E 2's prior does (their section 2.1). Theirs is a decoder-only transformer; for 128-d vectors
a residual MLP is enough.

Same contract as the U-Net: ``model(x_t (B, dim), t (B,), context=(B, 1, dim), context_mask=(B, 1))``,
the text embedding passed as a one-token context so that prompt dropout (``dlib.conditioning``) and
classifier-free guidance (``dlib.guidance``) treat it like any other prompt; ``null_text`` is the
learned "no caption". Without a context the model is the unconditional prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dlib.nets.blocks import null_prompt, timestep_embedding, zero_init


@dataclass(frozen=True)
class PriorConfig:
    dim: int = 128  # the embedding's dimension (dlib.nets.ContrastiveModel's embed_dim)
    width: int = 512  # hidden width of the residual MLP
    depth: int = 4  # residual blocks

    def __post_init__(self):
        if min(self.dim, self.width, self.depth) < 1:
            raise ValueError(f"PriorConfig needs positive dim, width and depth, got {self}")

    @property
    def data_scale(self) -> float:
        """The prior's data is sqrt(dim) * a unit-length embedding: per-coordinate variance about 1, as the noise
        schedules assume (the same reason latent diffusion scales its latents)."""
        return math.sqrt(self.dim)


class _Block(nn.Module):
    """h + MLP(LayerNorm(h) + time/text embedding): a pre-norm residual block, zero-initialised output."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), zero_init(nn.Linear(2 * width, width)))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(self.norm(h) + emb)


class EmbeddingPrior(nn.Module):
    """x_0_hat = f(x_t, t, text embedding): a residual MLP over [x_t, text], with t and text added per block."""

    def __init__(self, cfg: PriorConfig = PriorConfig()):
        super().__init__()
        self.cfg = cfg
        d, w = cfg.dim, cfg.width
        self.time = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.text = nn.Linear(d, w)
        self.inp = nn.Linear(2 * d, w)
        self.blocks = nn.ModuleList(_Block(w) for _ in range(cfg.depth))
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, d))
        self.null_context = nn.Parameter(torch.zeros(1, 1, d))  # the learned "no caption"

    def null_text(self, batch: int, length: int = 1) -> dict[str, torch.Tensor]:
        """The "no caption" condition, ``dict(context (batch, length, dim), context_mask (batch, length))``
        (as ``UNet.null_text``: the null token first, masked padding after)."""
        return null_prompt(self.null_context, batch, length)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, d = len(x_t), self.cfg.dim
        if x_t.ndim != 2 or x_t.shape[1] != d:
            raise ValueError(f"EmbeddingPrior expects x_t of shape (B, {d}), got {tuple(x_t.shape)}")
        if y is not None:
            raise ValueError("EmbeddingPrior is conditioned on a text embedding (context), not on labels y")
        if context is None:
            context = self.null_text(B)["context"]
        if context.ndim != 3 or context.shape[0] != B or context.shape[2] != d:
            raise ValueError(f"EmbeddingPrior expects a context of shape ({B}, L, {d}), got {tuple(context.shape)}")
        text = context[:, 0]  # the one token: the caption's embedding, or the learned null
        emb = self.time(timestep_embedding(t, self.cfg.width)) + self.text(text)
        h = self.inp(torch.cat([x_t, text], dim=1))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
