"""Feature extractors for the metrics: images -> one feature vector per image. Notebooks 04-05 and 10.

FID, KID, precision/recall and density/coverage compare *feature* distributions; the extractor
decides what "similar" means, so a number is comparable only with numbers from the same
extractor and preprocessing. Two kinds ship with the course:

- a classifier's penultimate layer (``classifier.features``), e.g. the shipped MNIST classifier:
  fast, and tuned to digits (the "FID with a domain classifier" of Goel et al. 2022's SC09 numbers);
- Inception-v3 pool features (``dlib.metrics.inception``), the standard of the FID literature.

A ``FeatureExtractor`` names its network, weights and preprocessing, so that cached features
(``dlib.metrics.cache``) are keyed by everything that changes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from dlib.metrics.checks import check_images
from dlib.metrics.frechet import fid_from_features


@dataclass(frozen=True)
class FeatureExtractor:
    """A named feature map: images (N, C, H, W) in [-1, 1] -> features (N, D) on the CPU."""

    name: str  # the network and its weights, e.g. "Classifier.features@<sha256 of the weights>"
    preprocessing: str  # what happens to the images before the network (resize, value mapping)
    fn: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.fn(images)


@torch.no_grad()
def extract_features(classifier: torch.nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``classifier.features`` over images (N, C, H, W) in [-1, 1], in batches -> (N, D) on the CPU."""
    check_images(images)
    classifier.eval()
    device = next(classifier.parameters()).device
    return torch.cat(
        [classifier.features(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    )


def classifier_fid(classifier: torch.nn.Module, images_1: torch.Tensor, images_2: torch.Tensor) -> float:
    """FID in the penultimate feature space of a classifier (``classifier.features``), e.g. the
    shipped MNIST classifier. Comparable only with FIDs measured in the same feature space."""
    return fid_from_features(extract_features(classifier, images_1), extract_features(classifier, images_2))


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes, bytes): changes whenever its weights do."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def classifier_extractor(
    classifier: torch.nn.Module, name: str | None = None, batch_size: int = 500
) -> FeatureExtractor:
    """``extract_features`` of this classifier as a ``FeatureExtractor``, named by its weights' fingerprint."""
    label = name or type(classifier).__name__
    return FeatureExtractor(
        name=f"{label}.features@{weights_fingerprint(classifier)[:16]}",
        preprocessing="none: images in [-1, 1] at their own size",
        fn=partial(extract_features, classifier, batch_size=batch_size),
    )
