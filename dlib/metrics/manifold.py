"""Fidelity and diversity apart: precision/recall and density/coverage on k-NN balls. Notebook 10.

FID mixes two failures into one number: samples that look unlike the data (fidelity) and data
the samples never reach (diversity, e.g. dropped modes). Both pairs below approximate each set's
manifold in feature space by balls: around every point, a ball reaching its k-th nearest
neighbour within the same set (the point itself not counted).

- Precision and recall (Kynkaanniemi et al. 2019; k = 3): precision is the share of
  generated points inside some real ball, recall the share of real points inside some generated ball.
- Density and coverage (Naeem et al. 2020; k = 5): density counts how many real balls contain
  each generated point, (1 / kM) sum_j sum_i 1[Y_j in B(X_i)], which is robust to real outliers
  (about 1 when the two distributions match, above 1 when samples crowd the dense regions); coverage is
  the share of real balls that contain at least one generated point, robust to generated outliers.

Distances are Euclidean, in float64, computed in row chunks so that 10,000 x 10,000 pairs fit in memory.
"""

from __future__ import annotations

import torch

from dlib.metrics.checks import check_features, check_same_width

CHUNK = 1024  # query rows per distance block: CHUNK x N float64 distances at a time


def _chunks(queries: torch.Tensor, points: torch.Tensor):
    """(start, distances (chunk, N)) between blocks of query rows and all points."""
    for i in range(0, len(queries), CHUNK):
        yield i, torch.cdist(queries[i : i + CHUNK], points)


def knn_radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point (N, D) to its k-th nearest other point in the same set -> (N,)."""
    if not 1 <= k < len(points):
        raise ValueError(
            f"k must lie in [1, N - 1] = [1, {len(points) - 1}] for a set of {len(points)} points, got {k}"
        )
    # the k + 1 smallest include the point itself at distance 0
    return torch.cat([d.topk(k + 1, largest=False).values[:, k] for _, d in _chunks(points, points)])


def _inside_counts(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each query (Q, D): how many balls B(centres_i, radii_i) contain it -> (Q,)."""
    return torch.cat([(d <= radii).sum(1) for _, d in _chunks(queries, centres)])


def _checked(features_real: torch.Tensor, features_gen: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    check_features(features_real, "features_real", min_n=k + 1)
    check_features(features_gen, "features_gen", min_n=1)
    check_same_width(features_real, features_gen)
    return features_real.double(), features_gen.double()


def precision_recall(features_real: torch.Tensor, features_gen: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of generated features against real ones (N, D)."""
    real, gen = _checked(features_real, features_gen, k)
    check_features(features_gen, "features_gen", min_n=k + 1)  # recall needs balls around generated points
    precision = (_inside_counts(gen, real, knn_radii(real, k)) > 0).double().mean()
    recall = (_inside_counts(real, gen, knn_radii(gen, k)) > 0).double().mean()
    return float(precision), float(recall)


def density_coverage(features_real: torch.Tensor, features_gen: torch.Tensor, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of generated features against real ones (N, D)."""
    real, gen = _checked(features_real, features_gen, k)
    radii = knn_radii(real, k)  # (N,)
    density = _inside_counts(gen, real, radii).double().sum() / (k * len(gen))
    nearest_gen = torch.cat([d.min(1).values for _, d in _chunks(real, gen)])  # (N,) from each real point
    coverage = (nearest_gen <= radii).double().mean()
    return float(density), float(coverage)
