"""Notebook 09 (audio): the hints and catalogued mistakes of its exercises.

    log_mel        Exercise 1 (core): the log-mel spectrogram from the STFT and the mel filterbank
    levels         Exercise 2 (derive): WaveGrad's continuous noise levels, drawn between a schedule's own
    search         Exercise 3 (build): the few-step noise-schedule search

Each is a dict for ``check_function(..., **nb09.name)`` (see the package docstring).
"""

from __future__ import annotations

import itertools

import torch

from dlib.audio import MEL_FLOOR, log_mel, mel_filterbank, stft
from dlib.samplers.vocoder import geometric_betas, search_schedule
from dlib.wavegrad import sample_levels

# --- Exercise 1: the log-mel spectrogram ---


def _mel(x: torch.Tensor, power: int = 1) -> torch.Tensor:
    return mel_filterbank() @ stft(x).abs() ** power


log_mel_ex = dict(
    reference=lambda x: log_mel(x),
    hint=[
        "Three steps: the STFT's magnitude (dlib.audio.stft(x) is complex), the mel filterbank applied to the "
        "frequency axis (a matrix product: filters (n_mels, n_freq) times magnitudes (..., n_freq, frames)), then "
        "the natural log, with the mel magnitudes floored at MEL_FLOOR first so that silence does not give log 0.",
        "mel_filterbank() @ stft(x).abs(), then .clamp_min(MEL_FLOOR).log().",
    ],
    mistakes={
        "the power spectrum |X|^2 instead of the magnitude |X| (every log-mel doubled)": (
            lambda x: _mel(x, 2).clamp_min(MEL_FLOOR).log()
        ),
        "log10 instead of the natural log": lambda x: _mel(x).clamp_min(MEL_FLOOR).log10(),
        "no floor: silence gives log 0 = -inf": lambda x: _mel(x).log(),
        "the floor added (log(mel + floor)) instead of clamped (log(max(mel, floor)))": (
            lambda x: (_mel(x) + MEL_FLOOR).log()
        ),
    },
)


# --- Exercise 2: continuous noise levels ---


def _levels_unshifted(grid, u_step, u_level):
    s = (u_step * (len(grid) - 1)).long()
    lo, hi = grid[s].to(u_level), grid[s - 1].to(u_level)
    return lo + (hi - lo) * u_level


levels = dict(
    reference=sample_levels,
    hint=[
        "grid holds l_0 = 1, l_1, ..., l_T (T + 1 values, decreasing). First pick a step s in 1..T from u_step "
        "(as an index: floor(u_step * T), plus one), then a level uniformly between the step's two ends, "
        "l_s (the noisier) and l_{s-1}, from u_level.",
        "s = floor(u_step * T) + 1 (clamped to 1..T); level = grid[s] + (grid[s - 1] - grid[s]) * u_level.",
    ],
    mistakes={
        "the level is the grid value itself (a discrete level): the network never sees the levels in between": (
            lambda grid, u_step, u_level: sample_levels(grid, u_step, torch.zeros_like(u_level))
        ),
        "s = floor(u_step * T) without the + 1: every interval shifts one step, and s = 0 wraps grid[s - 1] to l_T": (
            _levels_unshifted
        ),
        "a level uniform over the whole range (l_T, 1] instead of one step's interval: the schedule's spacing is lost": (
            lambda grid, u_step, u_level: (grid[-1] + (1 - grid[-1]) * u_level).to(u_level)
        ),
    },
)


# --- Exercise 3: the schedule search ---


def reference_search(score, steps, firsts, lasts):
    return search_schedule(score, steps, firsts, lasts)[0]


def _search(pick=min, spacing=geometric_betas):
    def search(score, steps, firsts, lasts):
        rows = [
            (f, l, float(score(spacing(steps, f, l))))
            for f, l in itertools.product(firsts, lasts)
            if f <= l and (steps > 1 or f == l)
        ]
        f, l, _ = pick(rows, key=lambda r: r[2])
        return spacing(steps, f, l)

    return search


search = dict(
    reference=reference_search,
    hint=[
        "Loop over every (first, last) pair of the two grids, skip the pairs with first > last (a schedule adds "
        "the least noise first), build the geometric schedule with dlib.samplers.vocoder.geometric_betas(steps, "
        "first, last), score it, and return the schedule with the lowest score. With one step only first == last "
        "makes sense.",
        "best = min(((score(geometric_betas(steps, f, l)), f, l) for f in firsts for l in lasts if f <= l and "
        "(steps > 1 or f == l))); return geometric_betas(steps, best[1], best[2]).",
    ],
    mistakes={
        "the highest score kept instead of the lowest (the score is a distance)": _search(pick=max),
        "the best schedule returned reversed: the first step of a schedule must add the least noise": (
            lambda score, steps, firsts, lasts: reference_search(score, steps, firsts, lasts).flip(0)
        ),
        "evenly spaced betas instead of geometric ones": _search(
            spacing=lambda steps, f, l: torch.linspace(f, l, steps, dtype=torch.float64)
        ),
    },
)
