"""The test side of the checkers: every catalogued mistake, fed to its checker, must get a FAIL that names it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from dlib.exercises.judge import FAIL, Case, judge_function


def catalogue_problems(
    reference: Callable,
    cases: Sequence[Case],
    mistakes: dict[str, Callable],
    *,
    names: Sequence[str] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    require_dtype: torch.dtype | None = None,
) -> list[str]:
    """Feed each catalogued mistake (or those in ``names``) to the checker as the candidate and list
    each one that does not get a FAIL naming it; [] means the cases tell every mistake apart.
    Pass the checker's own tolerances."""
    tol = dict(atol=atol, rtol=rtol, require_dtype=require_dtype)
    out = []
    for key in names if names is not None else list(mistakes):
        v = judge_function(key, mistakes[key], reference, cases, mistakes=mistakes, **tol)
        if v.status != FAIL:
            out.append(f"mistake {key!r} gave {v.status}: the test cases do not tell it from the reference")
        elif v.mistake != key:
            seen = f"named {v.mistake!r}" if v.mistake else "not named"
            out.append(f"mistake {key!r} was {seen} ({v.problem}); the test cases do not tell them apart")
    return out


def assert_catalogue_recognised(reference: Callable, cases: Sequence[Case], mistakes: dict, **kwargs) -> None:
    """Raise AssertionError unless every catalogued mistake gets a FAIL that names it.

    Takes ``catalogue_problems``' arguments. For one pytest case per mistake, parametrize over
    ``list(mistakes)`` and pass ``names=[that_name]``: the whole catalogue still does the naming.
    """
    problems = catalogue_problems(reference, cases, mistakes, **kwargs)
    if problems:
        raise AssertionError("catalogued mistakes not recognised:\n  " + "\n  ".join(problems))
