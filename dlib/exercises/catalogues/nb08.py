"""Notebook 08 (editing and control): the hints and catalogued mistakes of its exercises.

    replace_step     Exercise 1 (core): one step of inpainting by replacement
    repaint_levels   Exercise 2 (build): RePaint's walk over noise levels, with jumps back in time

Each is a dict for ``check_function(..., **nb08.name)`` (see the package docstring). Exercise 3 (why a
zero-initialised convolution still learns) is a derivation, confirmed by a cell of the notebook, with no checker.
"""

from __future__ import annotations

import torch

from dlib.editing import jump_walk, replace_known
from dlib.editing import repaint_levels as _repaint_levels

# --- Exercise 1: the replacement step ---


def _replace(x_prev, x_known, mask, alpha_bar_t, alpha_bar_prev, noise):
    return replace_known(x_prev, x_known, mask, alpha_bar_prev, noise)


def _paste(x_prev, x_known, mask, signal, noise_scale, noise):
    return mask * x_prev + (1 - mask) * (signal * x_known + noise_scale * noise)


replace_step = dict(
    reference=_replace,
    hint=[
        "The sampler has just moved the state from level t to level t-1. Where the mask is 1 keep it; where it is 0 "
        "put the known image, noised exactly as the forward process would noise it to the state's level.",
        "The state is now at alpha_bar_prev, so the known pixels must be a sample of q(x_{t-1} | x_0): "
        "sqrt(alpha_bar_prev) x_known + sqrt(1 - alpha_bar_prev) noise. The mask is 1 where the model generates.",
        "a = torch.as_tensor(alpha_bar_prev); known = a.sqrt() * x_known + (1 - a).sqrt() * noise; "
        "return mask * x_prev + (1 - mask) * known",
    ],
    mistakes={
        "the known pixels noised to alpha_bar_t, the level the step started from: one level too noisy (the study "
        "guide's inpainting_sample)": lambda x_prev, x_known, mask, alpha_bar_t, alpha_bar_prev, noise: replace_known(
            x_prev, x_known, mask, alpha_bar_t, noise
        ),
        "the mask inverted: the known pixels pasted where the model should generate": (
            lambda x_prev, x_known, mask, alpha_bar_t, alpha_bar_prev, noise: replace_known(
                x_prev, x_known, 1 - mask, alpha_bar_prev, noise
            )
        ),
        "the clean known pixels pasted without noise: the state then mixes a noisy region and a clean one": (
            lambda x_prev, x_known, mask, alpha_bar_t, alpha_bar_prev, noise: _paste(
                x_prev, x_known, mask, 1.0, 0.0, noise
            )
        ),
        "sqrt(alpha_bar) and sqrt(1 - alpha_bar) swapped: the signal gets the noise's coefficient": (
            lambda x_prev, x_known, mask, alpha_bar_t, alpha_bar_prev, noise: _paste(
                x_prev,
                x_known,
                mask,
                (1 - torch.as_tensor(alpha_bar_prev)).sqrt(),
                torch.as_tensor(alpha_bar_prev).sqrt(),
                noise,
            )
        ),
        "alpha_bar and 1 - alpha_bar without their square roots: the noised known pixels have the wrong variance": (
            lambda x_prev, x_known, mask, alpha_bar_t, alpha_bar_prev, noise: _paste(
                x_prev, x_known, mask, torch.as_tensor(alpha_bar_prev), 1 - torch.as_tensor(alpha_bar_prev), noise
            )
        ),
    },
)


# --- Exercise 2: RePaint's walk ---


repaint_levels = dict(
    reference=_repaint_levels,
    hint=[
        "Walk down one level at a time from `steps` to 0. Some levels are jump points: arriving there, go back up "
        "`jump` levels and come down again. Count how many times each stretch of `jump` levels is denoised in all.",
        "The jump points are the levels 0, jump, 2 jump, ... that leave room to go up (level + jump <= steps). Each "
        "stretch must be denoised `resamples` times in all, so a jump point sends you back up `resamples - 1` times; "
        "keep a counter per jump point (a dict) and decrement it on each jump.",
        "left = {l: resamples - 1 for l in range(0, steps - jump + 1, jump)}; levels, level = [steps], steps; "
        "while level > 0: level -= 1; levels.append(level); if left.get(level, 0) > 0: left[level] -= 1; "
        "level += jump; levels.append(level)",
    ],
    mistakes={
        "`resamples` jumps back at each jump point instead of `resamples - 1`: every stretch is denoised once too "
        "often": lambda steps, jump, resamples: _repaint_levels(steps, jump, resamples + 1),
        "a jump point at every level instead of every `jump` levels": lambda steps, jump, resamples: jump_walk(
            steps, range(0, steps - jump + 1), jump, resamples - 1
        ),
        "no jump back at all: plain replacement, whatever `resamples` says": lambda steps, jump, resamples: (
            _repaint_levels(steps, jump, 1)
        ),
        "back up one level at a time, whatever `jump` says": lambda steps, jump, resamples: jump_walk(
            steps, range(0, steps - jump + 1, jump), 1, resamples - 1
        ),
    },
)
