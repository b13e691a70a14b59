"""Samplers: the reverse process p, as pure functions with one shared signature.

    sample_X(eps_model, x_T, sched, steps, *, ..., generator=None, callback=None, **cond) -> x_0

x_T ~ N(0, I) is the state at t = T-1; every sampler ends at alpha_bar = 1 (the data). No object
carries state between calls. Each per-step rule is its own pure function so that a notebook can
derive it and a test can feed it fixed noise. ``callback(dict(i=, t=, x=, x_0_hat=))`` sees every
step (x on the x_t scale; sigma-space samplers add ``sigma``). Derived in notebook 05.

    discrete     sample_ddpm, sample_ddim, ddim_invert         on integer time indices
    sigma        sample_pf_ode (RK45), sample_euler, sample_heun   in sigma = sqrt((1 - alpha_bar) / alpha_bar)
    dpm_solver   sample_dpm_solver: DPM-Solver 1-3, DPM-Solver++ 2M/3M, in lambda = -log sigma
"""

from dlib.samplers.discrete import (
    SPACINGS,
    alpha_bar_grid,
    ddim_invert,
    ddim_step,
    ddpm_step,
    sample_ddim,
    sample_ddpm,
    timesteps,
)
from dlib.samplers.dpm_solver import dpm_solver_pp_step, dpm_solver_step, sample_dpm_solver
from dlib.samplers.sigma import (
    SIGMA_SPACINGS,
    eps_at_sigma,
    euler_step,
    heun_step,
    karras_sigmas,
    sample_euler,
    sample_heun,
    sample_pf_ode,
    sigma_grid,
)

SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "pf_ode": sample_pf_ode,
    "dpm_solver": sample_dpm_solver,
    "euler": sample_euler,
    "heun": sample_heun,
}

__all__ = [
    "SAMPLERS",
    "SIGMA_SPACINGS",
    "SPACINGS",
    "alpha_bar_grid",
    "ddim_invert",
    "ddim_step",
    "ddpm_step",
    "dpm_solver_pp_step",
    "dpm_solver_step",
    "eps_at_sigma",
    "euler_step",
    "heun_step",
    "karras_sigmas",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpm_solver",
    "sample_euler",
    "sample_heun",
    "sample_pf_ode",
    "sigma_grid",
    "timesteps",
]
