"""Notebook 06 (conditioning): the hints and catalogued mistakes of its exercises.

    cfg_combine     Exercise 1 (core): the classifier-free guidance combination, both conventions
    guided_ddim     Exercise 3 (build): a whole classifier-free-guided DDIM loop
    cross_attention Exercise 4 (core): a CrossAttention layer from its parts

Each is a dict for ``check_function(..., **nb06.name)`` (see the package docstring). Exercise 2 is a
derivation, confirmed by a cell of the notebook, with no checker.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from dlib import guidance
from dlib.samplers import alpha_bar_grid, ddim_step, timesteps


def outcome(fn: Callable) -> Callable:
    """``fn``'s output, or the text "ValueError" where it raises one, so a checker can require the error."""

    @functools.wraps(fn)
    def run(**case):
        try:
            return fn(**case)
        except ValueError:
            return "ValueError"

    return run


# --- Exercise 1: the CFG combination ---

_OTHER = {"uncond": "cond", "cond": "uncond"}
_CFG_MISTAKES = {  # each written with dlib's combination, fed the wrong arguments
    "the sign of the guidance term: it pushes away from the condition": lambda eps_uncond, eps_cond, w, convention: (
        guidance.cfg_combine(eps_uncond, eps_cond, -w, convention)
    ),
    "guided towards the unconditional prediction (eps_cond and eps_uncond swapped)": (
        lambda eps_uncond, eps_cond, w, convention: guidance.cfg_combine(eps_cond, eps_uncond, w, convention)
    ),
    "the conventions mixed up: gamma's formula used where w belongs, and w's where gamma belongs": (
        lambda eps_uncond, eps_cond, w, convention: guidance.cfg_combine(
            eps_uncond, eps_cond, w, _OTHER.get(convention, convention)
        )
    ),
    "an unknown convention accepted silently (it must raise ValueError)": lambda eps_uncond, eps_cond, w, convention: (
        guidance.cfg_combine(eps_uncond, eps_cond, w, "uncond" if convention == "uncond" else "cond")
    ),
}
cfg_combine = dict(
    reference=outcome(guidance.cfg_combine),
    hint=[
        "Both conventions start from one of the two predictions and add a multiple of eps_cond - eps_uncond. "
        "Which one is the start, if gamma = 1 ('uncond') and w = 0 ('cond') must both give back eps_cond?",
        "'uncond' starts from eps_uncond with gamma as the multiple; 'cond' starts from eps_cond with w as the "
        "multiple (so gamma = 1 + w). Any other convention: raise ValueError.",
        "uncond: eps_uncond + w (eps_cond - eps_uncond); cond: (1 + w) eps_cond - w eps_uncond; "
        "otherwise raise ValueError(...)",
    ],
    mistakes={k: outcome(f) for k, f in _CFG_MISTAKES.items()},
)


# --- Exercise 3: the guided sampling loop ---


def _ddim_loop(model, x_T, sched, steps, w, y, null_y, *, to_t_minus_1=False, stop_early=False):
    """A guided DDIM loop with one of two grid mistakes: step to t - 1, or skip the last jump to the data."""
    ts = timesteps(sched.T, steps)
    alpha_bar = alpha_bar_grid(sched, ts)
    ab_prev = sched.float64()["alpha_bar_prev"]
    x = x_T
    for i, t in enumerate(ts.tolist()[: -1 if stop_early else None]):
        t_b = torch.full((len(x),), t, dtype=torch.long, device=x.device)
        eps = guidance.cfg_combine(model(x, t_b, y=torch.full_like(y, null_y)), model(x, t_b, y=y), w, "cond")
        x = ddim_step(x, eps, alpha_bar[i], ab_prev[t].item() if to_t_minus_1 else alpha_bar[i + 1])[0]
    return x


def _two_chains(model, x_T, sched, steps, w, y, null_y):
    """The combination applied to samples: a conditional and an unconditional chain, extrapolated at the end."""
    x_c = guidance.sample_cfg_ddim(model, x_T, sched, steps, 0.0, y, null_y)
    x_u = guidance.sample_cfg_ddim(model, x_T, sched, steps, 0.0, torch.full_like(y, null_y), null_y)
    return (1 + w) * x_c - w * x_u


guided_ddim = dict(
    hint=[
        "Per step: the unconditional and the conditional prediction at the current x and t (the null label is "
        "null_y), your cfg_combine in the 'cond' convention, then one deterministic DDIM step to the next index "
        "visited. After the last index comes the data.",
        "ts = dlib.samplers.timesteps(sched.T, steps) lists t_0 > ... > t_{S-1}; dlib.samplers.alpha_bar_grid(sched, "
        "ts) gives alpha_bar at each, followed by 1.0 for the data (S + 1 numbers). Guide the noise prediction, not x.",
        "for i, t in enumerate(ts): t_b = full((B,), t); eps_u = model(x, t_b, y=full_like(y, null_y)); "
        "eps_c = model(x, t_b, y=y); eps = cfg_combine(eps_u, eps_c, w, 'cond'); "
        "x = ddim_step(x, eps, alpha_bar[i], alpha_bar[i + 1])[0]; return x",
    ],
    mistakes={
        "the sign of the guidance term: it pushes away from the label": (
            lambda model, x_T, sched, steps, w, y, null_y: guidance.sample_cfg_ddim(
                model, x_T, sched, steps, -w, y, null_y
            )
        ),
        "the null label never used: both predictions are conditional, so w changes nothing": (
            lambda model, x_T, sched, steps, w, y, null_y: guidance.sample_cfg_ddim(
                model, x_T, sched, steps, 0.0, y, null_y
            )
        ),
        "the combination applied to x (two chains extrapolated) instead of to each step's eps": _two_chains,
        "the grid off by one: each step lands on t - 1 (alpha_bar_prev[t]), not on the next index visited": (
            functools.partial(_ddim_loop, to_t_minus_1=True)
        ),
        "the grid off by one: the last jump, from t_{S-1} to the data, is missing": (
            functools.partial(_ddim_loop, stop_early=True)
        ),
    },
)


# --- Exercise 4: cross-attention ---


def _attention(layer, x, context, context_mask, *, norm=True, scale=True, over=-1, mask=True, swap=False):
    """dlib's CrossAttention written out, with switches for the catalogued mistakes."""
    B, C, H, W = x.shape
    heads, d = layer.heads, C // layer.heads
    h = (layer.norm(x) if norm else x).flatten(2).transpose(1, 2)
    q = layer.to_q(h).reshape(B, H * W, heads, d).transpose(1, 2)
    k, v = (z.reshape(B, -1, heads, d).transpose(1, 2) for z in layer.to_kv(context).chunk(2, -1))
    k, v = (v, k) if swap else (k, v)
    scores = q @ k.transpose(-1, -2) / (math.sqrt(d) if scale else 1.0)
    if mask and context_mask is not None:
        scores = scores.masked_fill(~context_mask[:, None, None, :], float("-inf"))
    out = (scores.softmax(over) @ v).transpose(1, 2).reshape(B, H * W, C)
    return x + layer.proj_out(out).transpose(1, 2).reshape(B, C, H, W)


def _reference_attention(layer, x, context, context_mask):
    return layer(x, context, context_mask)


cross_attention = dict(
    reference=_reference_attention,
    hint=[
        "Queries come from the image (after layer.norm), keys and values from the context. Lay them out as "
        "(B, heads, positions, d) and (B, heads, tokens, d), with positions = H * W and d = C // heads.",
        "Each position's weights are a softmax over the tokens (the last axis of q k^T), the scores divided by "
        "sqrt(d) and padding tokens set to -inf first; the layer adds its result to x.",
        "h = norm(x) as (B, HW, C); q = to_q(h); k, v = to_kv(context).chunk(2, -1), each split into heads; "
        "out = x + proj_out(softmax(q k^T / sqrt(d), over tokens) @ v), back to (B, C, H, W)",
    ],
    mistakes={
        "softmax over the image positions instead of over the tokens": functools.partial(_attention, over=-2),
        "no 1/sqrt(d) scaling of the scores": functools.partial(_attention, scale=False),
        "the mask ignored: padding tokens receive attention": functools.partial(_attention, mask=False),
        "no normalisation: the queries come from the raw image features": functools.partial(_attention, norm=False),
        "keys and values swapped (to_kv gives the keys first)": functools.partial(_attention, swap=True),
    },
)
