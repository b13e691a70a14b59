"""Guidance: turn a conditional model into one that follows its condition harder. Notebook 06.

Both kinds are wrappers that return an ordinary ``eps_model(x_t, t, **cond)``, so every sampler of
``dlib.samplers`` uses them unchanged. Notation (docs/NOTATION.md): w is Ho & Salimans' scale, gamma = 1 + w.

Classifier-free guidance (Ho & Salimans 2021) extrapolates from the unconditional prediction
eps_u = eps(x_t, t, null) towards the conditional one eps_c = eps(x_t, t, c). Two conventions for
the scale are in use, and they differ by one:

    "uncond" (diffusers, Imagen, Stable Diffusion):  eps_u + gamma (eps_c - eps_u)   gamma = 1: no guidance
    "cond"   (Ho & Salimans 2021, eq. 6):           (1 + w) eps_c - w eps_u          w = 0: no guidance

so gamma = 1 + w (``cfg_combine``'s argument ``w`` is gamma under "uncond"). At every noise level the
guided eps is that of the tilted marginal p_t(x_t | c)^gamma p_t(x_t)^(1 - gamma); the samples do NOT
follow the tilted data distribution p(x_0 | c)^gamma p(x_0)^(1 - gamma), because tilting each marginal
is not the marginal of a tilt (Chidambaram et al. 2024; Bradley & Nakkiran 2024; checked on a Gaussian
mixture in notebook 06). The wrapper evaluates both predictions in one batched network call.

Classifier guidance (Dhariwal & Nichol 2021, Algorithm 2 written for eps; their scale s is our gamma):
by Bayes' rule grad log p(x_t | y) = grad log p(x_t) + grad log p(y | x_t), and eps = -sqrt(1 - alpha_bar) grad log p, so

    eps_guided = eps(x_t, t) - sqrt(1 - alpha_bar_t) * gamma * grad_x log p_phi(y | x_t, t)

with a classifier p_phi trained on noisy x_t; gamma is ``classifier_guidance``'s ``scale``. gamma = 1 gives
the conditional model exactly (if both networks are exact); gamma > 1 sharpens the class. Both kinds
target p(x_t) p(y | x_t)^gamma: CFG at w is classifier guidance at gamma = 1 + w.

Strong guidance oversaturates (x_0_hat leaves the data range); three fixes, usable together in
``sample_cfg_ddim``: ``dynamic_threshold`` (Saharia et al. 2022), ``cfg_rescale`` (Lin et al. 2024) and
guidance only in an interval of noise levels (Kynkaanniemi et al. 2024).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dlib.denoiser import VP, Denoiser
from dlib.forward import eps_from_x0, x0_from_eps
from dlib.samplers import SAMPLERS, alpha_bar_grid, ddim_step, timesteps
from dlib.schedules import Schedule, alpha_bar_of_t
from dlib.utils import append_dims

CONVENTIONS = ("uncond", "cond")


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, w: float, convention: str = "uncond") -> torch.Tensor:
    """The classifier-free guidance combination of the two predictions (see the module docstring): ``w`` is
    gamma under ``convention="uncond"``, Ho & Salimans' w under ``"cond"``."""
    if convention == "uncond":
        return eps_uncond + w * (eps_cond - eps_uncond)
    if convention == "cond":
        return (1 + w) * eps_cond - w * eps_uncond
    raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def classifier_free(eps_model: Callable, w: float, null_cond: dict, *, convention: str = "uncond") -> Callable:
    """Wrap a conditional eps-model into its classifier-free-guided version.

    ``null_cond`` holds the "no condition" value of every conditioning argument, with a leading batch
    dimension of 1 (broadcast) or B: e.g. ``{"y": torch.tensor([10])}`` for a class model whose null
    label is 10, or the learned null embedding of a text model. The guided model makes one network
    call on a doubled batch: conditional half, unconditional half.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")

    def guided(x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        if set(cond) != set(null_cond):
            raise ValueError(f"guided model needs exactly the conditions {sorted(null_cond)}, got {sorted(cond)}")
        B = x_t.shape[0]
        both = {
            k: torch.cat([v, null_cond[k].to(v.device).expand(B, *null_cond[k].shape[1:]).to(v.dtype)])
            for k, v in cond.items()
        }
        eps_cond, eps_uncond = eps_model(torch.cat([x_t, x_t]), torch.cat([t, t]), **both).chunk(2)
        return cfg_combine(eps_uncond, eps_cond, w, convention)

    return guided


def classifier_guidance(eps_model: Callable, log_prob: Callable, sched: Schedule, scale: float) -> Callable:
    """Wrap an eps-model with classifier guidance towards labels ``y`` (a keyword argument at call time).

    ``log_prob(x_t, t, y)`` returns log p(y | x_t, t) per example, shape (B,): for a noise-conditional
    classifier, ``log_softmax(classifier(x_t, t), -1)[range(B), y]``. ``t`` may be fractional (ODE
    samplers); alpha_bar then follows ``schedules.alpha_bar_of_t``. ``y`` is not passed to ``eps_model``.
    """

    def guided(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor, **cond) -> torch.Tensor:
        eps = eps_model(x_t, t, **cond)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(log_prob(x, t, y).sum(), x)
        alpha_bar = alpha_bar_of_t(sched, t.double().cpu())
        scale_t = append_dims((1 - alpha_bar).sqrt(), x_t.ndim).to(x_t.device, x_t.dtype)
        return eps - scale * scale_t * grad

    return guided


def null_condition(model, cond: dict) -> dict:
    """The "no condition" of a conditional U-Net for the keys in ``cond``: its null label for ``y``, its learned
    null prompt for a text ``context`` (as long as the prompts)."""
    if "y" in cond:
        return {"y": torch.tensor([model.cfg.num_classes])}
    if "context" in cond:
        return model.null_text(1, cond["context"].shape[1])
    raise ValueError(f"expected a label y or a text context to guide towards, got {sorted(cond)}")


@torch.no_grad()
def sample_guided(
    net,
    sched: Schedule,
    shape: tuple[int, ...],
    cond: dict,
    *,
    w: float,
    steps: int,
    sampler: str = "ddim",
    prediction: str = "eps",
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    **options,
) -> torch.Tensor:
    """One sample of ``shape`` per condition in ``cond`` (each entry of batch size N), from x_T ~ N(0, I) drawn with
    ``generator`` (or the given ``x_T``): classifier-free guidance at scale w ("cond" convention) around the
    network's own null condition, read through its parameterisation, run by ``SAMPLERS[sampler]`` in ``steps``;
    ``options`` go to the sampler (e.g. ``spacing="linspace"``)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {sorted(SAMPLERS)}")
    device = next(net.parameters()).device
    guided = Denoiser(classifier_free(net, w, null_condition(net, cond), convention="cond"), prediction, VP(sched))
    n = len(next(iter(cond.values())))
    if x_T is None:
        x_T = torch.randn((n, *shape), generator=generator).to(device)
    elif tuple(x_T.shape) != (n, *shape):
        raise ValueError(f"x_T must have shape {(n, *shape)}, got {tuple(x_T.shape)}")
    return SAMPLERS[sampler](guided, x_T, steps=steps, generator=generator, **options, **cond)


@torch.no_grad()
def guided_samples(
    model,
    sched: Schedule,
    w: float,
    steps: int,
    generator: torch.Generator,
    shape: tuple,
    batch: int = 500,
    prediction: str = "eps",
    **cond,
) -> torch.Tensor:
    """DDPM samples (``steps`` respaced steps, linspace) of images of ``shape`` (C, H, W) with classifier-free
    guidance at scale w in the "cond" convention (w = 0: the plain conditional model), one per entry of
    the conditions ``cond`` (each of batch size N), in batches of ``batch``, clipped to [-1, 1]: ``sample_guided``
    batch by batch, from one generator. Each step makes one network call on a doubled batch: conditional +
    unconditional. The combination is affine, so it guides an eps-, x_0- or v-network alike (``prediction``)."""
    n = len(next(iter(cond.values())))
    parts = ({k: v[i : i + batch] for k, v in cond.items()} for i in range(0, n, batch))
    out = [
        sample_guided(model, sched, shape, part, w=w, steps=steps, sampler="ddpm", prediction=prediction,
                      generator=generator, spacing="linspace")
        for part in parts
    ]  # fmt: skip
    return torch.cat(out).clamp(-1, 1)


def dynamic_threshold(x_0_hat: torch.Tensor, percentile: float = 0.995, max_value: float = math.inf) -> torch.Tensor:
    """Imagen's dynamic thresholding (Saharia et al. 2022; their s): per example, r = the ``percentile`` quantile
    of |x_0_hat| over all its values, floored at 1 (and capped at ``max_value``); clip to [-r, r] and divide by r.
    Examples already inside [-1, 1] (r = 1) are left alone; saturated ones are pulled in, not flattened."""
    flat = x_0_hat.flatten(1)
    r = torch.quantile(flat.abs().double(), percentile, dim=1).clamp(1.0, max_value).to(flat.dtype)[:, None]
    return (torch.maximum(torch.minimum(flat, r), -r) / r).reshape(x_0_hat.shape)


def cfg_rescale(eps_guided: torch.Tensor, eps_cond: torch.Tensor, phi: float = 0.7) -> torch.Tensor:
    """CFG rescale (Lin et al. 2024, sec. 3.4): rescale the guided prediction, per example, to the standard
    deviation of the conditional one, then mix: phi * rescaled + (1 - phi) * guided. phi = 0 is plain CFG."""
    dims = list(range(1, eps_guided.ndim))
    rescaled = eps_guided * (eps_cond.std(dim=dims, keepdim=True) / eps_guided.std(dim=dims, keepdim=True))
    return phi * rescaled + (1 - phi) * eps_guided


@torch.no_grad()
def sample_cfg_ddim(
    model: Callable,
    x_T: torch.Tensor,
    sched: Schedule,
    steps: int,
    w: float,
    y: torch.Tensor,
    null_y: int,
    *,
    threshold: float | None = None,
    rescale: float = 0.0,
    interval: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Classifier-free-guided DDIM (eta = 0) on the grid ``timesteps(T, steps)`` (then the data), scale w in
    the "cond" convention; the reference of notebook 06's build exercise. Per step, one call of the class
    model ``model(x, t, y=...)`` on the doubled batch (labels y, then the null label ``null_y``). Options:
    ``threshold`` (a percentile: ``dynamic_threshold`` on x_0_hat, eps re-derived from it), ``rescale``
    (``cfg_rescale``'s phi), ``interval`` = (t_lo, t_hi): guide only where t_lo <= t <= t_hi, elsewhere
    the plain conditional prediction (Kynkaanniemi et al. 2024). Returns x_0, unclipped."""
    ts = timesteps(sched.T, steps)
    alpha_bar = alpha_bar_grid(sched, ts)
    labels = torch.cat([y, torch.full_like(y, null_y)])
    x = x_T
    for i, t in enumerate(ts.tolist()):
        t_batch = torch.full((2 * len(x),), t, dtype=torch.long, device=x.device)
        eps_cond, eps_uncond = model(torch.cat([x, x]), t_batch, y=labels).chunk(2)
        guide = interval is None or interval[0] <= t <= interval[1]
        eps = cfg_combine(eps_uncond, eps_cond, w if guide else 0.0, "cond")
        if rescale and guide:
            eps = cfg_rescale(eps, eps_cond, rescale)
        x_0_hat = None
        if threshold is not None:
            x_0_hat = dynamic_threshold(x0_from_eps(x, eps, alpha_bar[i]), threshold)
            eps = eps_from_x0(x, x_0_hat, alpha_bar[i])
        x, _ = ddim_step(x, eps, alpha_bar[i], alpha_bar[i + 1], x_0_hat=x_0_hat)
    return x
