"""dlib.samplers.likelihood: the probability-flow ODE's log-likelihood against Gaussian closed forms."""

import math

import pytest
import torch

from dlib import schedules
from dlib.denoiser import Flow
from dlib.gaussian import gaussian_denoiser, gaussian_eps_model
from dlib.samplers.likelihood import ode_log_likelihood

MU = 0.5
VAR = torch.tensor([0.25, 0.04, 1.0], dtype=torch.float64)  # anisotropic: three different noise paths


def closed_form(x, var):
    return (-0.5 * (x - MU) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)).sum(1)


@pytest.fixture(scope="module")
def setup():
    sched = schedules.linear(1000)
    x_0 = MU + VAR.sqrt() * torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return sched, gaussian_eps_model(sched, MU, VAR), x_0


def true_prior(sched):
    ab = sched.alpha_bar[-1].double()
    return lambda x: closed_form(x - ab.sqrt() * MU + MU, ab * VAR + 1 - ab)  # N(sqrt(ab) mu, ab var + 1 - ab)


def test_exact_divergence_matches_the_closed_form(setup):
    sched, model, x_0 = setup
    sigma_0 = schedules.sigmas(sched)[0].item()
    ll = ode_log_likelihood(model, x_0, sched, log_prior=true_prior(sched))
    assert ll.shape == (16,) and ll.dtype == torch.float64
    assert (ll - closed_form(x_0, VAR + sigma_0**2)).abs().max() < 1e-4


def test_the_default_prior_costs_only_the_prior_mismatch(setup):
    sched, model, x_0 = setup
    sigma_0 = schedules.sigmas(sched)[0].item()
    gap = (ode_log_likelihood(model, x_0, sched) - closed_form(x_0, VAR + sigma_0**2)).abs()
    assert 1e-5 < gap.max() < 0.05  # N(0, I) is not the true marginal at T-1, but close to it


def test_hutchinson_is_unbiased():
    sched = schedules.linear(1000)
    angle = 0.6
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    var = torch.tensor([0.25, 0.02], dtype=torch.float64)
    diag = gaussian_eps_model(sched, MU, var)

    def model(x_t, t):
        return diag(x_t @ rot, t) @ rot.T

    x_0 = torch.tensor([[0.3, 0.6]], dtype=torch.float64)
    exact = ode_log_likelihood(model, x_0, sched)
    n = 300
    est = ode_log_likelihood(
        model, x_0.repeat(n, 1), sched, divergence="hutchinson", generator=torch.Generator().manual_seed(0)
    )
    assert est.std() > 0.01  # a non-diagonal Jacobian: the estimate has a spread
    assert (est.mean() - exact).abs() < 4 * est.std() / math.sqrt(n)


def test_flow_denoiser():
    # any process and parameterisation through the one model interface: a flow-velocity model on N(mu, var_data)
    den = gaussian_denoiser(Flow(), "flow", MU, 0.25)
    x_0 = torch.tensor([[0.1], [0.5], [1.2]], dtype=torch.float64)
    ll = ode_log_likelihood(den, x_0)
    s_min = 1e-4  # where the flow's integration stops (as sample_pf_ode)
    assert (ll - closed_form(x_0, torch.tensor([0.25 + s_min**2]))).abs().max() < 1e-4


def test_bad_divergence_raises(setup):
    sched, model, x_0 = setup
    with pytest.raises(ValueError, match="divergence"):
        ode_log_likelihood(model, x_0, sched, divergence="trace")
