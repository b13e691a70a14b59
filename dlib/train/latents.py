"""Training data for latent diffusion and the unCLIP prior: what a frozen encoder makes of the images (notebook 07).

Stable Diffusion trains its U-Net on ``scaling_factor * z`` with z drawn from the autoencoder's
posterior q(z | x) of each training image (Rombach et al. 2022). The encoder is frozen, so each
image's posterior is computed once: ``LatentData`` keeps the means and standard deviations of the
whole training set and draws z = mean + std * eps per batch, from the run's generator (a resumed
run draws the same z). The images themselves still go to the conditioning (captions measure them).
"""

from __future__ import annotations

import torch

from dlib.losses import Shard


class LatentData:
    """``LatentData(ae, images)``; ``sample(idx, generator, shard)`` -> this process's rows of the batch's
    scaled latents (b, C_z, h, w). ``shape`` is one latent's (C_z, h, w)."""

    @torch.no_grad()
    def __init__(self, ae: torch.nn.Module, images: torch.Tensor, batch_size: int = 1000):
        ae = ae.eval()
        device = next(ae.parameters()).device
        means, stds = [], []
        for i in range(0, len(images), batch_size):
            q = ae.encode(images[i : i + batch_size].to(device))
            means.append(q.mean.float().cpu())
            stds.append(q.std.float().cpu())
        self.mean, self.std = torch.cat(means), torch.cat(stds)
        self.scaling_factor = float(ae.scaling_factor)
        self.shape = tuple(self.mean.shape[1:])

    def sample(self, idx: torch.Tensor, generator: torch.Generator, shard: Shard) -> torch.Tensor:
        """scaling_factor * (mean + std * eps) for the global batch ``idx``, eps drawn for the whole batch."""
        eps = torch.randn((len(idx), *self.shape), generator=generator)
        z = (self.mean[idx] + self.std[idx] * eps) * self.scaling_factor
        return shard.rows(z)


class EmbeddingData:
    """The unCLIP prior's training data (notebook 07): ``scale * clip.image_embedding(image)`` of every training
    image, computed once (the contrastive model is frozen). Same interface as ``LatentData``; no noise is drawn."""

    @torch.no_grad()
    def __init__(self, clip: torch.nn.Module, images: torch.Tensor, scale: float, batch_size: int = 1000):
        clip = clip.eval()
        device = next(clip.parameters()).device
        parts = [
            clip.image_embedding(images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
        self.embeddings = torch.cat(parts) * scale
        self.shape = tuple(self.embeddings.shape[1:])

    def sample(self, idx: torch.Tensor, generator: torch.Generator, shard: Shard) -> torch.Tensor:
        return shard.rows(self.embeddings[idx])
