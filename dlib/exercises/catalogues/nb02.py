"""Notebook 02 (noise schedules): hints, catalogued mistakes and references of its checked exercises.

One dict per exercise, passed whole to its checker (``check_function(..., **nb02.cosine_betas)``). The
wrong implementations imitate what a learner plausibly writes; each must be told apart from the
reference by the notebook's test cases (``DLIB_REQUIRE_SOLVED=1`` checks it).
"""

from __future__ import annotations

import math

import torch

from dlib.schedules import cosine, from_betas, rescale_zero_terminal_snr

# --- Warm-up: the log-SNR of every step, from the betas ---


def log_snr_of_betas(betas: torch.Tensor) -> torch.Tensor:
    """dlib's ``Schedule.log_snr`` of these betas: float64 from the betas, stored in float32."""
    return from_betas(betas).log_snr


def _log_snr_float32(betas):
    alpha_bar = torch.cumprod(1 - betas.float(), 0)  # 1 - alpha_bar keeps ~3 digits near 1
    return torch.log(alpha_bar / (1 - alpha_bar))


log_snr = dict(
    reference=log_snr_of_betas,
    hint=[
        "Where is 1 - alpha_bar_t hardest to compute accurately, and what does float32 keep of a number close to 1?",
        "Work in float64 and in logs: log alpha_bar_t is a cumulative sum of log(1 - beta), and log(1 - alpha_bar_t) "
        "has an exact form in terms of log alpha_bar_t (torch.expm1).",
        "log alpha_bar = cumsum(log1p(-betas.double())); log(1 - alpha_bar) = log(-expm1(log alpha_bar)); "
        "lambda = their difference.",
    ],
    mistakes={
        "the log-SNR with the sign flipped: log((1 - alpha_bar) / alpha_bar), noise over signal": lambda betas: (
            -log_snr_of_betas(betas)
        ),
        "alpha_bar and 1 - alpha_bar computed in float32 (1 - alpha_bar loses its digits near 1)": _log_snr_float32,
    },
)

# --- Exercise 1: the cosine schedule's betas ---


def _cosine_betas(T, s=0.008, max_beta=0.999, *, points=1, rescale=True, clip=True, dtype=torch.float64):
    u = torch.arange(T + points, dtype=dtype) / T
    f = torch.cos((u + s) / ((1 + s) if rescale else 1) * math.pi / 2) ** 2
    betas = 1 - f[1:] / f[:-1]
    return (torch.clamp(betas, max=max_beta) if clip else betas).double()  # float32 digits are lost before the cast


def dlib_cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """dlib's cosine betas as float64 (stored in float32, relative rounding 6e-8: float32 arithmetic cannot match)."""
    return cosine(T, s=s, max_beta=max_beta).float64()["betas"]


cosine_betas = dict(
    reference=dlib_cosine_betas,
    hint=[
        "beta_t is one minus a ratio of two neighbouring values of alpha_bar on a grid over [0, 1]; what happens at the "
        "last step, where f reaches 0, and in which precision is 1 - ratio safe?",
        "Use the T + 1 grid points u = k / T (k = 0..T) in float64; f(0) cancels in the ratio, so f is enough; "
        "clip the result at max_beta.",
        "u = arange(T + 1, dtype=float64) / T; f = cos((u + s) / (1 + s) * pi / 2) ** 2; "
        "beta = clamp(1 - f[1:] / f[:-1], max=max_beta).",
    ],
    mistakes={
        "no clip at max_beta (the last beta is 1, or above max_beta)": lambda T, s=0.008, max_beta=0.999: _cosine_betas(
            T, s, max_beta, clip=False
        ),
        "the offset s not rescaled: (u + s) / (1 + s), so that the grid ends at f = 0": lambda T, s=0.008, max_beta=0.999: (
            _cosine_betas(T, s, max_beta, rescale=False)
        ),
        "a grid of T points where T + 1 are needed (T betas are T ratios of neighbours)": lambda T, s=0.008, max_beta=0.999: (
            _cosine_betas(T, s, max_beta, points=0)
        ),
        "float32 arithmetic (cast or not): 1 - f(u') / f(u) loses its digits when beta is small": lambda T, s=0.008, max_beta=0.999: (
            _cosine_betas(T, s, max_beta, dtype=torch.float32)
        ),
    },
)

# --- Exercise 2 (derive): the cosine schedule's log-SNR in closed form ---


def _cosine_log_snr(u, s=0.008, *, rescale=True, normalise=True):
    """lambda(u) = logit(f(u) / f(0)) written with theta, in float64 (the keywords make the mistakes)."""
    theta = (u + s) / ((1 + s) if rescale else 1) * math.pi / 2
    theta_0 = torch.tensor(s / ((1 + s) if rescale else 1) * math.pi / 2, dtype=torch.float64)
    noise = torch.sin(theta) ** 2 - (torch.sin(theta_0) ** 2 if normalise else 0)  # f(0) - f(u), up to f(0)
    return 2 * torch.log(torch.cos(theta)) - torch.log(noise)


def exact_cosine_log_snr(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """The cosine schedule's continuous log-SNR lambda(u) = log SNR(u), exact (f(0) kept), float64."""
    return _cosine_log_snr(u, s)


cosine_log_snr = dict(
    reference=exact_cosine_log_snr,
    hint=[
        "Write SNR = alpha_bar / (1 - alpha_bar) with alpha_bar(u) = f(u) / f(0): the factor 1 / f(0) cancels from the "
        "ratio except in one place. Which?",
        "With theta = pi/2 (u + s)/(1 + s) and theta_0 its value at u = 0, f(0) - f(u) = sin^2 theta - sin^2 theta_0; "
        "take the log of the ratio, in float64.",
        "lambda(u) = 2 log cos theta - log(sin^2 theta - sin^2 theta_0) = -2 log tan theta - log(1 - sin^2 theta_0 / "
        "sin^2 theta).",
    ],
    mistakes={
        "the normalisation by f(0) dropped: -2 log tan theta is exact only for s = 0": lambda u, s=0.008: (
            _cosine_log_snr(u, s, normalise=False)
        ),
        "the sign flipped: log of noise over signal": lambda u, s=0.008: -_cosine_log_snr(u, s),
        "the factor 2 missing: SNR is a ratio of squares (cos^2 over sin^2)": lambda u, s=0.008: (
            _cosine_log_snr(u, s) / 2
        ),
        "the offset s not rescaled: theta = pi/2 (u + s)/(1 + s), not pi/2 (u + s)": lambda u, s=0.008: _cosine_log_snr(
            u, s, rescale=False
        ),
    },
)

# --- Exercise 3: zero-terminal-SNR rescaling (Lin et al. 2023, Algorithm 1) ---


def _rescale(betas, first_alpha_one=False, square=True, scale=True):
    a = torch.cumprod(1 - betas.double(), 0).sqrt()
    a0, a_last = a[0].clone(), a[-1].clone()
    a = (a - a_last) * (a0 / (a0 - a_last) if scale else 1)
    alpha_bar = a**2 if square else a
    first = torch.ones(1, dtype=alpha_bar.dtype) if first_alpha_one else alpha_bar[:1]
    return 1 - torch.cat([first, alpha_bar[1:] / alpha_bar[:-1]])


def dlib_rescaled_betas(betas: torch.Tensor) -> torch.Tensor:
    """dlib's zero-terminal-SNR rescaling of a schedule given by its betas."""
    return rescale_zero_terminal_snr(from_betas(betas)).betas


rescale_zero_snr = dict(
    reference=dlib_rescaled_betas,
    hint=[
        "The algorithm works on sqrt(alpha_bar), not on alpha_bar or the betas: which two values of it does it pin?",
        "Shift sqrt(alpha_bar) so its last value is 0 and scale it so its first value is unchanged; square it back, "
        "then recover one-step alphas as ratios of neighbours (the first alpha is alpha_bar_0 itself).",
        "a = sqrt(cumprod(1 - betas)); a = (a - a[-1]) * a[0] / (a[0] - a[-1]); alpha_bar = a**2; "
        "alphas = cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]]); return 1 - alphas.",
    ],
    mistakes={
        "the first alpha set to 1 (beta_0 = 0) instead of alpha_bar_0": lambda betas: _rescale(
            betas, first_alpha_one=True
        ),
        "sqrt(alpha_bar) rescaled but not squared back": lambda betas: _rescale(betas, square=False),
        "shifted without rescaling, so alpha_bar_0 changes": lambda betas: _rescale(betas, scale=False),
    },
)
