"""Input checks shared by every metric: a bad input raises a clear error instead of a wrong number.

Images follow dlib's convention (``dlib.data``): float tensors (N, C, H, W) in [-1, 1], an 8-bit
pixel p mapped to p / 127.5 - 1 (0 -> -1, 255 -> 1). Features are float tensors (N, D), one row per
image. Notebook 10 says why each check exists (the classic silent failures of FID pipelines).
"""

from __future__ import annotations

import warnings

import torch

# A little slack above the range: samples that were clamped and then moved through float32 arithmetic.
RANGE_TOLERANCE = 1e-3


def check_features(features: torch.Tensor, name: str = "features", min_n: int = 1) -> torch.Tensor:
    """``features`` if it is a finite float (N, D) tensor with N >= ``min_n``, else a clear error."""
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(features).__name__}")
    if features.ndim != 2:
        raise ValueError(f"{name} must be (N, D), one row per image, got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got {features.dtype}")
    if features.shape[0] < min_n:
        raise ValueError(
            f"{name} needs N >= {min_n} rows here, got {features.shape[0]} (shape {tuple(features.shape)})"
        )
    bad = ~torch.isfinite(features)
    if bool(bad.any()):
        rows = bad.any(1).nonzero().flatten()[:5].tolist()
        raise ValueError(
            f"{name} holds {int(bad.sum())} NaN or inf values (first rows: {rows}): the feature network or the "
            "images fed to it are broken (a diverged sampler, or images outside the expected range)"
        )
    return features


def check_same_width(features_1: torch.Tensor, features_2: torch.Tensor) -> None:
    """Both feature sets must come from the same feature space: equal width D."""
    if features_1.shape[1] != features_2.shape[1]:
        raise ValueError(
            f"mismatched feature widths: {features_1.shape[1]} vs {features_2.shape[1]} "
            f"(shapes {tuple(features_1.shape)} and {tuple(features_2.shape)}); compare features of one extractor only"
        )


def warn_if_singular(n: int, d: int) -> None:
    """A covariance from N <= D samples has rank at most N - 1 < D: singular (FID is biased upward)."""
    if n <= d:
        warnings.warn(
            f"{n} samples of {d}-dimensional features: the covariance estimate has rank at most {n - 1} < {d} and "
            f"is singular, so the Frechet distance is computable but strongly biased upward; use N > D samples "
            f"(Inception's 2048-d features: usually 10,000-50,000) or compare only FIDs measured with the same N",
            stacklevel=3,
        )


def check_images(
    images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), channels: tuple[int, ...] | None = None
) -> torch.Tensor:
    """``images`` if it is a finite float (N, C, H, W) batch with values in ``value_range``, else a clear error.

    ``channels`` optionally lists the accepted C. Values up to ``RANGE_TOLERANCE`` outside the range pass.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a batch (N, C, H, W), got {shape}; add a batch axis with x[None]")
    if channels is not None and images.shape[1] not in channels:
        raise ValueError(f"images must have C in {channels} channels, got shape {tuple(images.shape)} (N, C, H, W)")
    if len(images) == 0:
        raise ValueError("images is an empty batch")
    if not images.is_floating_point():
        raise TypeError(f"images must be float in {list(value_range)}, got {images.dtype}")
    lo, hi = value_range
    x_min, x_max = (v.item() for v in torch.aminmax(images.detach()))
    if x_min != x_min or x_max != x_max or abs(x_min) == float("inf") or abs(x_max) == float("inf"):
        raise ValueError("images hold NaN or inf values: check the sampler's output")
    if x_min < lo - RANGE_TOLERANCE or x_max > hi + RANGE_TOLERANCE:
        hint = (
            "these look like 8-bit pixels in [0, 255]: convert them with x / 127.5 - 1"
            if x_min >= 0 and x_max > 2
            else "clamp generated samples with x.clamp(-1, 1) first"
        )
        raise ValueError(
            f"images must lie in [{lo:g}, {hi:g}] (dlib's convention: pixel p -> p / 127.5 - 1), "
            f"got values in [{x_min:.4g}, {x_max:.4g}]; {hint}"
        )
    if (lo, hi) == (-1.0, 1.0) and x_min >= 0 and x_max > 0.5:
        warnings.warn(
            f"every value of these {len(images)} images lies in [0, {x_max:.3g}]: images in [0, 1] pass the range check "
            "but score as washed-out grey ones. dlib images lie in [-1, 1] (a black background is -1): convert [0, 1] "
            "images with 2 * x - 1",
            stacklevel=3,
        )
    return images
