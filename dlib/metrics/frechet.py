"""FID: the Frechet distance between Gaussians fitted to features (Heusel et al. 2017). Notebook 10.

Fit N(mu_1, S_1) and N(mu_2, S_2) to two feature sets; the squared Frechet (2-Wasserstein)
distance between the Gaussians (Dowson & Landau 1982) is

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}).

The matrix square root: S_1 S_2 is not symmetric, and ``scipy.linalg.sqrtm`` of it can return a
complex matrix from round-off (pytorch-fid then drops the imaginary part, torchmetrics takes the
eigenvalues of S_1 S_2). Here we use Tr((S_1 S_2)^{1/2}) = Tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2}): the
inner matrix is symmetric positive semi-definite, so its square root comes from a symmetric
eigendecomposition with real, non-negative eigenvalues. The three agree to float tolerance
(tests/test_metrics.py). FID is biased upward at small N (notebook 10): compare FIDs at equal N.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlib.metrics.checks import check_features, check_same_width, warn_if_singular


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64. Warns when N <= D."""
    check_features(features, min_n=2)
    warn_if_singular(*features.shape)
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu_1: torch.Tensor, sigma_1: torch.Tensor, mu_2: torch.Tensor, sigma_2: torch.Tensor) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu_1, sigma_1) and N(mu_2, sigma_2).

    mu (D,), sigma (D, D) symmetric positive semi-definite, as from ``feature_stats``."""
    if mu_1.shape != mu_2.shape or sigma_1.shape != sigma_2.shape or sigma_1.shape != (mu_1.shape[0],) * 2:
        raise ValueError(
            f"mismatched statistics: mu {tuple(mu_1.shape)} vs {tuple(mu_2.shape)}, "
            f"sigma {tuple(sigma_1.shape)} vs {tuple(sigma_2.shape)}"
        )
    mu_1, mu_2, sigma_1, sigma_2 = (v.double() for v in (mu_1, mu_2, sigma_1, sigma_2))
    if not all(bool(torch.isfinite(v).all()) for v in (mu_1, mu_2, sigma_1, sigma_2)):
        raise ValueError("the statistics hold NaN or inf values: check the features they came from")
    root_1 = _sqrt_psd(sigma_1)
    cross = torch.linalg.eigvalsh(root_1 @ sigma_2 @ root_1).clamp(min=0).sqrt().sum()  # Tr((S1 S2)^{1/2})
    return float((mu_1 - mu_2).pow(2).sum() + torch.trace(sigma_1) + torch.trace(sigma_2) - 2 * cross)


def fid_from_features(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    """FID between two feature sets (N1, D) and (N2, D) of the same extractor."""
    check_features(features_1, "features_1", min_n=2)
    check_features(features_2, "features_2", min_n=2)
    check_same_width(features_1, features_2)
    return frechet_distance(*feature_stats(features_1), *feature_stats(features_2))


def fid_with_spread(
    features_gen: torch.Tensor, features_ref: torch.Tensor, n_boot: int = 20, generator: torch.Generator | None = None
) -> tuple[float, float]:
    """(FID, its bootstrap standard deviation): the generated set resampled with replacement ``n_boot``
    times against fixed reference statistics. The spread says which FID differences the sample size
    can resolve; it does not include FID's upward bias at small n (notebook 10)."""
    check_features(features_gen, "features_gen", min_n=2)
    check_features(features_ref, "features_ref", min_n=2)
    check_same_width(features_gen, features_ref)
    ref = feature_stats(features_ref)
    return _with_bootstrap_sd(
        lambda idx: frechet_distance(*feature_stats(features_gen[idx]), *ref), len(features_gen), n_boot, generator
    )


def fid_floor(
    features_real: torch.Tensor,
    features_ref: torch.Tensor,
    n: int,
    draws: int = 10,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """The real-vs-real floor at sample size ``n``: the FID of ``n`` real features drawn without replacement (e.g. of
    training images) against the reference features (e.g. of the test set), as (mean, standard deviation) over
    ``draws`` independent draws. It is what a perfect model scores at that n; one draw alone is a noisy yardstick."""
    check_features(features_real, "features_real", min_n=n)
    if draws < 2:
        raise ValueError(f"draws must be at least 2 for a spread, got {draws}")
    ref = feature_stats(features_ref)
    fids = [
        frechet_distance(
            *feature_stats(features_real[torch.randperm(len(features_real), generator=generator)[:n]]), *ref
        )
        for _ in range(draws)
    ]
    return float(torch.tensor(fids).mean()), float(torch.tensor(fids).std())


def fid_difference_with_spread(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    features_ref: torch.Tensor,
    n_boot: int = 20,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """(FID(a) - FID(b), the paired bootstrap standard deviation of that difference) for two generated sets whose
    i-th samples are paired (e.g. two samplers started from the same noise x_T^i): both sets are resampled with the
    same indices. Where the paired samples are alike (two deterministic samplers map the same noise to nearly the same
    image) pairing cancels the part of each FID's spread that comes from which noises were drawn, and the difference is
    resolved far more finely than the two separate spreads of ``fid_with_spread`` suggest; where they are unrelated
    (a stochastic sampler draws fresh noise along its path) it is about those two spreads combined."""
    check_features(features_a, "features_a", min_n=2)
    check_features(features_ref, "features_ref", min_n=2)
    if features_b.shape != features_a.shape:
        raise ValueError(
            f"features_a and features_b must be paired sets of the same shape, got {tuple(features_a.shape)} "
            f"and {tuple(features_b.shape)}"
        )
    check_same_width(features_a, features_ref)
    ref = feature_stats(features_ref)

    def difference(idx: torch.Tensor) -> float:
        return frechet_distance(*feature_stats(features_a[idx]), *ref) - frechet_distance(
            *feature_stats(features_b[idx]), *ref
        )

    return _with_bootstrap_sd(difference, len(features_a), n_boot, generator)


def _with_bootstrap_sd(
    statistic: Callable[[torch.Tensor], float], n: int, n_boot: int, generator: torch.Generator | None
) -> tuple[float, float]:
    """(statistic of all n samples, its standard deviation over ``n_boot`` resamples of the n indices with replacement):
    ``statistic`` maps a tensor of sample indices to a number."""
    boots = [statistic(torch.randint(n, (n,), generator=generator)) for _ in range(n_boot)]
    return statistic(torch.arange(n)), float(torch.tensor(boots).std())
