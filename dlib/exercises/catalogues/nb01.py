"""Notebook 01 (the forward process): hints and catalogued mistakes of its checked exercises.

One dict per exercise, passed whole to the checker (``**nb01.q_sample``). Every mistake has the signature of
the exercise's reference and uses the course's 0-indexed ``t`` (docs/NOTATION.md); the hints go from a nudge
to the formula. The find-the-bug exercise merges its notebook's buggy function into ``mistakes`` in the cell.
"""

from __future__ import annotations

import torch

from dlib import forward
from dlib.schedules import Schedule
from dlib.utils import append_dims

# --- Exercise 1 (core): q_sample(x_0, t, sched, eps) ---


def _q_sample_with(x_0, eps, a, root=True):
    return a.sqrt() * x_0 + (1 - a).sqrt() * eps if root else a * x_0 + (1 - a) * eps


def _qs_alpha(x_0, t, sched, eps):
    return _q_sample_with(x_0, eps, append_dims(sched.alphas[t], x_0.ndim))


def _qs_shifted(x_0, t, sched, eps):
    return _q_sample_with(x_0, eps, append_dims(sched.alpha_bar_prev[t], x_0.ndim))


def _qs_no_sqrt(x_0, t, sched, eps):
    return _q_sample_with(x_0, eps, append_dims(sched.alpha_bar[t], x_0.ndim), root=False)


def _qs_flat(x_0, t, sched, eps):
    return _q_sample_with(x_0, eps, sched.alpha_bar[t])  # (B,): aligns with the last dimension, not the batch


q_sample = dict(
    hint=[
        "Jumping straight from x_0 to x_t needs the accumulated effect of every step up to t, not one step.",
        "Use sched.alpha_bar[t] (the cumulative product), and scale by square roots: the coefficients are standard "
        "deviations. Reshape the (B,) look-up to (B, 1, ..., 1) (dlib.append_dims or sched.at).",
        "x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps with alpha_bar_t = sched.at(sched.alpha_bar, t, x_0.ndim).",
    ],
    mistakes={
        "alpha_t (one step, sched.alphas) where alpha_bar_t (the cumulative product) belongs": _qs_alpha,
        "alpha_bar_{t-1} (sched.alpha_bar_prev): the index shifted by one, as if t counted from 1": _qs_shifted,
        "a missing square root: alpha_bar_t and 1 - alpha_bar_t are variances, the coefficients their square roots": _qs_no_sqrt,
        "a (B,) coefficient that does not broadcast: reshape it to (B, 1, ..., 1)": _qs_flat,
    },
)

# --- Exercise 3 (core): q_posterior(x_0, x_t, t, sched) -> (mean, var) ---


def _posterior(x_0, x_t, t, sched: Schedule, alpha_bar_prev, beta_tilde=True, flat=False, x_t_alpha_bar=False):
    n = x_t.ndim
    beta, alpha, a = (sched.at(v, t, n) for v in (sched.betas, sched.alphas, sched.alpha_bar))
    a_prev = append_dims(alpha_bar_prev, n)
    root = a.sqrt() if x_t_alpha_bar else alpha.sqrt()
    mean = a_prev.sqrt() * beta / (1 - a) * x_0 + root * (1 - a_prev) / (1 - a) * x_t
    var = (1 - a_prev) / (1 - a) * beta if beta_tilde else beta
    return mean, var.flatten() if flat else var


def _qp_wrap(x_0, x_t, t, sched):
    return _posterior(x_0, x_t, t, sched, sched.alpha_bar[t - 1])  # at t = 0 this reads alpha_bar[-1]


def _qp_beta(x_0, x_t, t, sched):
    return _posterior(x_0, x_t, t, sched, sched.alpha_bar_prev[t], beta_tilde=False)


def _qp_alpha_bar_on_x_t(x_0, x_t, t, sched):
    return _posterior(x_0, x_t, t, sched, sched.alpha_bar_prev[t], x_t_alpha_bar=True)


def _qp_flat(x_0, x_t, t, sched):
    return _posterior(x_0, x_t, t, sched, sched.alpha_bar_prev[t], flat=True)


q_posterior = dict(
    hint=[
        "Check the first step, t = 0: what is alpha_bar_{t-1} there, and what does your code read?",
        "Take alpha_bar_{t-1} from sched.alpha_bar_prev (1 at t = 0), never alpha_bar[t - 1]; the x_t coefficient uses "
        "the one-step alpha_t; the variance is beta_tilde_t, not beta_t; return var with shape (B, 1, ..., 1).",
        "mean = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0 + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t; "
        "var = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t.",
    ],
    mistakes={
        "alpha_bar[t - 1], which wraps around to the noisiest step at t = 0": _qp_wrap,
        "beta_t instead of beta_tilde_t as the variance": _qp_beta,
        "sqrt(alpha_bar_t) where the one-step sqrt(alpha_t) belongs on x_t": _qp_alpha_bar_on_x_t,
        "a (B,) variance that does not broadcast: reshape it to (B, 1, ..., 1)": _qp_flat,
    },
)

# --- Exercise 4 (core): normal_kl(mean_1, var_1, mean_2, var_2) ---


def _kl_swapped(mean_1, var_1, mean_2, var_2):
    return forward.normal_kl(mean_2, var_2, mean_1, var_1)


def _kl_std_as_var(mean_1, var_1, mean_2, var_2):
    return forward.normal_kl(mean_1, var_1**2, mean_2, var_2**2)


def _kl_no_half(mean_1, var_1, mean_2, var_2):
    return 2 * forward.normal_kl(mean_1, var_1, mean_2, var_2)


def _kl_no_minus_one(mean_1, var_1, mean_2, var_2):
    return forward.normal_kl(mean_1, var_1, mean_2, var_2) + 0.5


normal_kl = dict(
    hint=[
        "Two identical Gaussians must give exactly 0; and KL is not symmetric: which distribution is the expectation under?",
        "Work per coordinate: E_1[log N_1 - log N_2]; the arguments are variances, not standard deviations.",
        "0.5 * (log var_2 - log var_1 + (var_1 + (mean_1 - mean_2)^2) / var_2 - 1).",
    ],
    mistakes={
        "KL(N_2 || N_1): the two distributions swapped": _kl_swapped,
        "the variances treated as standard deviations (squared once more)": _kl_std_as_var,
        "the overall factor 1/2 forgotten": _kl_no_half,
        "the constant -1 forgotten (identical Gaussians do not give 0)": _kl_no_minus_one,
    },
)

# --- Exercise 5 (core): mean_from_eps(x_t, eps_hat, t, sched) ---


def mean_from_eps_via_x0(x_t: torch.Tensor, eps_hat: torch.Tensor, t: torch.Tensor, sched: Schedule) -> torch.Tensor:
    """dlib's route to the mean of p_theta(x_{t-1} | x_t): x_0_hat from eps_hat, then the posterior mean."""
    x_0_hat = forward.x0_from_eps(x_t, eps_hat, sched.at(sched.alpha_bar, t, x_t.ndim))
    return forward.q_posterior(x_0_hat, x_t, t, sched)[0]


def _mean_eps(x_t, eps_hat, t, sched, divide_by_alpha_bar=False, root=True, sign=1.0):
    n = x_t.ndim
    beta, alpha, a = (sched.at(v, t, n) for v in (sched.betas, sched.alphas, sched.alpha_bar))
    noise_sd = (1 - a).sqrt() if root else 1 - a
    return (x_t - sign * beta / noise_sd * eps_hat) / (a if divide_by_alpha_bar else alpha).sqrt()


def _me_alpha_bar(x_t, eps_hat, t, sched):
    return _mean_eps(x_t, eps_hat, t, sched, divide_by_alpha_bar=True)


def _me_no_sqrt(x_t, eps_hat, t, sched):
    return _mean_eps(x_t, eps_hat, t, sched, root=False)


def _me_sign(x_t, eps_hat, t, sched):
    return _mean_eps(x_t, eps_hat, t, sched, sign=-1.0)


def _me_x0_hat(x_t, eps_hat, t, sched):
    return forward.x0_from_eps(x_t, eps_hat, sched.at(sched.alpha_bar, t, x_t.ndim))


mean_from_eps = dict(
    reference=mean_from_eps_via_x0,
    hint=[
        "The formula mixes one-step and cumulative quantities: which factor undoes one forward step, and which "
        "measures all the noise accumulated so far?",
        "Divide by sqrt(alpha_t) (one step, sched.alphas), but scale eps_hat by beta_t / sqrt(1 - alpha_bar_t); "
        "this is the mean of x_{t-1}, not the estimate of x_0.",
        "mu_theta = (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps_hat) / sqrt(alpha_t).",
    ],
    mistakes={
        "sqrt(alpha_bar_t) where the one-step sqrt(alpha_t) belongs in the denominator": _me_alpha_bar,
        "a missing square root on 1 - alpha_bar_t": _me_no_sqrt,
        "the sign of the noise term: the predicted noise is taken out of x_t, not added": _me_sign,
        "the estimate x_0_hat of x_0 rather than the mean of x_{t-1}": _me_x0_hat,
    },
)

# --- Exercise 6 (find the bugs): fixed_l_simple(eps_model, x_0, t, eps, sched) ---


def l_simple_reference(eps_model, x_0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, sched: Schedule):
    """dlib's per-sample L_simple, with the arguments in the order of the notebook's buggy function."""
    return forward.l_simple(eps_model, x_0, sched, t=t, eps=eps)


def _l_simple_with(eps_model, x_0, t, eps, a):
    x_t = a.sqrt() * x_0 + (1 - a).sqrt() * eps
    return ((eps_model(x_t, t) - eps) ** 2).flatten(1).mean(1)


def _ls_alpha(eps_model, x_0, t, eps, sched):
    return _l_simple_with(eps_model, x_0, t, eps, sched.at(sched.alphas, t, x_0.ndim))


def _ls_flat(eps_model, x_0, t, eps, sched):
    return _l_simple_with(eps_model, x_0, t, eps, sched.alpha_bar[t])


fix_l_simple = dict(
    reference=l_simple_reference,
    hint=[
        "There are two bugs: one in which schedule array is read, one in the shape of what is read.",
        "The closed form q(x_t | x_0) needs the cumulative alpha_bar_t, not alpha_t; and the per-sample coefficient "
        "must have shape (B, 1, ..., 1) to broadcast over every dimension but the batch.",
        "a = sched.at(sched.alpha_bar, t, x_0.ndim); x_t = sqrt(a) x_0 + sqrt(1 - a) eps; "
        "return ((eps_model(x_t, t) - eps) ** 2).flatten(1).mean(1).",
    ],
    mistakes={
        "alpha_t (sched.alphas) still where alpha_bar_t belongs; the shape is fixed": _ls_alpha,
        "a (B,) coefficient that does not broadcast: reshape it to (B, 1, ..., 1); alpha_bar is fixed": _ls_flat,
    },
)
