"""Notebook 05 (sampling): the hints and catalogued mistakes of its checked exercises.

``ddim_step`` (exercise 2, one DDIM step), ``sample_ddim`` (exercise 3, the whole deterministic
sampler) and ``ode_derivative`` (exercise 4, d x_bar / d sigma). Each mistake has the signature of
its exercise's reference and changes exactly one ingredient of the correct answer, so the checker
can name what the learner got wrong. Kept out of the notebook because each one spells out the formula.
"""

from __future__ import annotations

import math

import torch

from dlib import forward, samplers, schedules
from dlib.denoiser import as_denoiser

# --- exercise 2: one DDIM step ------------------------------------------------------------------


_RIGHT = dict(  # the correct ingredients, from dlib itself: each mistake below swaps one
    x0_hat=forward.x0_from_eps,
    var_of=lambda a, a_prev: float(forward.posterior_coefs(a, a_prev)[2]),  # beta_tilde of the jump
    direction=lambda a, a_prev, var: math.sqrt(max(1 - a_prev - var, 0.0)),
    x0_coef=lambda a, a_prev: math.sqrt(a_prev),
    noise_coef=math.sqrt,
)


def _ddim_variant(swap: dict):
    """A DDIM step (reference signature) with the ingredients in ``swap`` replaced."""
    f = {**_RIGHT, **swap}

    def step(x_t, eps_hat, alpha_bar_t, alpha_bar_prev, eta=0.0, noise=None):
        a, a_prev = alpha_bar_t, alpha_bar_prev
        x_0_hat = f["x0_hat"](x_t, eps_hat, a)
        var = eta**2 * f["var_of"](a, a_prev)
        x_prev = f["x0_coef"](a, a_prev) * x_0_hat + f["direction"](a, a_prev, var) * eps_hat
        return (x_prev + f["noise_coef"](var) * noise if eta > 0 else x_prev), x_0_hat

    return step


ddim_step = dict(
    hint=[
        "Start from x_0_hat (the DDPM step's estimate of the data), then follow the boxed update term by term: "
        "data part, direction part, noise part.",
        "The variance is eta^2 times the jump's beta_tilde (notebook 01's posterior variance with the jump's beta, "
        "1 - alpha_bar_t / alpha_bar_prev), and it is taken out of the direction term, inside its square root; "
        "the noise is scaled by the square root of the variance. On the last step alpha_bar_prev = 1.",
        "x_0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t); "
        "beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) (1 - alpha_bar_t / alpha_bar_prev); var = eta^2 beta_tilde; "
        "x_prev = sqrt(alpha_bar_prev) x_0_hat + sqrt(1 - alpha_bar_prev - var) eps_hat + sqrt(var) noise",
    ],
    mistakes={
        "eta^2 beta (the jump's 1 - alpha_bar_t / alpha_bar_prev) instead of eta^2 beta_tilde as the variance": (
            _ddim_variant(dict(var_of=lambda a, a_prev: 1 - a / a_prev))
        ),
        "the variance not taken out of the direction term: sqrt(1 - alpha_bar_prev), not sqrt(1 - alpha_bar_prev - var)": (
            _ddim_variant(dict(direction=lambda a, a_prev, var: math.sqrt(1 - a_prev)))
        ),
        "the variance, not its square root, multiplies the noise": _ddim_variant(dict(noise_coef=lambda var: var)),
        "alpha_bar_t where alpha_bar_prev belongs (the step lands back at the current noise level)": _ddim_variant(
            dict(
                direction=lambda a, a_prev, var: math.sqrt(max(1 - a - var, 0.0)),
                x0_coef=lambda a, a_prev: math.sqrt(a),
            )
        ),
        "no square root on the direction coefficient: (1 - alpha_bar_prev - var) eps_hat": _ddim_variant(
            dict(direction=lambda a, a_prev, var: max(1 - a_prev - var, 0.0))
        ),
        "no square root on alpha_bar_t in x_0_hat: (x_t - sqrt(1 - alpha_bar_t) eps_hat) / alpha_bar_t": _ddim_variant(
            dict(x0_hat=lambda x_t, eps_hat, a: (x_t - math.sqrt(1 - a) * eps_hat) / a)
        ),
        "the sign of the noise in x_0_hat: x_t + sqrt(1 - alpha_bar_t) eps_hat": _ddim_variant(
            dict(x0_hat=lambda x_t, eps_hat, a: (x_t + math.sqrt(1 - a) * eps_hat) / math.sqrt(a))
        ),
    },
)

# --- exercise 3: a whole deterministic DDIM sampler ----------------------------------------------


def _reference_sample_ddim(eps_model, x_T, sched, steps):
    return samplers.sample_ddim(eps_model, x_T, sched, steps)  # eta = 0, trailing spacing


def _states(eps_model, x_T, sched, steps):
    """Every state of dlib's DDIM run, x_T first."""
    states = [x_T]
    samplers.sample_ddim(eps_model, x_T, sched, steps, callback=lambda d: states.append(d["x"]))
    return states


def _stops_one_step_early(eps_model, x_T, sched, steps):
    return _states(eps_model, x_T, sched, steps)[-2]


def _last_step_to_first_noise_level(eps_model, x_T, sched, steps):
    x_before, t_last = _states(eps_model, x_T, sched, steps)[-2], int(samplers.timesteps(sched.T, steps)[-1])
    eps_hat = eps_model(x_before, torch.full((x_T.shape[0],), t_last))
    return samplers.ddim_step(x_before, eps_hat, sched.alpha_bar[t_last].item(), sched.alpha_bar[0].item())[0]


def _next_index_is_t_minus_1(eps_model, x_T, sched, steps):
    # the DDPM habit: alpha_bar_prev = alpha_bar[t - 1], right only when every index is visited
    x = x_T
    for t in samplers.timesteps(sched.T, steps).tolist():
        a_prev = sched.alpha_bar[t - 1].item() if t > 0 else 1.0
        eps_hat = eps_model(x, torch.full((x.shape[0],), t))
        x = samplers.ddim_step(x, eps_hat, sched.alpha_bar[t].item(), a_prev)[0]
    return x


sample_ddim = dict(
    reference=_reference_sample_ddim,
    hint=[
        "One network call per visited index, noisiest first; what does the step after the last index land on?",
        "The step goes from alpha_bar at the current visited index to alpha_bar at the next visited one (not at "
        "t - 1), and to 1.0 (the data) after the last one; the network receives torch.full((B,), t).",
        "ts = samplers.timesteps(sched.T, steps).tolist(); for i, t in enumerate(ts): "
        "alpha_bar_prev = sched.alpha_bar[ts[i + 1]] if i + 1 < len(ts) else 1.0; "
        "x = ddim_step_fn(x, eps_model(x, torch.full((B,), t)), sched.alpha_bar[t], alpha_bar_prev, 0.0, None)[0]",
    ],
    mistakes={
        "the last step lands on alpha_bar[0] (the first noise level) instead of the data (alpha_bar = 1)": (
            _last_step_to_first_noise_level
        ),
        "the loop stops one step early: it returns the state at the last index, before the step to the data": (
            _stops_one_step_early
        ),
        "leading spacing (it starts below T - 1) instead of the default trailing one": lambda eps_model, x_T, sched, steps: (
            samplers.sample_ddim(eps_model, x_T, sched, steps, spacing="leading")
        ),
        "each step goes to alpha_bar[t - 1], one index down, instead of the next visited index": _next_index_is_t_minus_1,
    },
)

# --- exercise 4: the right-hand side of the probability-flow ODE in sigma -------------------------


def _reference_ode_derivative(eps_model, x_bar, sigma, sched):
    # dlib.denoiser.as_denoiser turns an eps-model and its schedule into the samplers' one model interface
    return samplers.denoise(as_denoiser(eps_model, sched), x_bar, sigma, None, {}).eps


def _t_of(sched, sigma):
    return schedules.t_of_sigma(sched, sigma).item()


def _derivative_variant(scale, time):
    """d x_bar / d sigma (reference signature) with the scaling of the state or the time swapped."""

    def rhs(eps_model, x_bar, sigma, sched):
        t = time(sched, sigma)
        return eps_model(scale(x_bar, sigma), torch.full((x_bar.shape[0],), t, dtype=torch.float64))

    return rhs


def _unscale(x, s):
    return x / math.sqrt(1 + s**2)


ode_derivative = dict(
    reference=_reference_ode_derivative,
    hint=[
        "Section 3: d x_bar / d sigma is the network's eps_hat, evaluated at the state and time the network was trained on.",
        "x_bar = x_t / sqrt(alpha_bar) and sigma^2 = (1 - alpha_bar) / alpha_bar, so 1 / alpha_bar = 1 + sigma^2; "
        "keep the fractional t(sigma), do not round it.",
        "x_t = x_bar / sqrt(1 + sigma^2); t = schedules.t_of_sigma(sched, sigma); "
        "return eps_model(x_t, torch.full((B,), t))",
    ],
    mistakes={
        "sqrt(1 + sigma^2) multiplied instead of divided: x_t = x_bar * sqrt(1 + sigma^2)": _derivative_variant(
            lambda x, s: x * math.sqrt(1 + s**2), _t_of
        ),
        "x_bar passed to the network unscaled (it was trained on x_t)": _derivative_variant(lambda x, s: x, _t_of),
        "x_t = x_bar / (1 + sigma^2): the square root missing": _derivative_variant(lambda x, s: x / (1 + s**2), _t_of),
        "sigma passed as the time (the network wants the index t(sigma))": _derivative_variant(
            _unscale, lambda sched, s: s
        ),
        "t(sigma) rounded down to an integer index (the fractional part matters)": _derivative_variant(
            _unscale, lambda sched, s: math.floor(_t_of(sched, s))
        ),
    },
)
