import numpy as np
import pytest
import torch

from dlib import metrics


def test_frechet_distance_matches_scipy_sqrtm(gen):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    a = torch.randn(500, 16, generator=gen)
    b = torch.randn(400, 16, generator=gen) @ torch.randn(16, 16, generator=gen) * 0.3 + 0.2
    m1, s1 = metrics.feature_stats(a)
    m2, s2 = metrics.feature_stats(b)
    covmean = scipy_linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    ref = float(((m1 - m2) ** 2).sum()) + np.trace(s1.numpy() + s2.numpy() - 2 * covmean)
    assert abs(metrics.frechet_distance(m1, s1, m2, s2) - ref) < 1e-8 * max(1, abs(ref))


def test_frechet_distance_closed_forms():
    eye = torch.eye(3, dtype=torch.float64)
    mu = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert abs(metrics.frechet_distance(mu, eye, mu, eye)) < 1e-12
    # shifted means only: ||mu_1 - mu_2||^2; scaled isotropic covariances: d (s1 - s2)^2
    assert abs(metrics.frechet_distance(mu, eye, mu + 1, eye) - 3.0) < 1e-12
    assert abs(metrics.frechet_distance(mu, 4 * eye, mu, 9 * eye) - 3 * (2 - 3) ** 2) < 1e-12


def test_fid_of_a_sample_with_itself_is_zero_and_grows_with_shift(gen):
    a = torch.randn(300, 8, generator=gen)
    assert abs(metrics.fid_from_features(a, a)) < 1e-8
    assert metrics.fid_from_features(a, a + 0.5) > metrics.fid_from_features(a, a + 0.1) > 0


def test_bad_input():
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.feature_stats(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="mismatched"):
        metrics.frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3))
