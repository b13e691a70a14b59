"""Notebook 12 (fast sampling by training): the hints and catalogued mistakes of its exercises.

    coefs          Exercise 1 (core + derive): the consistency model's c_skip and c_out, boundary condition built in
    cd_loss        Exercise 2 (core): the per-example consistency-distillation loss, one noise shared by both levels
    pd_target      Exercise 3 (derive + build): progressive distillation's target from the teacher's two DDIM steps
    multistep      Exercise 4 (build): multistep consistency sampling

Each is a dict for ``check_function(..., **nb12.name)`` (see the package docstring).
"""

from __future__ import annotations

import torch

from dlib.denoiser import VE, Denoiser, Prediction, edm_coefs
from dlib.distill import consistency_coefs, consistency_loss, ddim_to, distance, pd_target
from dlib.samplers import sample_consistency
from dlib.utils import append_dims, randn_like

# --- Exercise 1: c_skip and c_out ---


def reference_coefs(sigma, sigma_min, sigma_data):
    return consistency_coefs(sigma, sigma_min, sigma_data)


def _edm(sigma, sigma_min, sigma_data):  # EDM's c_skip, c_out (dlib.denoiser.edm_coefs), with no sigma_min shift
    return edm_coefs(sigma, sigma_data)[:2]


coefs = dict(
    reference=reference_coefs,
    hint=[
        "Start from EDM's preconditioning (notebook 05): c_skip = sigma_data^2 / (sigma^2 + sigma_data^2), c_out = "
        "sigma sigma_data / sqrt(sigma^2 + sigma_data^2). It gives c_skip = 1, c_out = 0 at sigma = 0, but the "
        "consistency model's smallest level is sigma_min > 0. Shift sigma by sigma_min where that fixes the boundary.",
        "c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2); c_out = sigma_data (sigma - sigma_min) / "
        "sqrt(sigma_data^2 + sigma^2) (Song et al. 2023, Appendix C).",
    ],
    mistakes={
        "EDM's coefficients, unshifted: at sigma_min they give c_skip < 1 and c_out > 0, so f(x, sigma_min) != x": _edm,
        "c_out without the shift (sigma instead of sigma - sigma_min): c_out(sigma_min) > 0": (
            lambda sigma, sigma_min, sigma_data: (
                consistency_coefs(sigma, sigma_min, sigma_data)[0],
                _edm(sigma, sigma_min, sigma_data)[1],
            )
        ),
        "c_skip and c_out swapped: at sigma_min the output would be all network, none of the input": (
            lambda sigma, sigma_min, sigma_data: consistency_coefs(sigma, sigma_min, sigma_data)[::-1]
        ),
        "c_skip with sigma^2 - sigma_min^2 instead of (sigma - sigma_min)^2": (
            lambda sigma, sigma_min, sigma_data: (
                sigma_data**2 / (sigma**2 - sigma_min**2 + sigma_data**2),
                consistency_coefs(sigma, sigma_min, sigma_data)[1],
            )
        ),
    },
)


# --- Exercise 2: the consistency-distillation loss ---


def reference_cd_loss(f, f_target, teacher_step, x_0, z, sigma, sigma_next):
    return consistency_loss(f, f_target, x_0, z, sigma, sigma_next, teacher_step)


def _cd(points, f_at_lo=False):
    """A wrong CD loss: ``points(x_0, z, s, s_next, teacher_step) -> (x, x_next)``; the target network at x_next."""

    def loss(f, f_target, teacher_step, x_0, z, sigma, sigma_next):
        s, s_next = (append_dims(c, x_0.ndim).to(x_0) for c in (sigma, sigma_next))
        x, x_next = points(x_0, z, s, s_next, lambda x: teacher_step(x, sigma, sigma_next))
        if f_at_lo:  # the levels swapped: the student one level down, the target at the noisier point
            return distance(f(x_next, sigma_next), f_target(x, sigma))
        return distance(f(x, sigma), f_target(x_next, sigma_next))

    return loss


cd_loss = dict(
    reference=reference_cd_loss,
    hint=[
        "Noise x_0 to the higher level sigma with z. Let the teacher take its one ODE step from there down to "
        "sigma_next. The student f sees the noisier point; the target network f_target (no gradient) sees the "
        "teacher's result. Return the per-example mean squared difference (dlib.distill.distance).",
        "x = x_0 + sigma z (sigma broadcast); x_next = teacher_step(x, sigma, sigma_next); "
        "loss = ((f(x, sigma) - f_target(x_next, sigma_next)) ** 2).flatten(1).mean(1), the target under "
        "torch.no_grad().",
    ],
    mistakes={
        "independent noise at the two levels (the study guide's bug): the lower point must lie on the same ODE path, "
        "so it is made from the same z (by the teacher's step)": _cd(
            lambda x_0, z, s, s_next, step: (x_0 + s * z, x_0 + s_next * z.roll(1, 0))
        ),
        "consistency training's point x_0 + sigma_next z instead of the teacher's ODE step (that is CT, not CD)": _cd(
            lambda x_0, z, s, s_next, step: (x_0 + s * z, x_0 + s_next * z)
        ),
        "the levels swapped: the student at the lower level and the target at the noisier point": _cd(
            lambda x_0, z, s, s_next, step: (x_0 + s * z, step(x_0 + s * z)), f_at_lo=True
        ),
        "the target at the clean x_0 instead of one step down the teacher's path": _cd(
            lambda x_0, z, s, s_next, step: (x_0 + s * z, x_0)
        ),
    },
)


# --- Exercise 3: progressive distillation's target ---


def reference_pd_target(teacher, x, coefs3):
    """coefs3: [(a, b), (a', b'), (a'', b'')] at sigma > sigma' > sigma'' (floats or broadcastable tensors)."""
    (a, b), (a1, b1), (a2, b2) = coefs3
    x_mid = ddim_to(teacher(x, 0), a1, b1)
    x_two = ddim_to(teacher(x_mid, 1), a2, b2)
    return pd_target(x, x_two, a, b, a2, b2)


def _pd_with(solve):
    def run(teacher, x, coefs3):
        (a, b), (a1, b1), (a2, b2) = coefs3
        x_mid = ddim_to(teacher(x, 0), a1, b1)
        x_two = ddim_to(teacher(x_mid, 1), a2, b2)
        return solve(x, x_two, a, b, a2, b2, teacher)

    return run


pd_target_ex = dict(
    reference=reference_pd_target,
    hint=[
        "Take the teacher's two DDIM steps (x' = a' x_0_hat + b' eps_hat, twice). Then ask: which x_0 makes ONE "
        "DDIM step from x land exactly on the teacher's x''? In that step eps_hat is not free: it is (x - a x_0) / b.",
        "a'' x_0 + b'' (x - a x_0) / b = x''. Solve for x_0: x_0 = (x'' - (b'' / b) x) / (a'' - (b'' / b) a).",
    ],
    mistakes={
        "the teacher's last x_0_hat as the target: it ignores where the student's own step puts the noise": (
            lambda teacher, x, coefs3: teacher(ddim_to(teacher(x, 0), *coefs3[1]), 1).x_0
        ),
        "x'' itself as the target: right only for the last step (a'' = 1, b'' = 0)": _pd_with(
            lambda x, x_two, a, b, a2, b2, t: x_two
        ),
        "the ratio upside down, b / b'' instead of b'' / b": _pd_with(
            lambda x, x_two, a, b, a2, b2, t: (x_two - (b / b2) * x) / (a2 - (b / b2) * a)
        ),
        "eps held at the teacher's first eps_hat instead of tied to x_0 by (x - a x_0) / b": _pd_with(
            lambda x, x_two, a, b, a2, b2, t: (x_two - b2 * t(x, 0).eps) / a2
        ),
    },
)


# --- Exercise 4: multistep consistency sampling ---


class _Jump(Denoiser):
    """A consistency function f(x_bar, sigma) as a Denoiser of x_0 on VE, called with the exact float sigma."""

    def __init__(self, f, sigma_min: float, sigma_max: float):
        super().__init__(f, "x_0", VE(sigma_min, sigma_max))

    def __call__(self, x, sigma, t=None, **cond):
        x_0 = self.net(x, float(sigma))
        return Prediction(x_0, (x - x_0) / float(sigma))


def reference_multistep(f, x_T, sigmas, sigma_min, seed):
    """f(x_bar, sigma) -> x_0 for a float sigma; sigmas descending, x_T at sigmas[0]; fresh noise from ``seed``."""
    den = _Jump(f, sigma_min, sigmas[0])
    return sample_consistency(den, x_T, steps=len(sigmas), sigmas=sigmas, generator=torch.Generator().manual_seed(seed))


def _multistep_with(noise_scale, last_noise=False):
    def run(f, x_T, sigmas, sigma_min, seed):
        g, x = torch.Generator().manual_seed(seed), x_T
        for i, sigma in enumerate(sigmas):
            x = f(x, sigma)
            if i + 1 < len(sigmas) or last_noise:
                nxt = sigmas[min(i + 1, len(sigmas) - 1)]
                x = x + noise_scale(nxt, sigma_min) * randn_like(x, g)
        return x

    return run


multistep = dict(
    reference=reference_multistep,
    hint=[
        "Jump to f(x, sigmas[0]). Then, for each next level, put noise back to that level and jump again. The jump "
        "lands at sigma_min, not at 0, so the noise to add is what takes sigma_min up to the next level. Return the "
        "last jump, with no noise after it. Draw each fresh noise with randn_like(x, g) (dlib.utils), "
        "g = torch.Generator().manual_seed(seed).",
        "x = f(x_T, sigmas[0]); for s in sigmas[1:]: x = x + sqrt(s^2 - sigma_min^2) z; x = f(x, s). "
        "(Song et al. 2023, Algorithm 1.)",
    ],
    mistakes={
        "the noise scaled by s instead of sqrt(s^2 - sigma_min^2)": _multistep_with(lambda s, lo: s),
        "the noise scaled by s^2 (a variance, not a standard deviation)": _multistep_with(lambda s, lo: s**2 - lo**2),
        "noise added after the last jump: the final sample must be the model's output": _multistep_with(
            lambda s, lo: (s**2 - lo**2) ** 0.5, last_noise=True
        ),
    },
)
