"""Exact log-likelihoods from the probability-flow ODE (Song et al. 2021, section 4.3; notebook 05).

An ODE dy/dtheta = f(y, theta) moves densities by the instantaneous change of variables,
d log p_theta(y(theta)) / d theta = -div_y f (the continuous normalising flow of Chen et al. 2018). Integrate the
probability-flow ODE from a data point to the noise end together with the divergence and

    log p_data(x_0) = log p_prior(y(theta_max)) + integral from theta_min to theta_max of div_y f(y(theta), theta) d theta.

The ODE is the one ``sample_pf_ode`` solves, in the angle theta = arctan(sigma) and the state
y = x_bar cos(theta) = x / sqrt(a^2 + b^2): dy/dtheta = cos(theta) eps_hat - sin(theta) x_0_hat. The prior is
y ~ N(0, I) at the largest sigma (the VP and flow samplers' x_T ~ N(0, I)). The divergence is exact (one
backward pass per dimension: small D) or Hutchinson's unbiased estimate E_v[v^T (df/dy) v] with one
fixed probe v per example (one backward pass per call: FFJORD, Grathwohl et al. 2019).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dlib.denoiser import as_denoiser

DIVERGENCES = ("exact", "hutchinson")


def _divergence(f: torch.Tensor, y: torch.Tensor, probe: torch.Tensor | None) -> torch.Tensor:
    """div_y f per example, (B,): exact (probe None) or Hutchinson's v^T (df/dy) v."""
    if probe is not None:
        (g,) = torch.autograd.grad((f * probe).sum(), y)
        return (g * probe).flatten(1).sum(1)
    f_flat, div = f.flatten(1), torch.zeros(len(y), dtype=torch.float64, device=y.device)
    for i in range(f_flat.shape[1]):  # examples are independent: one backward pass gives d f_i / d y_i for all
        (g,) = torch.autograd.grad(f_flat[:, i].sum(), y, retain_graph=i + 1 < f_flat.shape[1])
        div = div + g.flatten(1)[:, i].double()
    return div


def ode_log_likelihood(
    model: Callable,
    x_0: torch.Tensor,
    sched=None,
    *,
    divergence: str = "exact",
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    generator: torch.Generator | None = None,
    **cond,
) -> torch.Tensor:
    """log p(x_0) per example, (B,), float64, in nats, under the model's probability-flow ODE.

    ``model`` and ``sched`` as for every sampler (an eps-model with its schedule, or a Denoiser). The data
    point is taken as the scaled state x_bar at the smallest noise level sigma_min (sigma_0 of a VP schedule),
    so the density is that of x_0 + sigma_min eps: for x_0 ~ N(mu, var_data I) it is N(mu, (var_data + sigma_min^2) I).
    ``divergence``: "exact" (D backward passes per network call) or "hutchinson" (one, with a Rademacher
    probe per example drawn from ``generator``; unbiased, so average over repeats). Solved by scipy's
    RK45 to ``rtol``/``atol``; the model must be differentiable in its input. ``log_prior(x_T)``, (B,), is the
    density at the largest sigma on the process's own scale, x_T = sqrt(a^2 + b^2) y; default N(0, (a^2 + b^2) I),
    the samplers' N(0, I) on VP and the flow. Its mismatch with the true noisy marginal (notebook 01's prior
    term L_T) is part of the model's log-likelihood.
    """
    from scipy.integrate import solve_ivp

    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    den = as_denoiser(model, sched)
    s_min, s_max = den.process.sigma_range
    s_min = s_min or 1e-4  # a flow reaches sigma = 0; stop where eps_hat is still defined, as sample_pf_ode does
    theta_min, theta_max = math.atan(s_min), math.atan(s_max)
    shape, n = x_0.shape, x_0.shape[0]
    probe = None
    if divergence == "hutchinson":
        probe = (torch.randint(0, 2, shape, generator=generator, dtype=torch.float64) * 2 - 1).to(x_0)

    def rhs(theta: float, state):
        sigma = math.inf if theta >= math.pi / 2 else math.tan(theta)
        a, b = (c.item() for c in den.process.coefs(sigma))
        with torch.enable_grad():
            y = torch.from_numpy(state[:-n]).reshape(shape).to(x_0).requires_grad_(True)
            pred = den(y * math.hypot(a, b), sigma, **cond)
            f = math.cos(theta) * pred.eps - math.sin(theta) * pred.x_0
            div = _divergence(f, y, probe)
        return torch.cat([f.detach().double().flatten().cpu(), div.detach().cpu()]).numpy()

    y_min = x_0.double() * math.cos(theta_min)  # y = x_bar cos(theta), x_bar = x_0 at sigma_min
    state0 = torch.cat([y_min.flatten().cpu(), torch.zeros(n, dtype=torch.float64)]).numpy()
    sol = solve_ivp(rhs, (theta_min, theta_max), state0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"RK45 failed: {sol.message}")
    y_T, integral = torch.from_numpy(sol.y[:-n, -1]).reshape(n, -1), torch.from_numpy(sol.y[-n:, -1])
    d = y_T.shape[1]
    if log_prior is None:  # y ~ N(0, I) at theta_max
        log_p_y = -0.5 * y_T.pow(2).sum(1) - 0.5 * d * math.log(2 * math.pi)
    else:  # the density of x_T = h y carried to y
        h = math.hypot(*(c.item() for c in den.process.coefs(s_max)))
        log_p_y = log_prior((h * y_T).reshape(shape).to(x_0)).double().cpu() + d * math.log(h)
    # log p(x_bar) = log p(y) + D log cos(theta_min): the density of y = x_bar cos(theta) carried back to x_bar
    return (log_p_y + integral + d * math.log(math.cos(theta_min))).to(x_0.device)
