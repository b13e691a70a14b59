"""Sample-quality metrics. Derived in notebooks 03-04 (first use) and 10 (in depth).

FID (Heusel et al. 2017) is the Frechet distance between two Gaussians fitted to features of
real and generated images:

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}).

The matrix square root: S_1 S_2 is not symmetric, and ``scipy.linalg.sqrtm`` of it can return
a complex matrix from round-off. Here we use the identity Tr((S_1 S_2)^{1/2}) =
Tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2}): the inner matrix is symmetric positive semi-definite, so
its square root comes from a symmetric eigendecomposition with real, non-negative eigenvalues.
"""

from __future__ import annotations

import torch


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got {tuple(features.shape)}")
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu_1: torch.Tensor, sigma_1: torch.Tensor, mu_2: torch.Tensor, sigma_2: torch.Tensor) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu_1, sigma_1) and N(mu_2, sigma_2)."""
    if mu_1.shape != mu_2.shape or sigma_1.shape != sigma_2.shape or sigma_1.shape != (mu_1.shape[0],) * 2:
        raise ValueError(
            f"mismatched statistics: mu {tuple(mu_1.shape)} vs {tuple(mu_2.shape)}, "
            f"sigma {tuple(sigma_1.shape)} vs {tuple(sigma_2.shape)}"
        )
    mu_1, mu_2, sigma_1, sigma_2 = (v.double() for v in (mu_1, mu_2, sigma_1, sigma_2))
    root_1 = _sqrt_psd(sigma_1)
    cross = torch.linalg.eigvalsh(root_1 @ sigma_2 @ root_1).clamp(min=0).sqrt().sum()  # Tr((S1 S2)^{1/2})
    return float((mu_1 - mu_2).pow(2).sum() + torch.trace(sigma_1) + torch.trace(sigma_2) - 2 * cross)


def fid_from_features(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    """FID between two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*feature_stats(features_1), *feature_stats(features_2))


@torch.no_grad()
def extract_features(classifier: torch.nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``classifier.features`` over images (N, C, H, W) in batches -> (N, D) on the CPU."""
    classifier.eval()
    device = next(classifier.parameters()).device
    return torch.cat(
        [classifier.features(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    )


def classifier_fid(classifier: torch.nn.Module, images_1: torch.Tensor, images_2: torch.Tensor) -> float:
    """FID in the penultimate feature space of a classifier (``classifier.features``), e.g. the
    shipped MNIST classifier. Comparable only with FIDs measured in the same feature space."""
    return fid_from_features(extract_features(classifier, images_1), extract_features(classifier, images_2))


def fid_with_spread(
    features_gen: torch.Tensor, features_ref: torch.Tensor, n_boot: int = 20, generator: torch.Generator | None = None
) -> tuple[float, float]:
    """(FID, its bootstrap standard deviation): the generated set resampled with replacement ``n_boot``
    times against fixed reference statistics. The spread says which FID differences the sample size
    can resolve; it does not include FID's upward bias at small n (notebook 10)."""
    ref = feature_stats(features_ref)
    fid = frechet_distance(*feature_stats(features_gen), *ref)
    n = len(features_gen)
    boots = [
        frechet_distance(*feature_stats(features_gen[torch.randint(n, (n,), generator=generator)]), *ref)
        for _ in range(n_boot)
    ]
    return fid, float(torch.tensor(boots).std())
