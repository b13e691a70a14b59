"""A contrastive text-image model in miniature: CLIP's image tower against a frozen text encoder (notebook 07).

The text side is the frozen sentence encoder of notebook 06 (``dlib.text.TextEncoder.sentences``:
one pooled 384-d vector per caption) followed by a learned linear projection; the image side is a
small CNN. Both land, L2-normalised, in one ``embed_dim``-dimensional space, and
``dlib.losses.ContrastiveLoss`` (InfoNCE, Radford et al. 2021) pulls each image towards its own
caption and away from the others in the batch. Locking one tower and training the other is Zhai et
al.'s LiT (2022), with the roles swapped: here the text tower is the pretrained one.

The trained model is the unCLIP pipeline's embedding space (notebook 07) and the CLIP score's
(notebook 10): ``100 * max(cos(image, text), 0)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ContrastiveModel(nn.Module):
    """``image_embedding(x) -> (B, embed_dim)`` and ``text_embedding(sentences) -> (B, embed_dim)``, both unit
    length; ``forward(x, sentences)`` gives the (B, B) logits ``logit_scale.exp() * cos`` between every pair.

    ``sentences`` are the frozen encoder's pooled vectors (B, text_dim), not strings, so the model
    itself holds no text encoder and trains and saves like any other network.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        text_dim: int = 384,
        embed_dim: int = 128,
        width: int = 32,
    ):
        super().__init__()
        if image_size % 4 or image_size < 8:
            raise ValueError(f"ContrastiveModel: image_size must be a multiple of 4 and >= 8, got {image_size}")
        self.in_channels, self.image_size, self.text_dim, self.embed_dim = in_channels, image_size, text_dim, embed_dim
        w = width
        self.image_tower = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GroupNorm(8, 2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.GroupNorm(8, 2 * w), nn.SiLU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(2 * w * (image_size // 4) ** 2, 4 * w), nn.SiLU(), nn.Linear(4 * w, embed_dim),
        )  # fmt: skip
        self.text_projection = nn.Linear(text_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature 0.07

    def image_embedding(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"ContrastiveModel expects images (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        return F.normalize(self.image_tower(x), dim=-1)

    def text_embedding(self, sentences: torch.Tensor) -> torch.Tensor:
        if sentences.ndim != 2 or sentences.shape[1] != self.text_dim:
            raise ValueError(
                f"ContrastiveModel expects pooled sentence vectors (B, {self.text_dim}), got {tuple(sentences.shape)}"
            )
        return F.normalize(self.text_projection(sentences), dim=-1)

    def forward(self, x: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
        """(B_images, B_texts) logits: the temperature-scaled cosine similarity of every image-caption pair."""
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()  # CLIP clips the scale at 100
        return scale * self.image_embedding(x) @ self.text_embedding(sentences).T
