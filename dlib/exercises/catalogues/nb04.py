"""Notebook 04 (training): the hints and catalogued mistakes of its checked exercises.

``l_simple`` (exercise 1, the per-example loss), ``train_loop`` (exercise 2, DDPM's Algorithm 1 as a
whole loop), ``ema_update`` (exercise 3, the in-place EMA step), ``v_target`` (exercise 4, Salimans &
Ho's v) and ``v_prediction_loss`` (exercise 6, the study guide's v-loss with its bug fixed). Each
mistake has the signature of its exercise's reference and changes one ingredient of the right
answer, so the checker can name what the learner got wrong. Kept out of the notebook because each
one spells out the answer.
"""

from __future__ import annotations

import copy
import functools

import torch

from dlib.forward import l_simple as _l_simple_ref
from dlib.nets import MLPDenoiser
from dlib.train import ema_update as _ema_update_ref

# --- exercise 1: L_simple of one batch -----------------------------------------------------------


def _l_simple(model, x_0, sched, t, eps, coef="alpha_bar", sqrt=True, target="eps"):
    a = sched.at(getattr(sched, coef), t, x_0.ndim)
    x_t = (a.sqrt() * x_0 + (1 - a).sqrt() * eps) if sqrt else (a * x_0 + (1 - a) * eps)
    return ((model(x_t, t) - (eps if target == "eps" else x_0)) ** 2).flatten(1).mean(1)


l_simple = dict(
    hint=[
        "Two parts: build x_t from x_0 and this eps in closed form, then score the model's output against the right target.",
        "Use the cumulative alpha_bar_t, shaped (B, 1, ...) with sched.at, and square roots on both coefficients; the "
        "target is eps; average over all but the batch dimension.",
        "x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps; return ((model(x_t, t) - eps) ** 2).flatten(1).mean(1).",
    ],
    mistakes={
        "alpha_t (one step, sched.alphas) where alpha_bar_t belongs": functools.partial(_l_simple, coef="alphas"),
        "a missing square root on the coefficients of x_0 and eps": functools.partial(_l_simple, sqrt=False),
        "x_0 as the regression target instead of eps": functools.partial(_l_simple, target="x_0"),
        "the squared error summed over the dimensions instead of averaged": (
            lambda model, x_0, sched, t, eps: _l_simple(model, x_0, sched, t, eps) * x_0[0].numel()
        ),
    },
)

# --- exercise 2: the training loop (build) -------------------------------------------------------


def _loop(
    net, ema, opt, loss, x_data, T, steps, generator, *, start=0, batch_size=256, ema_decay=0.995,
    ema_update=_ema_update_ref, flaw=None,
):  # fmt: skip
    """DDPM's Algorithm 1 for ``steps`` steps, or with the one ``flaw`` the learner made."""
    losses = []
    for k in range(steps):
        n = k if flaw == "warm-up from 0" else start + k
        x_0 = x_data[torch.randint(0, len(x_data), (batch_size,), generator=generator)]
        if flaw == "one t":
            t = torch.randint(0, T, (1,), generator=generator).expand(batch_size)
        else:
            low, high = {"1..T": (1, T + 1), "1..T-1": (1, T)}.get(flaw, (0, T))
            t = torch.randint(low, high, (batch_size,), generator=generator)
        eps = torch.randn(x_0.shape, generator=generator)
        per_example = loss(net, x_0, t, eps)
        batch_loss = per_example.sum() if flaw == "sum" else per_example.mean()
        decay = ema_decay if flaw == "no warm-up" else min(ema_decay, (1 + n) / (10 + n))
        if flaw == "ema first":
            ema_update(ema, net, decay)
        if flaw not in ("no zero_grad", "zero_grad late"):
            opt.zero_grad()
        batch_loss.backward()
        if flaw == "zero_grad late":
            opt.zero_grad()
        opt.step()
        if flaw == "ema swapped":
            ema_update(net, ema, decay)
        elif flaw != "ema first":
            ema_update(ema, net, decay)
        losses.append(batch_loss.item())
    return losses


def reference_train_loop(net, ema, opt, loss, x_data, T, steps, generator, *, start=0, batch_size=256, ema_decay=0.995,
               ema_update=_ema_update_ref):  # fmt: skip
    """The reference: ``steps`` steps of Algorithm 1 from step number ``start``; returns the batch losses."""
    return _loop(net, ema, opt, loss, x_data, T, steps, generator, start=start, batch_size=batch_size,
                 ema_decay=ema_decay, ema_update=ema_update)  # fmt: skip


def run_loop(loop):
    """A loop with ``train_loop``'s signature -> a checker-ready function of one case: it builds a fresh
    MLPDenoiser (seeded), its EMA copy and Adam, runs the loop with a seeded generator and returns
    (batch losses, final weights, final EMA weights), leaving the global random state as it was."""

    def run(loss, x_data, T, steps, seed, start=0, batch_size=64, ema_update=_ema_update_ref):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = MLPDenoiser()
            ema = copy.deepcopy(net).requires_grad_(False)
            opt = torch.optim.Adam(net.parameters(), lr=3e-3)
            g = torch.Generator().manual_seed(seed)
            losses = loop(net, ema, opt, loss, x_data, T, steps, g, start=start, batch_size=batch_size,
                          ema_update=ema_update)  # fmt: skip
        flat = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in (net, ema)]
        return torch.tensor([float(v) for v in losses], dtype=torch.float64), *flat

    run.__name__ = run.__qualname__ = getattr(loop, "__name__", "loop")
    run.__module__ = getattr(loop, "__module__", __name__)
    return run


def _flawed(flaw):
    return run_loop(functools.partial(_loop, flaw=flaw))


train_loop = dict(
    reference=run_loop(reference_train_loop),
    hint=[
        "Compare your loop with Algorithm 1 line by line, then check the order of the last three things a step does: "
        "the optimiser's three calls, then the average of the weights.",
        "Draw, in this order and all from `generator`: the batch indices, one t per example in 0..T-1, eps shaped like "
        "x_0. The batch loss is the mean of loss(...). Zero the gradients before backward(); update the EMA after "
        "opt.step(), with ema_update(ema, net, decay) and the warm-up counted from the global step start + k.",
        "for k in range(steps): n = start + k; x_0 = x_data[randint(0, len(x_data), (batch_size,), generator=g)]; "
        "t = randint(0, T, (batch_size,), generator=g); eps = randn(x_0.shape, generator=g); "
        "batch_loss = loss(net, x_0, t, eps).mean(); opt.zero_grad(); batch_loss.backward(); opt.step(); "
        "ema_update(ema, net, min(ema_decay, (1 + n) / (10 + n))); losses.append(batch_loss.item())",
    ],
    mistakes={
        "t drawn from 1..T (DDPM's 1-indexed range): t = T is out of range": _flawed("1..T"),
        "t drawn from 1..T-1: the first noise level, t = 0, is never trained": _flawed("1..T-1"),
        "one t for the whole batch instead of one per example": _flawed("one t"),
        "gradients never zeroed: every step adds to the old gradients": _flawed("no zero_grad"),
        "zero_grad() between backward() and step(): the optimiser steps on zero gradients": _flawed("zero_grad late"),
        "the EMA updated before the optimiser step (it lags one step behind)": _flawed("ema first"),
        "the EMA updated from the wrong object: ema_update(net, ema, ...) pulls the network towards the average": (
            _flawed("ema swapped")
        ),
        "the EMA decay without its warm-up": _flawed("no warm-up"),
        "the EMA warm-up counted from 0 at every call instead of from `start`": _flawed("warm-up from 0"),
        "the batch loss summed over the batch instead of averaged (Adam hides it in the weights, not in the losses)": (
            _flawed("sum")
        ),
    },
)

# --- exercise 3: the EMA update --------------------------------------------------------------------


def on_a_copy(update):
    """An in-place EMA update -> a function that runs it on a copy of ``ema`` and returns the new state."""

    @functools.wraps(update)  # keeps the name, so the checker's messages name the function
    def run(ema, model, decay):
        ema = copy.deepcopy(ema)
        update(ema, model, decay)
        return [v.detach().clone() for v in ema.state_dict().values()]

    return run


def _ema(ema, model, decay, *, swapped=False, grad=False, buffers=True):
    with torch.set_grad_enabled(grad):
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.mul_(1 - decay if swapped else decay).add_(p, alpha=decay if swapped else 1 - decay)
        for e, b in zip(ema.buffers(), model.buffers(), strict=True):
            if buffers:
                e.copy_(b)


ema_update = dict(
    reference=on_a_copy(_ema_update_ref),
    hint=[
        "With decay = 0.999 the average should barely move; with decay = 0 it should become the model. Does yours?",
        "Keep the fraction decay of the old average and add (1 - decay) of the model, in place under torch.no_grad(); "
        "buffers (BatchNorm statistics) are copied, not averaged.",
        "for e, p in zip(ema.parameters(), model.parameters()): e.mul_(decay).add_(p, alpha=1 - decay); "
        "then e.copy_(b) for every pair of buffers.",
    ],
    mistakes={
        "decay and 1 - decay swapped: the average keeps 1 - decay of itself": on_a_copy(
            functools.partial(_ema, swapped=True)
        ),
        "an in-place update with gradients recorded: wrap it in torch.no_grad()": on_a_copy(
            functools.partial(_ema, grad=True)
        ),
        "the buffers (BatchNorm's running statistics) not copied": on_a_copy(functools.partial(_ema, buffers=False)),
    },
)

# --- exercise 4: the v-target ------------------------------------------------------------------


def _v(x_0, eps, alpha_bar_t, sign=1.0, swapped=False, sqrt=True):
    a = torch.as_tensor(alpha_bar_t, dtype=x_0.dtype)
    c_eps, c_x0 = (a, 1 - a) if not swapped else (1 - a, a)
    if sqrt:
        c_eps, c_x0 = c_eps.sqrt(), c_x0.sqrt()
    return sign * (c_eps * eps - c_x0 * x_0)


v_target = dict(
    hint=[
        "Check the two ends: at alpha_bar_t = 1 (clean) v should be +eps, at alpha_bar_t = 0 (pure noise) it should be -x_0.",
        "Differentiate x_t = cos(phi) x_0 + sin(phi) eps with respect to phi, then write cos(phi) and sin(phi) with "
        "alpha_bar_t. Turn a float alpha_bar_t into a tensor before taking sqrt.",
        "v = sqrt(alpha_bar_t) * eps - sqrt(1 - alpha_bar_t) * x_0.",
    ],
    mistakes={
        "the sign of v flipped (d x_t / d phi, not its negative)": functools.partial(_v, sign=-1.0),
        "the coefficients of eps and x_0 swapped": functools.partial(_v, swapped=True),
        "a missing square root on the coefficients": functools.partial(_v, sqrt=False),
    },
)

# --- exercise 6: the study guide's v_prediction_loss, fixed -------------------------------------


def _v_loss(model, x_0, t, eps, sched, shape=None, target_sign=1.0):
    alpha_bar_t = sched.alpha_bar[t] if shape is None else sched.alpha_bar[t].view(shape)
    x_t = sched.at(sched.alpha_bar, t, x_0.ndim).sqrt() * x_0 + sched.at(1 - sched.alpha_bar, t, x_0.ndim).sqrt() * eps
    v = target_sign * (alpha_bar_t.sqrt() * eps - (1 - alpha_bar_t).sqrt() * x_0)
    return ((model(x_t, t) - v) ** 2).mean()


def _v_loss_ref(model, x_0, t, eps, sched):
    return _l_simple_ref(model, x_0, sched, prediction="v", t=t, eps=eps).mean()


v_prediction_loss = dict(
    reference=_v_loss_ref,
    hint=[
        "Print the shape of every tensor in the guide's function for a batch of 28 images and for a batch of 16: "
        "which one is not what the formula means?",
        "alpha_bar[t] has shape (B,); broadcasting aligns shapes from the right, so against (B, C, H, W) it lines up "
        "with the width. Give it shape (B, 1, 1, 1) (sched.at does that) before it meets x_0 and eps.",
        "alpha_bar_t = sched.at(sched.alpha_bar, t, x_0.ndim); v_target = alpha_bar_t.sqrt() * eps - "
        "(1 - alpha_bar_t).sqrt() * x_0; return ((model(x_t, t) - v_target) ** 2).mean()",
    ],
    mistakes={
        "alpha_bar[t] reshaped to (B, 1): it still broadcasts over the height instead of the batch": (
            functools.partial(_v_loss, shape=(-1, 1))
        ),
        "the sign of the v-target flipped": functools.partial(_v_loss, shape=(-1, 1, 1, 1), target_sign=-1.0),
    },
)

__all__ = [
    "ema_update", "l_simple", "on_a_copy", "reference_train_loop", "run_loop", "train_loop", "v_prediction_loss", "v_target",
]  # fmt: skip
