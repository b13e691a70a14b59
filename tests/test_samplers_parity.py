"""Parity with diffusers' schedulers: the same eps-function, the same x_T and the same noise stream
must give the same samples, to float32 tolerance (diffusers keeps alpha_bar in float32 and we derive it
in float64, so agreement is to about 1e-5 relative, not bitwise).

The eps-function is a fixed nonlinear function of x and (possibly fractional) t, not a trained
network: parity is about the sampler's arithmetic, and this keeps the tests fast.
"""

import math

import pytest
import torch

from dlib import samplers
from dlib import schedules as S

diffusers = pytest.importorskip("diffusers")
T = 1000
TOL = dict(rtol=1e-4, atol=1e-4)
SCHED = S.linear(T)


def eps_model(x, t):
    """A stand-in for a network: the exact eps of data N(0.5, 0.25) plus a smooth nonlinear,
    t-dependent term, so samples stay O(1). t may be (B,) or 0-dim, integer or fractional."""
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, *[1] * (x.ndim - 1))
    alpha_bar = 1 / (1 + S.sigma_of_t(SCHED, t) ** 2)
    x = x.double()
    exact = (1 - alpha_bar).sqrt() * (x - alpha_bar.sqrt() * 0.5) / (0.25 * alpha_bar + 1 - alpha_bar)
    return (exact + 0.1 * torch.sin(2 * x + 3 * t / T)).float()


def run_diffusers(scheduler, x, scale_input=False, **step_kwargs):
    for t in scheduler.timesteps:
        inp = scheduler.scale_model_input(x, t) if scale_input else x
        x = scheduler.step(eps_model(inp, t), t, x, **step_kwargs).prev_sample
    return x


@pytest.fixture
def x_T():
    return torch.randn(4, 1, 6, 6, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("steps", [1000, 50])
def test_ddpm_matches_diffusers_ddpm_scheduler(x_T, steps):
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, clip_sample=False
    )
    ref.set_timesteps(steps)  # diffusers respaces with "leading" time indices
    theirs = run_diffusers(ref, x_T, generator=torch.Generator().manual_seed(2))
    ours = samplers.sample_ddpm(
        eps_model, x_T, S.linear(T), steps, spacing="leading", generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(ours, theirs, **TOL)


@pytest.mark.parametrize(("spacing", "eta"), [("leading", 0.0), ("leading", 1.0), ("trailing", 0.0), ("trailing", 0.5)])
def test_ddim_matches_diffusers_ddim_scheduler(x_T, spacing, eta):
    """diffusers' DDIM always steps back by T // steps whatever the spacing, so the two agree for
    "trailing" only where steps divides T (here 50). With 30 trailing steps diffusers would jump from
    t = 999 to 966 while the next visited index is 965; dlib always steps to the next visited index."""
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=T,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing=spacing,
    )
    ref.set_timesteps(50)
    theirs = run_diffusers(ref, x_T, generator=torch.Generator().manual_seed(3), eta=eta)
    ours = samplers.sample_ddim(
        eps_model, x_T, S.linear(T), 50, eta=eta, spacing=spacing, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(ours, theirs, **TOL)


@pytest.mark.parametrize(("order", "steps"), [(2, 10), (2, 25), (3, 3)])
def test_dpm_solver_pp_matches_diffusers_multistep(x_T, order, steps):
    """2M everywhere; 3M only while it has no third-order step (see the next test)."""
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=T,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        algorithm_type="dpmsolver++",
        solver_order=order,
        timestep_spacing="trailing",
    )
    ref.set_timesteps(steps)
    theirs = run_diffusers(ref, x_T)
    ours = samplers.sample_dpm_solver(eps_model, x_T, S.linear(T), steps, order=order, plus=True, spacing="trailing")
    torch.testing.assert_close(ours, theirs, **TOL)


def test_dpm_solver_first_order_is_ddim(x_T):
    """DPM-Solver-1 and DPM-Solver++(1) are DDIM (Lu et al. 2022, Prop. 4.1) on the same time indices."""
    sched = S.linear(T)
    ddim = samplers.sample_ddim(eps_model, x_T, sched, 20)
    for plus in (False, True):
        torch.testing.assert_close(
            samplers.sample_dpm_solver(eps_model, x_T, sched, 20, order=1, plus=plus), ddim, rtol=1e-5, atol=1e-5
        )
    torch.testing.assert_close(samplers.sample_euler(eps_model, x_T, sched, 20, spacing="trailing"), ddim, **TOL)


@pytest.mark.parametrize("steps", [10, 30])
def test_euler_matches_diffusers_euler_karras(x_T, steps):
    ref = diffusers.EulerDiscreteScheduler(
        num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, use_karras_sigmas=True
    )
    ref.set_timesteps(steps)
    theirs = run_diffusers(ref, x_T * math.sqrt(1 + ref.sigmas[0].item() ** 2), scale_input=True)
    ours = samplers.sample_euler(eps_model, x_T, S.linear(T), steps)
    torch.testing.assert_close(ours, theirs, **TOL)


def test_euler_churn_differs_from_diffusers_by_design(x_T):
    """With churn, Karras et al. (Alg. 2, line 7) and k-diffusion evaluate the network at the raised level
    sigma_hat on the re-noised x_hat; diffusers' EulerDiscreteScheduler evaluates it before adding the
    noise, at sigma. dlib follows the paper, so the two differ (and agree again without churn)."""
    ref = diffusers.EulerDiscreteScheduler(
        num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, use_karras_sigmas=True
    )
    ref.set_timesteps(10)
    x = x_T * math.sqrt(1 + ref.sigmas[0].item() ** 2)
    theirs = run_diffusers(ref, x, scale_input=True, generator=torch.Generator().manual_seed(4), s_churn=5.0)
    ours = samplers.sample_euler(
        eps_model, x_T, S.linear(T), 10, s_churn=5.0, generator=torch.Generator().manual_seed(4)
    )
    assert not torch.allclose(ours, theirs, **TOL)


@pytest.mark.parametrize("steps", [10, 30])
def test_heun_matches_diffusers_heun_karras(x_T, steps):
    ref = diffusers.HeunDiscreteScheduler(
        num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, use_karras_sigmas=True
    )
    ref.set_timesteps(steps)
    theirs = run_diffusers(ref, x_T * math.sqrt(1 + ref.sigmas[0].item() ** 2), scale_input=True)
    calls = []
    ours = samplers.sample_heun(lambda x, t: calls.append(1) or eps_model(x, t), x_T, S.linear(T), steps)
    torch.testing.assert_close(ours, theirs, **TOL)
    assert len(calls) == len(ref.timesteps) == 2 * steps - 1


def test_dpm_solver_pp_3m_differs_from_diffusers_by_design():
    """A third-order multistep step must be exact when x_0_hat is a quadratic in lambda (as Adams-
    Bashforth 3 is for quadratics). dlib's 3M is; diffusers' (and the DPM-Solver reference code's)
    gives its second divided difference half the Taylor weight, misses by ~h^3 x_0_hat'' / 12, and so
    converges at second order only (test_samplers.py measures both orders). dlib keeps the Taylor weight."""
    h, sigma_s = 0.3, 1.0
    sig = [sigma_s * math.exp(j * h) for j in range(3)]  # newest first: lambda_s, lambda_s - h, lambda_s - 2h
    x_0_hats = [torch.tensor([(j * h) ** 2], dtype=torch.float64) for j in range(3)]  # (lambda - lambda_s)^2
    x_bar, sigma_next = torch.tensor([0.7], dtype=torch.float64), sigma_s * math.exp(-h)
    # exact: e^{-h} x_bar + int_0^h e^{tau - h} tau^2 dtau
    exact = math.exp(-h) * 0.7 + (h**2 - 2 * h + 2) - 2 * math.exp(-h)
    ours = samplers.dpm_solver_pp_step(x_bar, x_0_hats, sig, sigma_next, 3)
    assert abs(ours.item() - exact) < 1e-12

    ref = diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=3)
    ref.sigmas = torch.tensor([sig[2], sig[1], sig[0], sigma_next], dtype=torch.float64)
    ref._step_index = 2
    alpha_s, alpha_next = (1 + sigma_s**2) ** -0.5, (1 + sigma_next**2) ** -0.5
    theirs = ref.multistep_dpm_solver_third_order_update(x_0_hats[::-1], sample=x_bar * alpha_s) / alpha_next
    assert abs(theirs.item() - exact) > 1e-3
    assert abs(theirs.item() - exact - (-(h**3) / 12 * 2)) < 2e-3  # the missing half of the x_0_hat'' term
