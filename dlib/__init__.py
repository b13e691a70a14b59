"""dlib: the small, tested helper package behind the diffusion-models course.

The notebooks derive each formula once, check it against the function here, and from then on
call the function. Every formula lives in exactly one place.

Notation (one meaning per symbol; 0-indexed time, ``0 <= t <= T-1``, ``T-1`` the noisiest):

==============  ===============================================  ====================
name in code    meaning                                          paper symbol
==============  ===============================================  ====================
``T``           number of diffusion steps                        T
``t``           integer time index, 0-indexed (paper's t-1)      t
``betas``       per-step noise variance                          beta_t
``alphas``      ``1 - betas``                                    alpha_t
``alpha_bar``   cumulative product of ``alphas``                 bar{alpha}_t
``snr``         ``alpha_bar / (1 - alpha_bar)``                  SNR(t)
``log_snr``     ``log(snr)``                                     lambda_t
``x_0``         clean data                                       x_0
``x_t``         noisy sample at time index ``t``                 x_t
``eps``         standard Gaussian noise                          epsilon
``eps_hat``     a model's prediction of ``eps``                  epsilon_theta(x_t, t)
``x_0_hat``     an estimate of ``x_0`` from ``x_t``              hat{x}_0
``v``           ``sqrt(alpha_bar) eps - sqrt(1-alpha_bar) x_0``  v (Salimans & Ho)
``sigma``       ``sqrt((1-alpha_bar) / alpha_bar)``, ODE samplers  sigma (Karras et al.)
``x_bar``       ``x_t / sqrt(alpha_bar) = x_0 + sigma eps``       x (Karras et al.)
``s, a, b``     x = s (x_0 + sigma eps); a = s, b = s sigma      s(t) (Karras et al.)
``ell``         ``-log(sigma) = log_snr / 2`` (DPM-Solver)        Lu et al.'s lambda_t
==============  ===============================================  ====================

Index convention: the paper counts t = 1..T with x_0 the data. Here ``t = 0`` is the *first
noise level* (the paper's t = 1), exactly as diffusers' ``DDPMScheduler`` does, so
``sched.betas[t]`` is the paper's beta_{t+1}. Data is always called ``x_0``.

Data flows one way, in layers (docs/ARCHITECTURE.md; tests/test_architecture.py checks it):
leaves (utils, data, text, captions, ...) -> schedules -> forward, denoiser (the one model interface:
VP / Flow / VE processes and eps / x_0 / v / flow / score / EDM predictions) -> gaussian, nets ->
losses, conditioning -> config (TrainConfig, build_model, build_loss, build_denoiser) -> checkpoint
(state I/O, load_pretrained), recipes -> train (the loop) -> samplers -> guidance -> metrics, with
the command lines (python -m dlib.train, python -m dlib.evaluate) on top. No module imports a later one.
"""

from dlib import data, exercises, forward, schedules
from dlib.budget import pick, resolve_budget
from dlib.schedules import Schedule, get_schedule
from dlib.utils import append_dims, default_device


def load_pretrained(name: str, device="cpu"):
    """A shipped model by name: (model, schedule or None, card). See dlib.checkpoint.load_pretrained."""
    from dlib.checkpoint import load_pretrained as _load

    return _load(name, device)


__all__ = [
    "Schedule",
    "append_dims",
    "data",
    "default_device",
    "exercises",
    "forward",
    "get_schedule",
    "load_pretrained",
    "pick",
    "resolve_budget",
    "schedules",
]
