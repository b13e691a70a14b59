"""Noise schedules as plain data: betas, alphas, alpha_bar (and snr, log_snr) for t = 0..T-1.

Derived in notebook 02. The float32 ``betas`` *are* the schedule: every builder rounds its
betas to float32 first, computes everything else from them in float64, and stores float32. So
``alpha_bar`` carries no accumulated rounding, and ``Schedule.float64()`` recomputes the same
values exactly wherever float32 is not enough (1 - alpha_bar near t = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dlib.utils import append_dims

MAX_BETA = 0.999  # Nichol & Dhariwal (2021) clip beta below 1 to avoid a singularity at t = T-1


@dataclass(frozen=True)
class Schedule:
    """A discrete variance schedule. All tensors have shape (T,); index t runs 0..T-1.

    ``betas[t]`` is the variance added by step t (the paper's beta_{t+1}); ``alpha_bar[t]`` is
    the fraction of signal variance left after steps 0..t, so x_t = sqrt(alpha_bar[t]) x_0 +
    sqrt(1 - alpha_bar[t]) eps.
    """

    name: str
    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bar: torch.Tensor

    @property
    def T(self) -> int:
        return self.betas.shape[0]

    @property
    def alpha_bar_prev(self) -> torch.Tensor:
        """alpha_bar at t-1, with alpha_bar_{-1} = 1 (no noise before the first step)."""
        return torch.cat([self.alpha_bar.new_ones(1), self.alpha_bar[:-1]])

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) (Kingma et al. 2021), from float64."""
        s = self.float64()
        return (s["alpha_bar"] / s["one_minus_alpha_bar"]).float()

    @property
    def log_snr(self) -> torch.Tensor:
        """lambda_t = log SNR(t), from float64; -inf at a zero-terminal-SNR end point."""
        s = self.float64()
        return (torch.log(s["alpha_bar"]) - torch.log(s["one_minus_alpha_bar"])).float()

    def float64(self) -> dict[str, torch.Tensor]:
        """betas, alpha_bar, alpha_bar_prev and 1 - alpha_bar recomputed in float64 from the stored betas.

        A float32 alpha_bar near 1 keeps only about four digits of 1 - alpha_bar at t = 0 (ulp 6e-8
        against 1e-4), so formulas that divide by 1 - alpha_bar (the posterior, q_sample's noise
        scale) take their coefficients from here and cast the result to the data's dtype.
        """
        betas = self.betas.double()  # exactly the betas every other field was computed from
        alpha_bar = torch.cumprod(1 - betas, 0)
        prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
        return {
            "betas": betas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": prev,
            "one_minus_alpha_bar": -torch.expm1(torch.cumsum(torch.log1p(-betas), 0)),
        }

    def to(self, device: torch.device | str) -> Schedule:
        return Schedule(self.name, *(getattr(self, k).to(device) for k in ("betas", "alphas", "alpha_bar")))

    def at(self, values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """Look up ``values[t]`` for a batch of time indices and broadcast to ``ndim`` dims.

        The single t-indexed lookup of the package: checks that ``t`` is an integer tensor in
        range, gathers on ``t``'s device, returns shape (B, 1, ..., 1).
        """
        check_t(t, self.T)
        return append_dims(values.to(t.device)[t], ndim)


# --- the schedule at any noise level: sigma space, used by the ODE samplers (notebook 05) ---


def sigmas(sched: Schedule) -> torch.Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) for t = 0..T-1, float64, shape (T,): the noise
    level of x_t / sqrt(alpha_bar_t) = x_0 + sigma_t eps (Karras et al. 2022), 1 / sqrt(SNR)."""
    s = sched.float64()
    return (s["one_minus_alpha_bar"] / s["alpha_bar"]).sqrt()


def t_of_sigma(sched: Schedule, sigma) -> torch.Tensor:
    """The (fractional) time index with noise level ``sigma``: log sigma interpolated linearly between
    neighbouring integer indices, clamped to [0, T-1]. Exact (an integer) at the table's own sigmas."""
    log_s = torch.as_tensor(sigma, dtype=torch.float64).clamp(min=1e-30).log()
    log_table = sigmas(sched).log().to(log_s.device)
    hi = torch.searchsorted(log_table, log_s).clamp(1, sched.T - 1)
    w = ((log_s - log_table[hi - 1]) / (log_table[hi] - log_table[hi - 1])).clamp(0, 1)
    return hi - 1 + w


def sigma_of_t(sched: Schedule, t) -> torch.Tensor:
    """The inverse of ``t_of_sigma``: sigma at a fractional index t in [0, T-1] (log-linear)."""
    t = torch.as_tensor(t, dtype=torch.float64).clamp(0, sched.T - 1)
    log_table = sigmas(sched).log().to(t.device)
    lo = t.floor().long().clamp(max=sched.T - 2)
    return (log_table[lo] + (t - lo) * (log_table[lo + 1] - log_table[lo])).exp()


def alpha_bar_of_sigma(sigma) -> torch.Tensor:
    """alpha_bar = 1 / (1 + sigma^2) at noise level sigma, float64: the inverse of ``sigmas`` (0 at sigma = inf)."""
    return 1 / (1 + torch.as_tensor(sigma, dtype=torch.float64) ** 2)


def alpha_bar_of_t(sched: Schedule, t) -> torch.Tensor:
    """alpha_bar at a fractional index t, float64: ``alpha_bar_of_sigma`` of ``sigma_of_t``."""
    return alpha_bar_of_sigma(sigma_of_t(sched, t))


def check_t(t: torch.Tensor, T: int) -> None:
    """Raise a clear error unless ``t`` is an integer tensor with 0 <= t <= T-1."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be an integer torch.Tensor of shape (B,), got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer time indices (torch.long), got dtype {t.dtype}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) > T - 1):
        raise ValueError(f"t must satisfy 0 <= t <= T-1 = {T - 1}; got values in [{int(t.min())}, {int(t.max())}]")


def from_betas(betas: torch.Tensor, name: str = "custom") -> Schedule:
    """Build a Schedule from betas: alphas = 1 - betas, alpha_bar = cumprod(alphas).

    The betas are rounded to float32 first and everything else is computed from those in float64,
    so the stored fields are mutually consistent to float32 rounding.
    """
    betas = torch.as_tensor(betas, dtype=torch.float64).float().double()
    if betas.ndim != 1 or betas.numel() == 0:
        raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
    if not bool(((betas > 0) & (betas <= 1)).all()):
        raise ValueError(f"betas must lie in (0, 1]; got min {float(betas.min()):.3g}, max {float(betas.max()):.3g}")
    alphas = 1.0 - betas
    alpha_bar = torch.cumprod(alphas, dim=0)
    return Schedule(name, betas.float(), alphas.float(), alpha_bar.float())


def betas_from_alpha_bar(alpha_bar_fn, T: int, max_beta: float = MAX_BETA) -> torch.Tensor:
    """Discretise a continuous alpha_bar(s), s in [0, 1], into T betas (Nichol & Dhariwal eq. 17).

    beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T), clipped at ``max_beta``.
    """
    s = torch.arange(T + 1, dtype=torch.float64) / T
    a = alpha_bar_fn(s)
    return torch.clamp(1 - a[1:] / a[:-1], max=max_beta)


def linear(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """DDPM's linear schedule (Ho et al. 2020): betas evenly spaced from 1e-4 to 0.02 for T = 1000."""
    _check_T(T)
    return from_betas(torch.linspace(beta_start, beta_end, T, dtype=torch.float64), "linear")


def scaled_linear(T: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> Schedule:
    """Latent/Stable Diffusion's schedule: sqrt(beta) evenly spaced, then squared."""
    _check_T(T)
    betas = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=torch.float64) ** 2
    return from_betas(betas, "scaled_linear")


def cosine(T: int = 1000, s: float = 0.008, max_beta: float = MAX_BETA) -> Schedule:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17): alpha_bar(u) = f(u)/f(0),
    f(u) = cos(((u + s)/(1 + s)) * pi/2)^2 with u = t/T; betas clipped at 0.999.

    Note f(0) cancels in the ratio alpha_bar(u')/alpha_bar(u), so betas do not depend on it.
    """
    _check_T(T)

    def f(u):
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return from_betas(betas_from_alpha_bar(f, T, max_beta), "cosine")


def sigmoid(T: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> Schedule:
    """Sigmoid schedule (Jabri et al. 2022; Chen 2023, 'On the importance of noise scheduling').

    alpha_bar(u) = (sigmoid(end/tau) - sigmoid((u (end - start) + start)/tau))
                   / (sigmoid(end/tau) - sigmoid(start/tau)).
    Not the same as diffusers' ``beta_schedule="sigmoid"``, which puts a sigmoid on the betas.
    """
    _check_T(T)
    if not start < end:
        raise ValueError(f"sigmoid schedule needs start < end, got start={start}, end={end}")
    v_start, v_end = (
        torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64)),
        torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64)),
    )

    def f(u):
        return (v_end - torch.sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)

    return from_betas(betas_from_alpha_bar(f, T), "sigmoid")


def rescale_zero_terminal_snr(sched: Schedule) -> Schedule:
    """Shift and scale sqrt(alpha_bar) so that alpha_bar[T-1] = 0 exactly (Lin et al. 2023, Alg. 1).

    sqrt(alpha_bar[0]) is kept; the last step then has beta = 1: x_{T-1} is pure noise, matching
    what sampling starts from. Use with v-prediction (eps-prediction is undefined at SNR 0).
    """
    a = torch.cumprod(1 - sched.betas.double(), 0).sqrt()
    a0, aT = a[0].clone(), a[-1].clone()
    a = (a - aT) * a0 / (a0 - aT)
    alpha_bar = a**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return from_betas(1 - alphas, f"{sched.name}+zero_snr")


BUILDERS = {"linear": linear, "scaled_linear": scaled_linear, "cosine": cosine, "sigmoid": sigmoid}


def get_schedule(name: str, T: int = 1000, *, zero_terminal_snr: bool = False, **kwargs) -> Schedule:
    """Build a schedule by name: one of 'linear', 'scaled_linear', 'cosine', 'sigmoid'."""
    if name not in BUILDERS:
        raise ValueError(f"unknown schedule {name!r}; expected one of {sorted(BUILDERS)}")
    sched = BUILDERS[name](T, **kwargs)
    return rescale_zero_terminal_snr(sched) if zero_terminal_snr else sched


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> torch.Tensor:
    """n noise levels from sigma_max down to sigma_min, equally spaced in sigma^(1/rho)
    (Karras et al. 2022, eq. 5; rho = 7 crowds the steps at low noise). float64, shape (n,)."""
    if n < 1:
        raise ValueError(f"need at least 1 noise level, got n={n}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def _check_T(T: int) -> None:
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
