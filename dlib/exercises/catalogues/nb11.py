"""Notebook 11 (score and flow): the hints and catalogued mistakes of its exercises.

    dsm_loss           Exercise 1 (core): denoising score matching at one level per example, sigma^2-weighted
    langevin           Exercise 2 (build): NCSN's annealed Langevin dynamics with given noise
    flow_matching      Exercise 3 (core): the flow-matching loss on the straight path
    flow_euler         Exercise 4 (build): Euler's method for a flow, from t = 1 (noise) to t = 0 (data)
    from_velocity      Exercise 5 (derive): x_0_hat, eps_hat and the score from a flow velocity

Each is a dict for ``check_function(..., **nb11.name)`` (see the package docstring).
"""

from __future__ import annotations

import torch

from dlib.denoiser import OUTPUTS, PREDICTIONS, Denoiser, Flow
from dlib.forward import mse_per_example
from dlib.losses import flow_matching_loss
from dlib.samplers import sample_euler
from dlib.samplers.sde import annealed_langevin
from dlib.score import dsm_loss
from dlib.utils import append_dims

# --- Exercise 1: denoising score matching ---


def _dsm(score, x_0, sigma, z, target, weight):
    s = append_dims(sigma, x_0.ndim)
    return mse_per_example(score(x_0 + s * z, sigma), target(z, s)) * weight(sigma)


def sigma2_weighted_dsm(score, x_0, sigma, z):
    return dsm_loss(score, x_0, sigma, z)


dsm = dict(
    reference=sigma2_weighted_dsm,
    hint=[
        "Noise each example to its own level, ask the score network about the noisy point, and compare with the "
        "score of the noise you added, grad_x log q(x | x_0). Then weight each example's error by its level.",
        "x = x_0 + sigma z (sigma broadcast to x_0's shape); the target is -z / sigma; the per-example error is "
        "the mean over dimensions of (score - target)^2 (dlib.forward.mse_per_example), times sigma^2.",
        "s = sigma.view(-1, *[1] * (x_0.ndim - 1)); return ((score(x_0 + s * z, sigma) + z / s) ** 2)"
        ".flatten(1).mean(1) * sigma ** 2",
    ],
    mistakes={
        "no weighting: the study guide's loss, where small sigmas (target variance 1 / sigma^2) swamp the rest": (
            lambda score, x_0, sigma, z: dsm_loss(score, x_0, sigma, z, "none")
        ),
        "the target +z / sigma: the score points towards the data, against the noise": (
            lambda score, x_0, sigma, z: _dsm(score, x_0, sigma, z, lambda z, s: z / s, lambda s: s**2)
        ),
        "the target -z: that is eps (times -1), the score of the blur is -z / sigma": (
            lambda score, x_0, sigma, z: _dsm(score, x_0, sigma, z, lambda z, s: -z, lambda s: s**2)
        ),
        "the target -z / sigma^2: the noise added is sigma z, and grad log N(x; x_0, sigma^2) = -(x - x_0) / sigma^2 "
        "= -z / sigma": (
            lambda score, x_0, sigma, z: _dsm(score, x_0, sigma, z, lambda z, s: -z / s**2, lambda s: s**2)
        ),
        "weighted by sigma, not sigma^2: the large levels still dominate less than they should": (
            lambda score, x_0, sigma, z: _dsm(score, x_0, sigma, z, lambda z, s: -z / s, lambda s: s)
        ),
    },
)


# --- Exercise 2: annealed Langevin dynamics ---


def _langevin(score, x, sigmas, n_each, step_lr, noises):
    it = iter(noises.flatten(0, 1))
    return annealed_langevin(score, x, list(sigmas), n_each, step_lr, lambda: next(it))


def _langevin_with(step_of, noise_scale=2.0, order=1):
    def run(score, x, sigmas, n_each, step_lr, noises):
        sigmas = list(sigmas)[::order]
        for i, sigma in enumerate(sigmas):
            step = step_of(step_lr, sigma, sigmas)
            for k in range(n_each):
                x = x + step * score(x, sigma) + (noise_scale * step) ** 0.5 * noises[i, k]
        return x

    return run


langevin = dict(
    reference=_langevin,
    hint=[
        "Visit the levels in the order given (largest first). At each, take n_each Langevin steps "
        "x <- x + step * score + sqrt(2 step) z, with the step shrinking with the level so that the ratio of step "
        "to noise variance sigma^2 is the same at every level.",
        "step = step_lr * sigma^2 / sigma_L^2 / 2 where sigma_L = sigmas[-1] is the smallest level (Song & Ermon's "
        "alpha_i = step_lr sigma_i^2 / sigma_L^2 and step = alpha_i / 2); the k-th step at level i uses noises[i, k].",
        "for i, s in enumerate(sigmas): step = step_lr * (s / sigmas[-1]) ** 2 / 2; for k in range(n_each): "
        "x = x + step * score(x, s) + (2 * step) ** 0.5 * noises[i, k]",
    ],
    mistakes={
        "the same step at every level: large levels then crawl (and small ones are too bold)": _langevin_with(
            lambda lr, s, ss: lr / 2
        ),
        "the noise scaled by sqrt(step) instead of sqrt(2 step): the chain then samples p^2, too concentrated": (
            _langevin_with(lambda lr, s, ss: lr * (s / ss[-1]) ** 2 / 2, noise_scale=1.0)
        ),
        "the step proportional to sigma, not sigma^2": _langevin_with(lambda lr, s, ss: lr * (s / ss[-1]) / 2),
        "the levels visited smallest first: annealing must go from coarse (large sigma) to fine": _langevin_with(
            lambda lr, s, ss: lr * (s / min(ss)) ** 2 / 2, order=-1
        ),
    },
)


# --- Exercise 3: the flow-matching loss ---


def _fm(velocity, x_0, eps, t, start, end, target):
    tt = append_dims(t, x_0.ndim)
    return mse_per_example(velocity((1 - tt) * start(x_0, eps) + tt * end(x_0, eps), t), target(x_0, eps))


flow_matching = dict(
    reference=flow_matching_loss,
    hint=[
        "Put a point on the straight line between the data x_0 (at t = 0) and the noise eps (at t = 1), ask the "
        "network for its velocity there, and compare with the line's own velocity d x_t / dt.",
        "x_t = (1 - t) x_0 + t eps (t broadcast to x_0's shape), so d x_t / dt = eps - x_0; the per-example loss is "
        "the mean over dimensions of (velocity(x_t, t) - (eps - x_0))^2.",
        "tt = t.view(-1, *[1] * (x_0.ndim - 1)); return ((velocity((1 - tt) * x_0 + tt * eps, t) - (eps - x_0)) ** 2)"
        ".flatten(1).mean(1)",
    ],
    mistakes={
        "the target x_0 - eps: that is the velocity towards the data (Lipman et al.'s convention, data at t = 1), the "
        "negative of this path's": (
            lambda velocity, x_0, eps, t: _fm(velocity, x_0, eps, t, lambda x, e: x, lambda x, e: e, lambda x, e: x - e)
        ),
        "the ends swapped, x_t = t x_0 + (1 - t) eps: then t = 0 is the noise and the target must flip too": (
            lambda velocity, x_0, eps, t: _fm(velocity, x_0, eps, t, lambda x, e: e, lambda x, e: x, lambda x, e: e - x)
        ),
        "the target eps: that is DDPM's eps-prediction, not the velocity of the path": (
            lambda velocity, x_0, eps, t: _fm(velocity, x_0, eps, t, lambda x, e: x, lambda x, e: e, lambda x, e: e)
        ),
    },
)


# --- Exercise 4: Euler's method for a flow ---


def _euler(velocity, x_1, steps):
    return sample_euler(Denoiser(lambda x, time: velocity(x, time / Flow.time_scale), "flow", Flow()), x_1, steps=steps)


def _euler_with(sign=1.0, at_end=False, upward=False):
    def run(velocity, x_1, steps):
        x, dt = x_1, 1.0 / steps
        for i in range(steps):
            t = i * dt if upward else 1 - i * dt - (dt if at_end else 0.0)
            x = x - sign * dt * velocity(x, torch.full((len(x),), t, dtype=x.dtype))
        return x

    return run


flow_euler = dict(
    reference=_euler,
    hint=[
        "Start at the noise (t = 1) and walk to the data (t = 0) in `steps` equal steps of dt = 1 / steps, each "
        "following the velocity measured where the step starts.",
        "At step i the time is t_i = 1 - i / steps; dx/dt = v, and t decreases, so x <- x - dt * velocity(x, t_i) "
        "(velocity takes t as a (B,) tensor).",
        "dt = 1 / steps; for i in range(steps): t = torch.full((len(x),), 1 - i * dt); x = x - dt * velocity(x, t)",
    ],
    mistakes={
        "x + dt v: t decreases from 1 to 0, so the step is x - dt v (this one walks towards more noise)": _euler_with(
            sign=-1.0
        ),
        "the velocity read at the end of each step (t_i - dt), not where it starts": _euler_with(at_end=True),
        "the times run from 0 upwards: the velocity is asked about the data end while x is still noise": _euler_with(
            upward=True
        ),
    },
)


# --- Exercise 5: from a velocity to x_0, eps and the score ---


def _from_velocity(v, x_t, t):
    a, b = (append_dims(c, x_t.ndim) for c in Flow.path(t))
    pred = PREDICTIONS["flow"](v, x_t, a, b)
    return pred.x_0, pred.eps, OUTPUTS["score"](pred.x_0, pred.eps, a, b)


def _from_velocity_with(x0_sign=1.0, eps_sign=1.0, score_of=None):
    def run(v, x_t, t):
        tt = append_dims(t, x_t.ndim)
        x_0, eps = x_t - x0_sign * tt * v, x_t + eps_sign * (1 - tt) * v
        return x_0, eps, score_of(eps, tt) if score_of else -eps / tt

    return run


from_velocity = dict(
    reference=_from_velocity,
    hint=[
        "Two equations, two unknowns: x_t = (1 - t) x_0 + t eps and v = eps - x_0. Solve for x_0 and eps; then the "
        "score of x_t follows from eps as in Tweedie's formula.",
        "Substitute eps = v + x_0 into the first: x_0 = x_t - t v, and eps = x_t + (1 - t) v. The noise in x_t is "
        "t eps, so grad log p(x_t) = -E[eps | x_t] / t.",
        "tt = t.view(-1, *[1] * (x_t.ndim - 1)); x_0 = x_t - tt * v; eps = x_t + (1 - tt) * v; return x_0, eps, -eps / tt",
    ],
    mistakes={
        "x_0 = x_t + t v: the velocity points from the data to the noise, so going back subtracts it": (
            _from_velocity_with(x0_sign=-1.0)
        ),
        "eps = x_t - (1 - t) v: going forward to t = 1 adds the velocity": _from_velocity_with(eps_sign=-1.0),
        "the score -eps / t^2: the noise's standard deviation in x_t is t, not its variance": _from_velocity_with(
            score_of=lambda eps, t: -eps / t**2
        ),
        "the score -eps / sigma with sigma = t / (1 - t): that is the score of the scaled state x_t / (1 - t), "
        "not of x_t": _from_velocity_with(score_of=lambda eps, t: -eps * (1 - t) / t),
    },
)
