"""Notebook 10 (metrics): the hints and catalogued mistakes of its exercises.

    frechet            Exercise 1 (core): the Frechet distance between two Gaussians, the heart of FID
    mmd2               Exercise 2 (core): the unbiased squared MMD with the polynomial kernel, the heart of KID
    precision_recall   Exercise 3 (build): improved precision and recall from k-nearest-neighbour balls

Each is a dict for ``check_function(..., **nb10.name)`` (see the package docstring). Exercise 4 (why FID is
biased at small n) is a derivation, confirmed by a cell of the notebook, with no checker.
"""

from __future__ import annotations

import torch

from dlib.metrics import frechet_distance, knn_radii, mmd2_unbiased, polynomial_kernel
from dlib.metrics import precision_recall as _precision_recall
from dlib.metrics.frechet import _sqrt_psd

# --- Exercise 1: the Frechet distance ---


def _fd(mu_1, sigma_1, mu_2, sigma_2, cross=None, factor=2.0, mean_term="square"):
    """A wrong variant of the Frechet distance, built from dlib's right one (the formula stays in one place):
    its covariance part d_cov = Tr S1 + Tr S2 - 2 Tr((S1 S2)^{1/2}) gives the true cross term."""
    mu_1, mu_2, sigma_1, sigma_2 = (v.double() for v in (mu_1, mu_2, sigma_1, sigma_2))
    traces = float(torch.trace(sigma_1) + torch.trace(sigma_2))
    true_cross = (traces - frechet_distance(torch.zeros_like(mu_1), sigma_1, torch.zeros_like(mu_2), sigma_2)) / 2
    diff = float((mu_1 - mu_2).pow(2).sum())
    mean = {"square": diff, "norm": diff**0.5, "none": 0.0}[mean_term]
    return mean + traces - factor * (true_cross if cross is None else float(cross))


frechet = dict(
    reference=frechet_distance,
    hint=[
        "Two terms: how far apart the means are, and how different the covariances are. The second needs the "
        "square root of a matrix, not of its entries.",
        "d^2 = ||mu_1 - mu_2||^2 + Tr(S_1) + Tr(S_2) - 2 Tr((S_1 S_2)^{1/2}). S_1 S_2 is not symmetric, but "
        "Tr((S_1 S_2)^{1/2}) = Tr((R S_2 R)^{1/2}) with R = S_1^{1/2}, and R S_2 R is symmetric positive "
        "semi-definite: torch.linalg.eigh gives R, torch.linalg.eigvalsh its eigenvalues, whose square roots sum "
        "to the trace.",
        "vals, vecs = torch.linalg.eigh(sigma_1); R = (vecs * vals.clamp(min=0).sqrt()) @ vecs.T; "
        "cross = torch.linalg.eigvalsh(R @ sigma_2 @ R).clamp(min=0).sqrt().sum(); "
        "return float((mu_1 - mu_2).pow(2).sum() + sigma_1.trace() + sigma_2.trace() - 2 * cross)",
    ],
    mistakes={
        "the cross term without its factor 2": lambda mu_1, sigma_1, mu_2, sigma_2: _fd(
            mu_1, sigma_1, mu_2, sigma_2, factor=1.0
        ),
        "Tr(S_1^{1/2} S_2^{1/2}) in place of Tr((S_1 S_2)^{1/2}): the same only when the covariances commute": (
            lambda mu_1, sigma_1, mu_2, sigma_2: _fd(
                mu_1,
                sigma_1,
                mu_2,
                sigma_2,
                cross=torch.trace(_sqrt_psd(sigma_1.double()) @ _sqrt_psd(sigma_2.double())),
            )
        ),
        "the element-wise square root of S_1 S_2 (sqrt of each entry) in place of the matrix square root": (
            lambda mu_1, sigma_1, mu_2, sigma_2: _fd(
                mu_1, sigma_1, mu_2, sigma_2, cross=torch.trace((sigma_1.double() @ sigma_2.double()).sqrt())
            )
        ),
        "the distance between the means, not its square": lambda mu_1, sigma_1, mu_2, sigma_2: _fd(
            mu_1, sigma_1, mu_2, sigma_2, mean_term="norm"
        ),
        "the mean term left out: only the covariances compared": lambda mu_1, sigma_1, mu_2, sigma_2: _fd(
            mu_1, sigma_1, mu_2, sigma_2, mean_term="none"
        ),
    },
)


# --- Exercise 2: the unbiased MMD^2 ---


def _mmd2(x, y, keep_diagonal=False, divide_by_square=False, cross_factor=2.0):
    m, n = len(x), len(y)
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    if keep_diagonal:
        within_x, within_y = k_xx.mean(), k_yy.mean()
    else:
        off_x, off_y = k_xx.sum() - k_xx.diagonal().sum(), k_yy.sum() - k_yy.diagonal().sum()
        within_x = off_x / (m * m if divide_by_square else m * (m - 1))
        within_y = off_y / (n * n if divide_by_square else n * (n - 1))
    return float(within_x + within_y - cross_factor * polynomial_kernel(x, y).mean())


mmd2 = dict(
    reference=mmd2_unbiased,
    hint=[
        "Three averages of the kernel: within x, within y, and across. Unbiased means each average runs over "
        "pairs of *different* samples only, so a point is never compared with itself.",
        "MMD^2_u = sum_{i != j} k(x_i, x_j) / (m(m-1)) + sum_{i != j} k(y_i, y_j) / (n(n-1)) - 2 mean_{i,j} k(x_i, y_j). "
        "With K = polynomial_kernel(x, x), the sum over i != j is K.sum() - K.diagonal().sum().",
        "kxx, kyy = polynomial_kernel(x, x), polynomial_kernel(y, y); "
        "return float((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1)) "
        "- 2 * polynomial_kernel(x, y).mean())",
    ],
    mistakes={
        "the diagonal i = j kept (the biased V-statistic): each point compared with itself": lambda x, y: _mmd2(
            x, y, keep_diagonal=True
        ),
        "the diagonal removed but the sum divided by m^2 instead of m(m - 1)": lambda x, y: _mmd2(
            x, y, divide_by_square=True
        ),
        "the cross term without its factor 2": lambda x, y: _mmd2(x, y, cross_factor=1.0),
    },
)


# --- Exercise 3: precision and recall ---


def _inside_any(queries, centres, radii):
    return (torch.cdist(queries.double(), centres.double()) <= radii[None]).any(1).double().mean()


def _pr(real, gen, k, radius_k=None, swap=False, nearest_only=False):
    real, gen = real.double(), gen.double()
    kk = k if radius_k is None else radius_k
    r_real, r_gen = knn_radii(real, kk), knn_radii(gen, kk)
    if nearest_only:  # only the ball of the nearest point counts
        d_gr, d_rg = torch.cdist(gen, real), torch.cdist(real, gen)
        p = (d_gr.min(1).values <= r_real[d_gr.argmin(1)]).double().mean()
        r = (d_rg.min(1).values <= r_gen[d_rg.argmin(1)]).double().mean()
    else:
        p, r = _inside_any(gen, real, r_real), _inside_any(real, gen, r_gen)
    return (float(r), float(p)) if swap else (float(p), float(r))


def _radius_counts_itself(features_real, features_gen, k):
    """The k-th smallest distance counting the zero to the point itself: the (k-1)-th neighbour's."""
    return _pr(features_real, features_gen, k, radius_k=k - 1)


precision_recall = dict(
    reference=_precision_recall,
    hint=[
        "Each set gets a ball around every one of its points, reaching to that point's k-th nearest neighbour in the "
        "same set. Precision asks how many generated points land inside the real balls; recall asks the reverse.",
        "radius_i = the k-th smallest distance from point i to the *other* points of its set: in the sorted row of "
        "torch.cdist(points, points) the 0 to itself comes first, so take index k. A query is inside when its "
        "distance to *any* centre is <= that centre's radius, not only to its nearest centre.",
        "r_real = torch.cdist(real, real).sort(1).values[:, k]; r_gen = (same for gen); "
        "precision = (torch.cdist(gen, real) <= r_real).any(1).double().mean(); "
        "recall = (torch.cdist(real, gen) <= r_gen).any(1).double().mean(); return float(precision), float(recall)",
    ],
    mistakes={
        "the radius counts the point itself as a neighbour (the (k-1)-th other point, not the k-th)": (
            _radius_counts_itself
        ),
        "precision and recall swapped": lambda features_real, features_gen, k: _pr(
            features_real, features_gen, k, swap=True
        ),
        "only the nearest centre's ball tested: a point can miss its nearest ball yet lie in a larger one": (
            lambda features_real, features_gen, k: _pr(features_real, features_gen, k, nearest_only=True)
        ),
    },
)
