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

from dlib.schedules import Schedule, sigma_of_t, sigmas
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
        sigma = sigma_of_t(sched, t.double())
        return gaussian_eps(x_t, append_dims(1 / (1 + sigma**2), x_t.ndim), mu, s2)

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
