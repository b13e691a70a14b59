"""Image classifiers: p(y | x) on clean images and p(y | x_t, t) on noisy ones.

``Classifier`` scores samples and gives the feature space of the course's classifier FID
(notebooks 04 and 05); ``NoisyClassifier`` supplies the gradient of log p(y | x_t, t) for
classifier guidance (notebook 06, Dhariwal & Nichol 2021). Both take the image's channels and
size as constructor arguments; the defaults are the shipped MNIST / Fashion-MNIST models
(1 x 28 x 28), whose checkpoints load with ``strict=True``. Inputs in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlib.nets.blocks import ResBlock, group_norm, timestep_embedding


def _check_config(name: str, in_channels: int, image_size: int, num_classes: int, downsamplings: int) -> None:
    factor = 2**downsamplings
    if in_channels < 1 or num_classes < 2:
        raise ValueError(f"{name} needs in_channels >= 1 and num_classes >= 2, got {in_channels} and {num_classes}")
    if image_size < 4 * factor or image_size % factor:
        raise ValueError(f"{name}: image_size must be a multiple of {factor} and >= {4 * factor}, got {image_size}")


def _check_images(name: str, x: torch.Tensor, in_channels: int, image_size: int) -> None:
    """A classifier built for one image size is not silently applied to another (e.g. 28-pixel
    MNIST padded to 32 would shift every feature the FID compares)."""
    expected = (in_channels, image_size, image_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"{name} expects images of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")


class Classifier(nn.Module):
    """A small CNN classifier of clean images (B, in_channels, image_size, image_size).

    Two stages of two conv-BatchNorm-ReLU layers (``width`` then ``2 * width`` channels), each
    followed by 2x max pooling, then average pooling to a 4x4 grid, a linear layer to
    ``feature_dim`` features and a linear head. ``features(x)`` returns those (B, feature_dim)
    penultimate activations, used as an FID feature space; ``forward`` returns (B, num_classes) logits.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        width: int = 32,
        feature_dim: int = 128,
    ):
        super().__init__()
        _check_config("Classifier", in_channels, image_size, num_classes, downsamplings=2)
        self.in_channels, self.image_size = in_channels, image_size
        self.num_classes, self.feature_dim = num_classes, feature_dim
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, S/2, S/2)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, S/4, S/4)
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),  # (B, 2w * 16): a 4x4 layout, where a stroke is matters for digits
            nn.Linear(2 * w * 16, feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("Classifier", x, self.in_channels, self.image_size)
        return self.body(x)  # (B, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes)


class NoisyClassifier(nn.Module):
    """p(y | x_t, t): a classifier of *noisy* images, for classifier guidance (Dhariwal & Nichol 2021).

    Three residual blocks with the U-Net's time injection (``width``, ``2 * width``, ``2 * width``
    channels; 2x average pooling between them, so 28 -> 14 -> 7 pixels), global average pooling,
    a linear head. forward(x_t (B, in_channels, image_size, image_size), t (B,)) -> logits
    (B, num_classes); ``features(x_t, t)`` -> the pooled (B, feature_dim = 2 * width) activations
    before the head.
    """

    def __init__(self, *, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, width: int = 32):
        super().__init__()
        _check_config("NoisyClassifier", in_channels, image_size, num_classes, downsamplings=2)
        self.in_channels, self.image_size, self.num_classes = in_channels, image_size, num_classes
        self.width, self.feature_dim = width, 2 * width
        self.time_embed = nn.Sequential(nn.Linear(width, 4 * width), nn.SiLU(), nn.Linear(4 * width, 4 * width))
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        widths = [(width, width), (width, 2 * width), (2 * width, 2 * width)]
        self.blocks = nn.ModuleList(ResBlock(a, b, 4 * width) for a, b in widths)
        # one Sequential (its parameter names are those of the shipped checkpoint); the last layer is the head
        self.head = nn.Sequential(
            group_norm(2 * width), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes)
        )

    def features(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _check_images("NoisyClassifier", x_t, self.in_channels, self.image_size)
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"t must have shape (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
        emb = self.time_embed(timestep_embedding(t, self.width))  # (B, 4 * width)
        h = self.conv_in(x_t)  # (B, width, S, S)
        for i, block in enumerate(self.blocks):
            h = block(h, emb)
            if i < len(self.blocks) - 1:
                h = F.avg_pool2d(h, 2)  # (B, C, H/2, W/2)
        return self.head[:-1](h)  # (B, 2 * width)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.head[-1](self.features(x_t, t))  # (B, num_classes)
