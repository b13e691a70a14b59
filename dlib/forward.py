"""The forward (noising) process q and the training objectives built on it.

Derived in notebook 01. Shapes: x_0, x_t, eps are (B, ...); t is a long tensor of shape (B,)
with 0 <= t <= T-1 (t = 0 is the first noise level, the paper's t = 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dlib.schedules import Schedule
from dlib.utils import randn_like

EpsModel = Callable[..., torch.Tensor]  # eps_model(x_t, t, **cond) -> eps_hat
PREDICTIONS = ("eps", "x_0", "v")


def q_sample(x_0: torch.Tensor, t: torch.Tensor, sched: Schedule, eps: torch.Tensor | None = None) -> torch.Tensor:
    """Sample q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (DDPM eq. 4).

    With ``eps`` given the result is deterministic: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
    """
    eps = _noise_like(x_0, eps)
    _check_batch(x_0, t)
    s64 = sched.float64()
    a, one_minus_a = (sched.at(s64[k], t, x_0.ndim).to(x_0.dtype) for k in ("alpha_bar", "one_minus_alpha_bar"))
    return a.sqrt() * x_0 + one_minus_a.sqrt() * eps


def q_step(x_prev: torch.Tensor, t: torch.Tensor, sched: Schedule, eps: torch.Tensor | None = None) -> torch.Tensor:
    """Sample one Markov step q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) (DDPM eq. 2).

    For t = 0, ``x_prev`` is the data x_0.
    """
    eps = _noise_like(x_prev, eps)
    _check_batch(x_prev, t)
    beta = sched.at(sched.betas, t, x_prev.ndim)
    return (1 - beta).sqrt() * x_prev + beta.sqrt() * eps


def q_posterior(
    x_0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, sched: Schedule
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0) (DDPM eqs. 6-7).

    mean = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t) x_0 + (1 - alpha_bar_{t-1}) sqrt(alpha_t) / (1 - alpha_bar_t) x_t
    var  = beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t, shape (B, 1, ..., 1).
    At t = 0, alpha_bar_{-1} = 1: the mean is x_0 and the variance 0.
    """
    if x_0.shape != x_t.shape:
        raise ValueError(f"x_0 and x_t must have the same shape, got {tuple(x_0.shape)} and {tuple(x_t.shape)}")
    _check_batch(x_t, t)
    s64 = sched.float64()  # float64: the coefficients divide by 1 - alpha_bar, tiny at small t
    coefs = posterior_coefs(s64["alpha_bar"], s64["alpha_bar_prev"], s64["betas"])  # each (T,)
    coef_x0, coef_xt, var = (sched.at(c, t, x_t.ndim).to(x_t.dtype) for c in coefs)
    return coef_x0 * x_0 + coef_xt * x_t, var


def posterior_coefs(alpha_bar_t, alpha_bar_prev, beta_t=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q(x_prev | x_t, x_0) between any two noise levels: mean = coef_x0 x_0 + coef_xt x_t, and var.

    With beta_t = 1 - alpha_bar_t / alpha_bar_prev (one DDPM step, or a respaced jump over several;
    pass ``beta_t`` when it is known exactly, since the ratio of two float32 numbers near 1 loses
    digits) and alpha_t = 1 - beta_t:
    coef_x0 = beta_t sqrt(alpha_bar_prev) / (1 - alpha_bar_t), coef_xt = (1 - alpha_bar_prev) sqrt(alpha_t) / (1 - alpha_bar_t),
    var = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta_t (beta_tilde).
    """
    # Python floats become float64 (not float32): 1 - alpha_bar near t = 0 needs the digits.
    a, a_prev = (
        torch.as_tensor(v, dtype=torch.float64) if not torch.is_tensor(v) else v for v in (alpha_bar_t, alpha_bar_prev)
    )
    beta = 1 - a / a_prev if beta_t is None else torch.as_tensor(beta_t)
    return beta * a_prev.sqrt() / (1 - a), (1 - a_prev) * (1 - beta).sqrt() / (1 - a), (1 - a_prev) / (1 - a) * beta


VARIANCES = ("fixed_small", "fixed_large")


def p_variance(alpha_bar_t, alpha_bar_prev, variance: str = "fixed_small", beta_t=None) -> torch.Tensor:
    """The variance of the reverse step p(x_prev | x_t) (DDPM sec. 3.2): the posterior's beta_tilde
    ("fixed_small", the lower bound for deterministic data) or the jump's beta ("fixed_large", the upper
    bound for N(0, I) data), between any two noise levels; float64."""
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    var_tilde = posterior_coefs(alpha_bar_t, alpha_bar_prev, beta_t)[2]
    if variance == "fixed_small":
        return var_tilde
    a, a_prev = (torch.as_tensor(v, dtype=torch.float64) for v in (alpha_bar_t, alpha_bar_prev))
    return 1 - a / a_prev if beta_t is None else torch.as_tensor(beta_t, dtype=torch.float64)


# --- eps <-> x_0 <-> v. alpha_bar_t is a float or a tensor broadcastable to x_t. ---


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t): invert q_sample."""
    a = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def eps_from_x0(x_t: torch.Tensor, x_0: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    """eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    a = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    return (x_t - a.sqrt() * x_0) / (1 - a).sqrt()


def v_from_x0_eps(x_0: torch.Tensor, eps: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho 2022)."""
    a = torch.as_tensor(alpha_bar_t, dtype=x_0.dtype, device=x_0.device)
    return a.sqrt() * eps - (1 - a).sqrt() * x_0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
    a = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    return a.sqrt() * x_t - (1 - a).sqrt() * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    """eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v."""
    a = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    return (1 - a).sqrt() * x_t + a.sqrt() * v


# --- the variational bound ---


def normal_kl(mean_1, var_1, mean_2, var_2) -> torch.Tensor:
    """KL(N(mean_1, var_1) || N(mean_2, var_2)), elementwise, in nats."""
    var_1, var_2 = torch.as_tensor(var_1), torch.as_tensor(var_2)
    return 0.5 * (torch.log(var_2) - torch.log(var_1) + (var_1 + (mean_1 - mean_2) ** 2) / var_2 - 1)


def discretized_gaussian_log_likelihood(x_0: torch.Tensor, mean: torch.Tensor, var) -> torch.Tensor:
    """log p(x_0) per element for data on 256 levels in [-1, 1] under N(mean, var) (DDPM eq. 13).

    Each 8-bit value owns a bin of width 2/255; the edge bins extend to -inf and +inf.
    """
    if x_0.shape != mean.shape:
        raise ValueError(f"x_0 and mean must have the same shape, got {tuple(x_0.shape)} and {tuple(mean.shape)}")
    std = torch.as_tensor(var, dtype=mean.dtype, device=mean.device).sqrt()
    upper = torch.special.ndtr((x_0 - mean + 1 / 255) / std)
    lower = torch.special.ndtr((x_0 - mean - 1 / 255) / std)
    upper = torch.where(x_0 > 0.999, torch.ones_like(upper), upper)
    lower = torch.where(x_0 < -0.999, torch.zeros_like(lower), lower)
    return torch.log((upper - lower).clamp(min=1e-12))


def vlb_terms(
    eps_model: EpsModel, x_0: torch.Tensor, sched: Schedule, *, variance: str = "fixed_small", generator=None
) -> dict[str, torch.Tensor]:
    """The variational bound, term by term, in bits per dimension (DDPM eq. 5).

    Returns ``prior`` (B,): L_T = KL(q(x_{T-1} | x_0) || N(0, I)) in our indexing;
    ``terms`` (B, T): column 0 is the decoder term L_0 = -log p(x_0 | x at t=0) (discretised
    Gaussian), column t >= 1 is KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)); and ``total`` (B,).
    p's mean is the posterior mean at x_0_hat = x0_from_eps(x_t, eps_hat); its variance is
    beta_tilde_t ("fixed_small") or beta_t ("fixed_large"), as in DDPM section 3.2.
    """
    B, T, n = x_0.shape[0], sched.T, x_0.ndim
    if T < 2:
        raise ValueError("vlb_terms needs T >= 2")
    dims = list(range(1, n))
    per_dim = math.log(2.0) * x_0[0].numel()  # nats summed over a sample -> bits per dimension

    t_last = torch.full((B,), T - 1, dtype=torch.long, device=x_0.device)
    mean_T = sched.at(sched.alpha_bar, t_last, n).sqrt() * x_0
    var_T = 1 - sched.at(sched.alpha_bar, t_last, n)
    prior = normal_kl(mean_T, var_T, torch.zeros_like(x_0), 1.0).sum(dims) / per_dim

    # beta_tilde at t = 0 is 0; like improved-diffusion, use beta_tilde_1 as the decoder variance.
    s64 = sched.float64()
    p_var = p_variance(s64["alpha_bar"], s64["alpha_bar_prev"], variance, s64["betas"]).to(x_0.dtype)
    p_var[0] = posterior_coefs(s64["alpha_bar"][1], s64["alpha_bar_prev"][1], s64["betas"][1])[2]

    terms = torch.empty(B, T, device=x_0.device)
    for i in range(T):
        t = torch.full((B,), i, dtype=torch.long, device=x_0.device)
        x_t = q_sample(x_0, t, sched, _noise_like(x_0, None, generator))
        x_0_hat = x0_from_eps(x_t, eps_model(x_t, t), sched.at(sched.alpha_bar, t, n))
        mean_p, _ = q_posterior(x_0_hat, x_t, t, sched)
        var_p = sched.at(p_var, t, n)
        if i == 0:
            terms[:, 0] = -discretized_gaussian_log_likelihood(x_0, mean_p, var_p).sum(dims) / per_dim
        else:
            mean_q, var_q = q_posterior(x_0, x_t, t, sched)
            terms[:, i] = normal_kl(mean_q, var_q, mean_p, var_p).sum(dims) / per_dim
    return {"prior": prior, "terms": terms, "total": prior + terms.sum(1)}


def l_simple(
    model: EpsModel,
    x_0: torch.Tensor,
    sched: Schedule,
    *,
    prediction: str = "eps",
    t: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    **cond,
) -> torch.Tensor:
    """L_simple (DDPM eq. 14): E_{t, x_0, eps} ||target - model(x_t, t)||^2, t ~ U{0..T-1}.

    ``prediction`` picks the target: "eps" (DDPM), "x_0", or "v" (Salimans & Ho 2022). Returns
    the per-sample loss, shape (B,); take ``.mean()`` for the batch objective.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    B = x_0.shape[0]
    if t is None:
        t = torch.randint(0, sched.T, (B,), generator=generator, device=generator.device if generator else x_0.device)
        t = t.to(x_0.device)
    eps = _noise_like(x_0, eps, generator)
    x_t = q_sample(x_0, t, sched, eps)
    if prediction == "eps":
        target = eps
    elif prediction == "x_0":
        target = x_0
    else:
        target = v_from_x0_eps(x_0, eps, sched.at(sched.alpha_bar, t, x_0.ndim))
    out = model(x_t, t, **cond)
    return mse_per_example(out, target)


def mse_per_example(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||out - target||^2 averaged over all but the batch dimension: shape (B,). The regression every
    diffusion and flow-matching loss ends in."""
    if out.shape != target.shape:
        raise ValueError(f"model output shape {tuple(out.shape)} does not match the target's {tuple(target.shape)}")
    return ((out - target) ** 2).flatten(1).mean(1)


def _noise_like(x: torch.Tensor, eps: torch.Tensor | None, generator: torch.Generator | None = None) -> torch.Tensor:
    if eps is None:
        return randn_like(x, generator)
    if eps.shape != x.shape:
        raise ValueError(f"eps must have the shape of the data {tuple(x.shape)}, got {tuple(eps.shape)}")
    return eps


def _check_batch(x: torch.Tensor, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.shape[0] != x.shape[0]:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"t must be a tensor of shape (B,) = ({x.shape[0]},) matching x's batch, got {shape}")
