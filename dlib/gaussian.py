"""Gaussian data, where diffusion is solvable in closed form: the reference samplers are tested against.

For x_0 ~ N(mu, var_data I) (var_data is the notation card's sigma_data^2), x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps is Gaussian too, so the
ideal network E[eps | x_t] and the probability-flow ODE's solution are exact formulas. A sampler
fed ``gaussian_eps_model`` must reproduce the data's moments (stochastic samplers) or land on
``gaussian_ode_endpoint`` as its steps shrink (ODE solvers), at the rate its order promises.
Derived in notebook 05.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlib.denoiser import OUTPUTS, PREDICTIONS, VP, Denoiser, Prediction, Process, edm_coefs
from dlib.schedules import Schedule, alpha_bar_of_t
from dlib.utils import append_dims


def gaussian_posterior(x: torch.Tensor, a, b, mu: float, var_data: float) -> Prediction:
    """E[x_0 | x] and E[eps | x] for x = a x_0 + b eps, x_0 ~ N(mu, var_data I), in float64, returned in x's dtype:

        E[x_0 | x] = mu + a var_data (x - a mu) / (a^2 var_data + b^2),     E[eps | x] = b (x - a mu) / (a^2 var_data + b^2).

    Finite at pure noise (a = 0: the data mean and x / b). ``a`` and ``b`` are floats or tensors
    broadcastable to x."""
    a, b = (torch.as_tensor(c, dtype=torch.float64, device=x.device) for c in (a, b))
    r = (x.double() - a * mu) / (a**2 * var_data + b**2)
    return Prediction((mu + a * var_data * r).to(x.dtype), (b * r).to(x.dtype))


def gaussian_eps(x_t: torch.Tensor, alpha_bar_t, mu: float, var_data: float) -> torch.Tensor:
    """E[eps | x_t] for x_0 ~ N(mu, var_data I) on a VP process: ``gaussian_posterior`` with a = sqrt(alpha_bar)."""
    ab = torch.as_tensor(alpha_bar_t, dtype=torch.float64, device=x_t.device)
    return gaussian_posterior(x_t, ab.sqrt(), (1 - ab).sqrt(), mu, var_data).eps


def gaussian_eps_model(sched: Schedule, mu: float, var_data: float) -> Callable:
    """The ideal eps-model ``eps_model(x_t, t)`` for N(mu, var_data I) data under ``sched``. t may be
    fractional (alpha_bar follows the schedule's log-sigma interpolation, as the ODE samplers assume)."""

    def eps_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return gaussian_eps(x_t, append_dims(alpha_bar_of_t(sched, t.double()), x_t.ndim), mu, var_data)

    return eps_model


def gaussian_denoiser(
    process: Process, prediction: str, mu: float, var_data: float, sigma_data: float = 0.5
) -> Denoiser:
    """The exact network for N(mu, var_data I) data in any parameterisation, wrapped as a Denoiser: its output is
    E[eps | x] (eps), E[x_0 | x] (x_0), a E[eps] - b E[x_0] (v), E[eps] - E[x_0] (flow), -E[eps] / b (score),
    or EDM's F = (E[x_0] - c_skip x_bar) / c_out (edm). Every sampler must reach the same ODE endpoint from each."""

    def net(x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        sigma = append_dims(process.sigma_of_time(time.double()), x.ndim).to(x.device)
        a, b = process.coefs(sigma)
        if prediction == "edm":
            c_skip, c_out, c_in = edm_coefs(sigma, sigma_data)
            x_bar = x / c_in
            return ((gaussian_posterior(a * x_bar, a, b, mu, var_data).x_0 - c_skip * x_bar) / c_out).to(x.dtype)
        post = gaussian_posterior(x, a, b, mu, var_data)
        return OUTPUTS[prediction](post.x_0, post.eps, a, b).to(x.dtype)

    if prediction not in (*PREDICTIONS, "edm"):
        raise ValueError(f"prediction must be one of {(*PREDICTIONS, 'edm')}, got {prediction!r}")
    return Denoiser(net, prediction, process, sigma_data)


def gaussian_ode_endpoint(process: Process | Schedule, x_T: torch.Tensor, mu: float, var_data: float) -> torch.Tensor:
    """Where every sampler's ODE lands, in closed form, for N(mu, var_data I) data and x_T at the process's
    largest sigma (pure noise included). float64.

    In sigma space the flow keeps z = (x_bar - mu) / sqrt(var_data + sigma^2) constant; from x_T,
    z = (x_T - a mu) / sqrt(a^2 var_data + b^2). Solve to the smallest sigma, then take the samplers' common
    last step to sigma = 0, x_0 = x_0_hat: mu + z var_data / sqrt(var_data + sigma_min^2) (exactly mu + z sqrt(var_data)
    for a flow, which ends at sigma = 0).
    """
    process = VP(process) if isinstance(process, Schedule) else process
    s_min, s_max = process.sigma_range
    a, b = (c.item() for c in process.coefs(s_max))
    z = (x_T.double() - a * mu) / (a**2 * var_data + b**2) ** 0.5
    return mu + z * var_data / (var_data + s_min**2) ** 0.5


class GaussianMixture:
    """Labelled data x_0 ~ N(mu_y, var_data I) with class y ~ weights: guidance in closed form (notebook 06).

    Each class is Gaussian, so ``eps(x_t, t, y)`` is ``gaussian_eps`` for that class; the unconditional
    E[eps | x_t] is their average under the posterior p(y | x_t) (the law of total expectation), and
    p(y | x_t) follows from Bayes' rule with x_t | y ~ N(sqrt(ab) mu_y, (ab var_data + 1 - ab) I). Label
    ``K = len(means)`` means "no label", as in a classifier-free-guidance model. t may be fractional.
    """

    def __init__(self, sched: Schedule, means, var_data: float, weights=None):
        self.sched, self.var_data = sched, var_data
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
        var = ab * self.var_data + 1 - ab  # (B, 1, ...)
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
        per_class = torch.stack([gaussian_eps(x_t.double(), ab, m.item(), self.var_data) for m in self.means], 1)
        post = self.log_posterior(x_t, t).exp()  # (B, K)
        uncond = (append_dims(post, per_class.ndim) * per_class).sum(1)
        if y is None:
            return uncond.to(x_t.dtype)
        cond = per_class[torch.arange(len(y)), y.clamp(max=self.null_label - 1)]
        return torch.where(append_dims(y == self.null_label, x_t.ndim), uncond, cond).to(x_t.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None, dim: int = 1):
        """n draws (x_0 (n, dim) float64, y (n,))."""
        y = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        x = self.means[y, None] + self.var_data**0.5 * torch.randn(n, dim, generator=generator, dtype=torch.float64)
        return x, y


class IsotropicMixture:
    """x_0 ~ sum_k w_k N(mu_k, var_data I) in D dimensions (``means`` (K, D)): the noised marginal, its score and
    the posterior mean in closed form at every noise level (notebook 11's ground truth on 2D toys).

    With x_bar = x_0 + sigma eps the blurred data is again a mixture, of N(mu_k, (var_data + sigma^2) I); with
    responsibilities r_k(x_bar) = p(k | x_bar):

        grad log p_sigma(x_bar) = sum_k r_k (mu_k - x_bar) / (var_data + sigma^2),
        E[x_0 | x_bar] = x_bar + sigma^2 grad log p_sigma(x_bar)                      (Tweedie's formula).
    """

    def __init__(self, means, var_data: float, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.ndim != 2 or not self.means.isfinite().all() or not 0 < var_data < float("inf"):
            raise ValueError(
                f"means must be finite (K, D) and var_data a positive finite number, got shape "
                f"{tuple(self.means.shape)}, var_data {var_data}"
            )
        K = len(self.means)
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
        if w.shape != (K,) or not ((w > 0) & w.isfinite()).all():
            raise ValueError(f"weights must be {K} positive finite numbers, got {weights!r}")
        self.var_data, self.log_weights = var_data, (w / w.sum()).log()

    def _parts(self, x_bar: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        var = append_dims(torch.as_tensor(sigma, dtype=torch.float64), 2).expand(len(x_bar), 1) ** 2 + self.var_data
        diff = self.means.unsqueeze(0) - x_bar.double().unsqueeze(1)  # (B, K, D): mu_k - x_bar
        log_r = torch.log_softmax(self.log_weights - 0.5 * diff.pow(2).sum(2) / var, dim=1)  # (B, K)
        return log_r, diff, var

    def log_prob(self, x_bar: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """log p_sigma(x_bar), (B,), float64."""
        _, diff, var = self._parts(x_bar, sigma)
        log_n = -0.5 * diff.pow(2).sum(2) / var - 0.5 * x_bar.shape[1] * torch.log(2 * torch.pi * var)
        return torch.logsumexp(self.log_weights + log_n, dim=1)

    def score(self, x_bar: torch.Tensor, sigma) -> torch.Tensor:
        """grad log p_sigma(x_bar), (B, D), float64; ``sigma`` a float or (B,) tensor."""
        log_r, diff, var = self._parts(x_bar, sigma)
        return (log_r.exp().unsqueeze(2) * diff).sum(1) / var

    def denoiser(self, process: Process) -> Denoiser:
        """The exact score network on ``process``, wrapped as a Denoiser (any sampler runs the true score)."""

        def net(x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            sigma = process.sigma_of_time(time.double()).to(x.device)
            a, b = (append_dims(c, x.ndim) for c in process.coefs(sigma))
            return (self.score(x.double() / a, sigma) / a).to(x.dtype)  # grad_x log p(x) of x = a x_bar

        return Denoiser(net, "score", process)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws (n, D), float64."""
        k = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return self.means[k] + self.var_data**0.5 * noise
