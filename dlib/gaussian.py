"""Gaussian data, where diffusion is solvable in closed form: the reference samplers are tested against.

For x_0 ~ N(mu, s2 I), x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps is Gaussian too, so the
ideal network E[eps | x_t] and the probability-flow ODE's solution are exact formulas. A sampler
fed ``gaussian_eps_model`` must reproduce the data's moments (stochastic samplers) or land on
``gaussian_ode_endpoint`` as its steps shrink (ODE solvers), at the rate its order promises.
Derived in notebook 05.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlib.schedules import Schedule, alpha_bar_of_t, sigmas
from dlib.utils import append_dims


def gaussian_eps(x_t: torch.Tensor, alpha_bar_t, mu: float, s2: float) -> torch.Tensor:
    """E[eps | x_t] for x_0 ~ N(mu, s2 I): sqrt(1 - alpha_bar) (x_t - sqrt(alpha_bar) mu) / (alpha_bar s2 + 1 - alpha_bar).

    Computed in float64, returned in x_t's dtype. ``alpha_bar_t`` is a float or broadcastable tensor.
    """
    a = torch.as_tensor(alpha_bar_t, dtype=torch.float64, device=x_t.device)
    eps = (1 - a).sqrt() * (x_t.double() - a.sqrt() * mu) / (a * s2 + 1 - a)
    return eps.to(x_t.dtype)


def gaussian_eps_model(sched: Schedule, mu: float, s2: float) -> Callable:
    """The ideal eps-model ``eps_model(x_t, t)`` for N(mu, s2 I) data under ``sched``. t may be
    fractional (alpha_bar follows the schedule's log-sigma interpolation, as the ODE samplers assume)."""

    def eps_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return gaussian_eps(x_t, append_dims(alpha_bar_of_t(sched, t.double()), x_t.ndim), mu, s2)

    return eps_model


def gaussian_ode_endpoint(sched: Schedule, x_T: torch.Tensor, mu: float, s2: float) -> torch.Tensor:
    """Where every sampler's ODE lands, in closed form, for N(mu, s2 I) data and x_T at t = T-1.

    In sigma space the flow is x_bar(sigma) - mu = (x_bar(sigma_max) - mu) sqrt((s2 + sigma^2) / (s2 + sigma_max^2)).
    Solve it from sigma(T-1) to sigma(0), then take the samplers' common last step to sigma = 0,
    x_0 = x_bar - sigma(0) eps_hat = mu + (x_bar - mu) s2 / (s2 + sigma(0)^2). float64.
    """
    table = sigmas(sched)
    s_min, s_max = table[0].item(), table[-1].item()
    x_bar_T = x_T.double() * (1 + s_max**2) ** 0.5
    x_bar = mu + (x_bar_T - mu) * ((s2 + s_min**2) / (s2 + s_max**2)) ** 0.5
    return mu + (x_bar - mu) * s2 / (s2 + s_min**2)


class GaussianMixture:
    """Labelled data x_0 ~ N(mu_y, s2 I) with class y ~ weights: guidance in closed form (notebook 06).

    Each class is Gaussian, so ``eps(x_t, t, y)`` is ``gaussian_eps`` for that class; the unconditional
    E[eps | x_t] is their average under the posterior p(y | x_t) (the law of total expectation), and
    p(y | x_t) follows from Bayes' rule with x_t | y ~ N(sqrt(ab) mu_y, (ab s2 + 1 - ab) I). Label
    ``K = len(means)`` means "no label", as in a classifier-free-guidance model. t may be fractional.
    """

    def __init__(self, sched: Schedule, means, s2: float, weights=None):
        self.sched, self.s2 = sched, s2
        self.means = torch.as_tensor(means, dtype=torch.float64)
        K = len(self.means)
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
        if w.shape != (K,) or (w <= 0).any():
            raise ValueError(f"weights must be {K} positive numbers, got {weights!r}")
        self.log_weights, self.null_label = (w / w.sum()).log(), K

    def _alpha_bar(self, t: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        return append_dims(alpha_bar_of_t(self.sched, t.double()), x_t.ndim).to(x_t.device)

    def log_posterior(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p(y = k | x_t) for every class k: (B, K), float64, differentiable in x_t."""
        ab = self._alpha_bar(t, x_t)
        var = ab * self.s2 + 1 - ab  # (B, 1, ...)
        x = x_t.double().unsqueeze(1)  # (B, 1, ...)
        mu = append_dims(self.means.to(x.device), x.ndim - 1).unsqueeze(0) * ab.sqrt().unsqueeze(1)  # (B, K, ...)
        log_lik = (-0.5 * (x - mu) ** 2 / var.unsqueeze(1)).flatten(2).sum(2)  # the shared normaliser cancels
        return torch.log_softmax(log_lik + self.log_weights.to(x.device), dim=1)

    def log_prob(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(y | x_t) per example, (B,): the exact noisy classifier for ``guidance.classifier_guidance``."""
        return self.log_posterior(x_t, t)[torch.arange(len(y)), y]

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[eps | x_t, y], or E[eps | x_t] where y is None or the null label K."""
        ab = self._alpha_bar(t, x_t)
        per_class = torch.stack([gaussian_eps(x_t.double(), ab, m.item(), self.s2) for m in self.means], 1)
        post = self.log_posterior(x_t, t).exp()  # (B, K)
        uncond = (append_dims(post, per_class.ndim) * per_class).sum(1)
        if y is None:
            return uncond.to(x_t.dtype)
        cond = per_class[torch.arange(len(y)), y.clamp(max=self.null_label - 1)]
        return torch.where(append_dims(y == self.null_label, x_t.ndim), uncond, cond).to(x_t.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None, dim: int = 1):
        """n draws (x_0 (n, dim) float64, y (n,))."""
        y = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        x = self.means[y, None] + self.s2**0.5 * torch.randn(n, dim, generator=generator, dtype=torch.float64)
        return x, y
