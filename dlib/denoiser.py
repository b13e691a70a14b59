"""One model interface: whatever a network predicts, the samplers see a denoiser. Notebooks 04-05, 11-12.

Every noising process of the course writes the noisy state the same way (Karras et al. 2022, eq. 4 in
their notation s(t), sigma(t)):

    x = s (x_0 + sigma eps),      signal coefficient a = s,   noise coefficient b = s sigma

``sigma`` is the noise level of the scaled state x_bar = x / s = x_0 + sigma eps (the samplers' sigma),
and the processes differ only in the scale s(sigma) and in the time the network is told:

    process  x in the process's own words           s(sigma)              network time
    VP       sqrt(alpha_bar) x_0 + sqrt(1-alpha_bar) eps  1 / sqrt(1 + sigma^2)  t = t(sigma), the integer index (DDPM)
    Flow     (1 - t) x_0 + t eps, t in [0, 1]        1 / (1 + sigma)        1000 t, t = sigma / (1 + sigma)
    VE       x_0 + sigma eps                          1                      log(sigma) / 4 (EDM's c_noise)

What the network predicts is converted to the pair (x_0_hat, eps_hat) by one small function per
parameterisation (``PREDICTIONS``), each written with the coefficients a and b so that it stays
finite where it can: a v- or flow-model at pure noise (a = 0, sigma = inf) is fine, an eps-model
there cannot say anything about x_0 and raises.

    eps    eps_hat = out                    x_0_hat = (x - b eps_hat) / a
    x_0    x_0_hat = out                    eps_hat = (x - a x_0_hat) / b
    v      x_0_hat = a x - b v              eps_hat = b x + a v              (VP: a^2 + b^2 = 1; Salimans & Ho 2022)
    flow   x_0_hat = x - b v_flow           eps_hat = x + a v_flow           (v_flow = eps - x_0 = dx/dt; Flow: a + b = 1)
    score  x_0_hat = (x + b^2 score) / a    eps_hat = -b score               (score = grad_x log p(x); Tweedie's formula)
    edm    x_0_hat = c_skip x_bar + c_out F(c_in x_bar)                       (Karras et al. 2022, Table 1)

A consistency model (notebook 12) is an x_0-predictor with its skip connection inside the network.
A plain eps-model callable plus a ``Schedule`` is turned into a VP eps-denoiser by ``as_denoiser``,
so every sampler still accepts ``(eps_model, x_T, sched, steps)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from dlib.schedules import Schedule, alpha_bar_of_sigma, sigma_of_t, sigmas, t_of_sigma
from dlib.utils import append_dims


def _sigma64(sigma) -> torch.Tensor:
    return torch.as_tensor(sigma, dtype=torch.float64)


@dataclass(frozen=True)
class VP:
    """The discrete variance-preserving process of a ``Schedule`` (DDPM): s = sqrt(alpha_bar) = 1 / sqrt(1 + sigma^2).

    The network is trained at integer indices t; between them t(sigma) interpolates log sigma
    (``schedules.t_of_sigma``), as k-diffusion and diffusers do.
    """

    sched: Schedule
    default_spacing = None  # each sampler keeps its own default (trailing, karras, ...)

    def coefs(self, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) = (1 / sqrt(1 + sigma^2), sigma / sqrt(1 + sigma^2)), float64, finite at sigma = inf."""
        s = _sigma64(sigma)  # b = sqrt(1 - alpha_bar) written as rsqrt(1 + sigma^-2), to stay exact at small sigma
        return alpha_bar_of_sigma(s).sqrt(), torch.rsqrt(1 + s**-2)

    def time(self, sigma) -> torch.Tensor:
        return t_of_sigma(self.sched, sigma)

    def sigma_of_time(self, t: torch.Tensor) -> torch.Tensor:
        return sigma_of_t(self.sched, t)

    @property
    def sigma_range(self) -> tuple[float, float]:
        table = sigmas(self.sched)
        return table[0].item(), table[-1].item()


@dataclass(frozen=True)
class Flow:
    """The straight path x = (1 - t) x_0 + t eps of flow matching and rectified flow (Lipman et al. 2023;
    Liu et al. 2023): s = 1 - t = 1 / (1 + sigma). The network sees ``time_scale * t`` so that the
    sinusoidal time embedding (notebook 03) resolves t in [0, 1]. Sampling starts at t = 1 (sigma = inf)."""

    time_scale: float = 1000.0
    default_spacing = "uniform"

    @staticmethod
    def path(t):
        """(a, b) = (1 - t, t): the straight path from the data (t = 0) to the noise (t = 1)."""
        return 1 - t, t

    def coefs(self, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) = ``path(t)`` at t = sigma / (1 + sigma), float64, finite at sigma = inf."""
        return self.path(1 / (1 + 1 / _sigma64(sigma)))

    def time(self, sigma) -> torch.Tensor:
        return self.time_scale * self.coefs(sigma)[1]

    def sigma_of_time(self, time: torch.Tensor) -> torch.Tensor:
        t = time.double() / self.time_scale
        return t / (1 - t)

    @property
    def sigma_range(self) -> tuple[float, float]:
        return 0.0, math.inf


@dataclass(frozen=True)
class VE:
    """The variance-exploding process x = x_0 + sigma eps (Song & Ermon 2019; Karras et al. 2022): s = 1.
    The network sees log(sigma) / 4, EDM's c_noise. Sampling starts from N(0, sigma_max^2 I)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    default_spacing = "karras"

    def coefs(self, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        s = _sigma64(sigma)
        return torch.ones_like(s), s

    def time(self, sigma) -> torch.Tensor:
        return _sigma64(sigma).log() / 4

    def sigma_of_time(self, time: torch.Tensor) -> torch.Tensor:
        return (4 * time.double()).exp()

    @property
    def sigma_range(self) -> tuple[float, float]:
        return self.sigma_min, self.sigma_max


Process = VP | Flow | VE


class Prediction(NamedTuple):
    """What every sampler consumes: the denoised estimate and the noise estimate, on x's scale-free terms."""

    x_0: torch.Tensor
    eps: torch.Tensor


def _from_eps(out, x, a, b):
    return Prediction((x - b * out) / a, out)


def _from_x0(out, x, a, b):
    return Prediction(out, (x - a * out) / b)


def _from_v(out, x, a, b):
    return Prediction(a * x - b * out, b * x + a * out)


def _from_velocity(out, x, a, b):
    return Prediction(x - b * out, x + a * out)


def _from_score(out, x, a, b):  # Tweedie: E[x_0 | x] = (x + b^2 grad log p(x)) / a
    return Prediction((x + b**2 * out) / a, -b * out)


PREDICTIONS: dict[str, Callable] = {
    "eps": _from_eps,
    "x_0": _from_x0,
    "v": _from_v,
    "flow": _from_velocity,
    "score": _from_score,
}
PROCESS_OF = {"v": VP, "flow": Flow}  # parameterisations whose formula holds on one process only

# The inverses: what a network of each parameterisation outputs, given x_0 and eps at x = a x_0 + b eps.
OUTPUTS: dict[str, Callable] = {
    "eps": lambda x_0, eps, a, b: eps,
    "x_0": lambda x_0, eps, a, b: x_0,
    "v": lambda x_0, eps, a, b: a * eps - b * x_0,
    "flow": lambda x_0, eps, a, b: eps - x_0,
    "score": lambda x_0, eps, a, b: -eps / b,
}


def edm_coefs(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM's preconditioning (Karras et al. 2022, Table 1): c_skip, c_out, c_in at noise level sigma."""
    d2 = sigma**2 + sigma_data**2
    return sigma_data**2 / d2, sigma * sigma_data / d2.sqrt(), d2.rsqrt()


class Denoiser:
    """A network with what it predicts and on which process: ``denoiser(x, sigma, t=None, **cond) -> Prediction``.

    ``x`` is the network's own state (x_t for VP, the flow's x_t, x for VE), shape (B, ...); ``sigma``
    a float or a (B,) tensor; ``t`` optionally the exact network time (the samplers on integer indices
    pass it, so the network sees the same integer t it was trained on). ``prediction`` is one of
    ``PREDICTIONS`` or "edm" (``net`` is EDM's F, preconditioned with ``sigma_data``).
    """

    def __init__(self, net: Callable, prediction: str = "eps", process: Process | None = None, sigma_data: float = 0.5):
        if prediction not in (*PREDICTIONS, "edm"):
            raise ValueError(f"prediction must be one of {(*PREDICTIONS, 'edm')}, got {prediction!r}")
        if not isinstance(process, VP | Flow | VE):
            raise TypeError(f"process must be dlib.denoiser.VP(sched), Flow() or VE(), got {type(process).__name__}")
        needs = PROCESS_OF.get(prediction)
        if needs is not None and not isinstance(process, needs):
            raise ValueError(
                f"a {prediction!r}-prediction is defined on the {needs.__name__} process only, got {process}"
            )
        self.net, self.prediction, self.process, self.sigma_data = net, prediction, process, sigma_data

    def __call__(self, x: torch.Tensor, sigma, t=None, **cond) -> Prediction:
        a64, b64 = self.process.coefs(sigma)  # on the CPU: the check below costs no device sync
        if self.prediction in ("eps", "score", "edm") and bool((a64 == 0).any()):
            raise ValueError(
                f"an {self.prediction}-prediction at zero signal (sigma = inf: zero terminal SNR, or the flow's t = 1) "
                "says nothing about x_0; start one step later, or train a v-, x_0- or flow-model"
            )
        a, b = (append_dims(c, x.ndim).to(x.device, x.dtype) for c in (a64, b64))
        time = self.process.time(sigma) if t is None else torch.as_tensor(t, dtype=torch.float64)
        if self.prediction == "edm":
            c_skip, c_out, c_in = (append_dims(c, x.ndim).to(x) for c in edm_coefs(_sigma64(sigma), self.sigma_data))
            x_bar = x / a
            x_0 = c_skip * x_bar + c_out * self.net(c_in * x_bar, _batch_time(time, x), **cond)
            return Prediction(x_0, (x - a * x_0) / b)
        return PREDICTIONS[self.prediction](self.net(x, _batch_time(time, x), **cond), x, a, b)

    def __repr__(self) -> str:
        return (
            f"Denoiser({getattr(self.net, '__class__', type(self.net)).__name__}, {self.prediction!r}, {self.process})"
        )


def convert(den: Denoiser, prediction: str, process: Process) -> Callable:
    """The network ``net(x, time, **cond)`` of another parameterisation and process that predicts what ``den`` does:
    ``Denoiser(convert(den, prediction, process), prediction, process)`` returns den's Prediction at every
    (x_bar, sigma). Both processes write x = s (x_0 + sigma eps), so a state moves between them by the ratio of
    their scales, computed as (a + b) / (a' + b') = s / s' (finite at sigma = inf, where a = 0); the output
    is ``OUTPUTS[prediction]`` of den's (x_0_hat, eps_hat). An eps- or score-model cannot be read at sigma = inf.
    A diffusion model read as a flow's velocity field, or a flow model as an eps-model (notebook 11)."""
    if prediction not in OUTPUTS:
        raise ValueError(f"prediction must be one of {tuple(OUTPUTS)}, got {prediction!r}")
    Denoiser(lambda x, t: x, prediction, process)  # the same checks as the denoiser it will be read by

    def net(x: torch.Tensor, time: torch.Tensor, **cond) -> torch.Tensor:
        sigma = process.sigma_of_time(torch.as_tensor(time, dtype=torch.float64))
        a, b = process.coefs(sigma)
        a_den, b_den = den.process.coefs(sigma)
        ratio = append_dims((a_den + b_den) / (a + b), x.ndim).to(x)  # s_den / s: a + b = s (1 + sigma)
        pred = den(ratio * x, sigma, **cond)
        a, b = (append_dims(c, x.ndim).to(x) for c in (a, b))
        return OUTPUTS[prediction](pred.x_0, pred.eps, a, b)

    return net


def eps_model(den: Denoiser) -> Callable:
    """``eps_hat(x_t, t, **cond)`` of a VP Denoiser whatever its network predicts (the eps-model contract of notebooks
    05-08), calling the network at exactly the given t: an eps-denoiser's own output. Other processes: ``convert``."""
    if not (isinstance(den, Denoiser) and isinstance(den.process, VP)):
        raise TypeError(f"eps_model reads a Denoiser on a VP process (build_denoiser of a card), got {den!r}")

    def eps_hat(x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        t = torch.as_tensor(t)
        return den(x_t, den.process.sigma_of_time(t.double().cpu()), t=t.cpu(), **cond).eps

    return eps_hat


def euler_step(x_bar: torch.Tensor, eps_hat: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One Euler step of d x_bar / d sigma = eps_hat: x_bar + (sigma_next - sigma) eps_hat."""
    return x_bar + (sigma_next - sigma) * eps_hat


def heun_step(
    x_bar: torch.Tensor, eps_hat: torch.Tensor, eps_next: torch.Tensor, sigma: float, sigma_next: float
) -> torch.Tensor:
    """Heun's correction (the trapezoid rule): the slope is the mean of eps_hat at both ends."""
    return euler_step(x_bar, (eps_hat + eps_next) / 2, sigma, sigma_next)


def _batch_time(time: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The network's time as a (B,) tensor: long where every value is an integer (a trained index), else float."""
    time = time.expand(x.shape[0]) if time.ndim == 0 else time
    if bool((time == time.round()).all()):
        return time.long().to(x.device)
    return time.float().to(x.device)


def as_denoiser(model, sched=None) -> Denoiser:
    """``model`` if it is a Denoiser; else a VP eps-denoiser of the callable ``model(x_t, t, **cond)`` on ``sched``."""
    if isinstance(model, Denoiser):
        if sched is not None and not (isinstance(model.process, VP) and model.process.sched is sched):
            raise ValueError(
                "pass either a Denoiser (which knows its process) or an eps-model and its schedule, not both"
            )
        return model
    if not isinstance(sched, Schedule):
        raise TypeError(
            f"an eps-model needs its Schedule as the third argument (got {type(sched).__name__}); for other "
            "parameterisations wrap the network: Denoiser(net, prediction, VP(sched) | Flow() | VE())"
        )
    return Denoiser(model, "eps", VP(sched))
