"""KID: the kernel (Inception) distance, an unbiased squared MMD (Binkowski et al. 2018). Notebook 10.

With the cubic polynomial kernel of Binkowski et al. (2018), for features of width d,

    k(x, y) = (x . y / d + 1)^3,

the unbiased estimator of the squared maximum mean discrepancy (Gretton et al. 2012, Lemma 6)
between samples x_1..x_m and y_1..y_n is

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(mn) sum_{i, j} k(x_i, y_j).

Unlike FID it has no bias: for two samples of one distribution its expectation is exactly 0, so a
single estimate can be negative, and numbers measured at different N are comparable. KID is the
mean of MMD^2_u over ``subsets`` random subsets of ``subset_size`` rows from each set; the standard
deviation over those subsets (Binkowski et al.'s code, torch-fidelity and torchmetrics report it,
with ddof = 0) is the standard error of one ``subset_size``-sample estimate. Same kernel, subset
draws and estimator as torchmetrics' ``KernelInceptionDistance`` (tests/test_metrics.py).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dlib.metrics.checks import check_features, check_same_width

KID_SUBSET_SIZE = 1000  # Binkowski et al.'s default


class KID(NamedTuple):
    mean: float  # mean of MMD^2_u over the subsets
    std: float  # standard deviation over the subsets: the standard error of one subset_size-sample estimate


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x . y / d + 1)^3 for every pair of rows: x (M, d), y (N, d) -> (M, N)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """The unbiased MMD^2_u between samples x (M, d) and y (N, d), M, N >= 2, with ``polynomial_kernel``."""
    m, n = len(x), len(y)
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))  # the i = j terms left out
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * polynomial_kernel(x, y).mean())


def kid(
    features_1: torch.Tensor,
    features_2: torch.Tensor,
    subsets: int = 100,
    subset_size: int | None = None,
    generator: torch.Generator | None = None,
) -> KID:
    """KID between features (N1, D) and (N2, D): (mean, std) of MMD^2_u over random subsets.

    ``subset_size`` defaults to min(1000, N1, N2); each subset draws a random permutation of
    features_1, then of features_2 (torchmetrics' order, so a seeded generator reproduces its draws).
    In the literature KID is often printed x 10^3."""
    check_features(features_1, "features_1", min_n=2)
    check_features(features_2, "features_2", min_n=2)
    check_same_width(features_1, features_2)
    n_1, n_2 = len(features_1), len(features_2)
    size = min(KID_SUBSET_SIZE, n_1, n_2) if subset_size is None else subset_size
    if not 2 <= size <= min(n_1, n_2):
        raise ValueError(f"subset_size must lie in [2, min(N1, N2)] = [2, {min(n_1, n_2)}], got {size}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    f_1, f_2 = features_1.double(), features_2.double()
    values = []
    for _ in range(subsets):
        x = f_1[torch.randperm(n_1, generator=generator)[:size].to(f_1.device)]
        y = f_2[torch.randperm(n_2, generator=generator)[:size].to(f_2.device)]
        values.append(mmd2_unbiased(x, y))
    v = torch.tensor(values, dtype=torch.float64)
    return KID(float(v.mean()), float(v.std(correction=0)))
