"""Samplers: the reverse process p, as pure functions with one shared signature.

    sample_X(model, x_T, sched=None, steps, *, ..., generator=None, callback=None, **cond) -> x_0

``model`` is an eps-model callable with its ``sched`` (a ``Schedule``), or a ``dlib.denoiser.Denoiser``
of any parameterisation (eps, x_0, v, flow velocity, EDM) on any process (VP, Flow, VE), which
knows its own process (``sched`` omitted). x_T is the process's state at the first noise level
(N(0, I) for VP and the flow, N(0, sigma_max^2 I) for VE); every sampler ends at the data and raises
if its result is not finite. No object carries state between calls. Each per-step rule is its own
pure function so that a notebook can derive it and a test can feed it fixed noise.
``callback(dict(i=, t=, x=, x_0_hat=))`` sees every step (x on the process's own scale; sigma-space
samplers add ``sigma``). Derived in notebook 05.

    grid         timesteps, sigma_grid, karras_sigmas                where the network is evaluated
    discrete     sample_ddpm, sample_ddim, ddim_invert               on the integer indices of a VP schedule
    sigma        sample_euler, sample_heun, sample_pf_ode (RK45)     the probability-flow ODE in sigma
    dpm_solver   sample_dpm_solver: DPM-Solver 1-3, DPM-Solver++ 2M/3M, in ell = -log sigma
    sde          sample_sde (reverse SDE, Euler-Maruyama), sample_pc (predictor-corrector),
                 sample_annealed_langevin (NCSN), sample_consistency (notebooks 11-12)
    likelihood   ode_log_likelihood: log p(x_0) from the same ODE, exact or Hutchinson divergence
    vocoder      vocode: a mel-conditioned waveform model over any beta schedule; search_schedule (notebook 09)
"""

from dlib.denoiser import VP, as_denoiser
from dlib.samplers.discrete import ddim_invert, ddim_step, ddpm_step, sample_ddim, sample_ddpm
from dlib.samplers.dpm_solver import dpm_solver_pp_step, dpm_solver_step, sample_dpm_solver
from dlib.samplers.grid import SIGMA_SPACINGS, SPACINGS, alpha_bar_grid, karras_sigmas, sigma_grid, timesteps
from dlib.samplers.likelihood import ode_log_likelihood
from dlib.samplers.sde import (
    langevin_step,
    sample_annealed_langevin,
    sample_consistency,
    sample_pc,
    sample_sde,
    sde_step,
)
from dlib.samplers.sigma import denoise, euler_step, heun_step, sample_euler, sample_heun, sample_pf_ode
from dlib.samplers.vocoder import search_schedule, vocode


def sample_default(model, x_T, sched=None, steps: int = 50, *, generator=None, callback=None, **cond):
    """The plain stochastic sampler of a model's process: DDPM (linspace steps) on a discrete VP schedule,
    the reverse SDE (``sample_sde``) on any other process. For training grids and evaluation."""
    den = as_denoiser(model, sched)
    if isinstance(den.process, VP):
        return sample_ddpm(den, x_T, None, steps, spacing="linspace", generator=generator, callback=callback, **cond)
    return sample_sde(den, x_T, None, steps, generator=generator, callback=callback, **cond)


SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "pf_ode": sample_pf_ode,
    "dpm_solver": sample_dpm_solver,
    "euler": sample_euler,
    "heun": sample_heun,
    "sde": sample_sde,
    "pc": sample_pc,
    "consistency": sample_consistency,
}

__all__ = [
    "SAMPLERS",
    "SIGMA_SPACINGS",
    "SPACINGS",
    "alpha_bar_grid",
    "ddim_invert",
    "ddim_step",
    "ddpm_step",
    "denoise",
    "dpm_solver_pp_step",
    "dpm_solver_step",
    "euler_step",
    "heun_step",
    "karras_sigmas",
    "langevin_step",
    "ode_log_likelihood",
    "sample_annealed_langevin",
    "sample_consistency",
    "sample_ddim",
    "sample_ddpm",
    "sample_default",
    "sample_dpm_solver",
    "sample_euler",
    "sample_heun",
    "sample_pc",
    "sample_pf_ode",
    "sample_sde",
    "sde_step",
    "search_schedule",
    "sigma_grid",
    "timesteps",
    "vocode",
]
