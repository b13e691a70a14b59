"""Exercise checkers: run a learner's function against dlib's reference and say what happened.

A checker prints PASS, FAIL or TODO on its first line and returns what the notebook goes on with:
the learner's function when it passes, dlib's reference otherwise, so every notebook runs end to
end whether or not its exercises are done. A FAIL gives the failing case and its inputs, names
the mistake when the output matches one in the exercise's catalogue (``mistakes``), and shows the
first level of the hint; ``hint(name)`` reveals the next. The last of several levels (the
formula) is printed only on request. ``judge_function`` / ``judge_value`` return the ``Verdict``
without printing; ``last_result()`` is the one the last checker printed.

``DLIB_REQUIRE_SOLVED=1`` (set by the tests for ``solutions/``) turns anything but a pass into
``ExerciseFailed``, and makes each passing checker feed itself every catalogued mistake and fail
unless it names it (``catalogue_problems``). Functions under test must not modify their inputs:
the same cases go to the candidate, the reference and each mistake.

This file prints and keeps the hint levels; ``judge`` decides, ``catalogue`` tests catalogues.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dlib.exercises.catalogue import assert_catalogue_recognised, catalogue_problems
from dlib.exercises.judge import (
    FAIL,
    PASS,
    TODO,
    Case,
    Verdict,
    describe_inputs,
    dtype_mistake,
    dtype_name,
    float_dtypes,
    judge_function,
    judge_value,
)

REQUIRE_ENV = "DLIB_REQUIRE_SOLVED"
_INDENT = "      "


class ExerciseFailed(AssertionError):
    """Raised instead of falling back when ``DLIB_REQUIRE_SOLVED=1``."""


def check_function(
    name: str,
    candidate: Callable,
    reference: Callable,
    cases: Sequence[Case],
    *,
    hint: str | Sequence[str],
    mistakes: dict[str, Callable] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    require_dtype: torch.dtype | None = None,
) -> Callable:
    """Judge ``candidate`` against ``reference`` on ``cases``, print the verdict, return the function to go on with.

    Outputs (tensors, numbers, tuples or lists of them) are compared in float64 within ``atol`` +
    ``rtol`` |reference|. ``hint``: one string, or levels from a nudge to the formula. ``mistakes``:
    learner-facing name -> a wrong implementation with the reference's signature.
    ``require_dtype``: fail floating-point outputs of any other dtype.
    """
    tol = dict(atol=atol, rtol=rtol, require_dtype=require_dtype)
    strict = os.environ.get(REQUIRE_ENV) == "1"
    if strict and require_dtype and any(d != require_dtype for d in float_dtypes(reference(**cases[0]))):
        raise ValueError(
            f"{name}: the reference's output is not {dtype_name(require_dtype)}, yet require_dtype asks for it"
        )
    v = _finish(judge_function(name, candidate, reference, cases, mistakes=mistakes, **tol), hint, reference)
    if strict and v.passed and mistakes and (problems := catalogue_problems(reference, cases, mistakes, **tol)):
        raise ExerciseFailed(f"{name}: " + "; ".join(problems))
    return candidate if v.passed else reference


def check_value(
    name: str,
    value: Any,
    expected: Any,
    *,
    hint: str | Sequence[str],
    mistakes: dict[str, Any] | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-4,
    require_dtype: torch.dtype | None = None,
) -> bool:
    """Check a computed answer (a number, tensor, string or tuple); True when it passes.

    As ``check_function``, with ``mistakes`` mapping a learner-facing name to a wrong value.
    """
    tol = dict(atol=atol, rtol=rtol, require_dtype=require_dtype)
    return _finish(judge_value(name, value, expected, mistakes=mistakes, **tol), hint, None).passed


def last_result() -> Verdict | None:
    """The verdict the last ``check_function`` / ``check_value`` printed (for tests and tools)."""
    return _STATE["last"]


def hint(name: str | None = None) -> None:
    """Print the next hint level of an exercise, by name or a prefix such as "Exercise 2" (default:
    the last one that failed). The levels seen stay seen for the rest of the session."""
    key = _resolve(name)
    if key is None:
        print(f"No checked exercise matches {name!r}; checked so far: {', '.join(map(repr, _HINTS)) or 'none'}.")
        return
    levels, seen = _HINTS[key], _SHOWN.get(key, 0)
    if seen >= len(levels):
        print(f"{key}: that was the last hint ({len(levels)} of {len(levels)}):\n{_INDENT}{levels[-1]}")
        return
    _SHOWN[key] = seen + 1
    more = [_more(key, seen + 1, len(levels))] if seen + 1 < len(levels) else []
    print(f"\n{_INDENT}".join([f"{key}: {_hint_label(seen, len(levels))}: {levels[seen]}", *more]))


def reset() -> None:
    """Forget the hint levels seen and the last verdict, as a fresh kernel would (used by tests)."""
    _HINTS.clear()
    _SHOWN.clear()
    _STATE.update(last=None, last_failed=None)


_HINTS: dict[str, list[str]] = {}  # exercise name -> hint levels, the most recently checked last
_SHOWN: dict[str, int] = {}  # exercise name -> how many levels the learner has seen
_STATE: dict[str, Any] = {"last": None, "last_failed": None}


def _finish(v: Verdict, hint: str | Sequence[str], reference: Callable | None) -> Verdict:
    levels = [hint] if isinstance(hint, str) else list(hint)
    if not levels:
        raise ValueError(f"{v.name}: hint needs at least one level")
    _HINTS.pop(v.name, None)
    _HINTS[v.name] = levels
    if v.status == FAIL:  # show the levels the learner has asked for, at least the first
        _SHOWN[v.name] = max(_SHOWN.get(v.name, 0), 1)
    v = dataclasses.replace(v, report="\n".join(_report_lines(v, levels, reference)))
    _STATE.update(last=v, last_failed=v.name if v.status == FAIL else _STATE["last_failed"])
    if not v.passed and os.environ.get(REQUIRE_ENV) == "1":
        what = "not solved" if v.status == TODO else v.problem
        raise ExerciseFailed(f"{v.name}: {what}, but {REQUIRE_ENV}=1 requires every exercise to pass\n{v.report}")
    print(v.report)
    return v


def _report_lines(v: Verdict, levels: list[str], reference: Callable | None) -> list[str]:
    ref = f"the reference `{_qualname(reference)}`" if reference else None
    if v.status == PASS:
        cases = f"{v.n_cases} test case" + "s" * (v.n_cases != 1)
        return [f"PASS  {v.name}" + (f": matches dlib's reference on {cases}." if ref else ".")]
    if v.status == TODO:
        return [f"TODO  {v.name}: not solved yet; " + (f"carrying on with {ref}." if ref else "skipping.")]
    lines = [f"Problem: {v.problem}"]
    lines += [f"Failing inputs: {v.inputs}"] if v.inputs else []
    lines += [f"This looks like: {v.mistake}."] if v.mistake else []
    seen = _SHOWN[v.name]
    lines += [f"{_hint_label(k, len(levels))}: {levels[k]}" for k in range(min(seen, len(levels)))]
    lines += [_more(v.name, seen, len(levels))] if seen < len(levels) else []
    lines += [f"Carrying on with {ref}."] if ref else []
    return [f"FAIL  {v.name}"] + [_INDENT + line for line in lines]


def _hint_label(k: int, n: int) -> str:
    return "Hint" if n == 1 else f"Hint {k + 1} of {n}"


def _more(name: str, seen: int, n: int) -> str:
    what = "the last hint, the formula" if seen + 1 == n else f"hint {seen + 1} of {n}"
    return f'More help: dlib.exercises.hint("{name}") shows {what}.'


def _resolve(name: str | None) -> str | None:
    if name is None:
        return _STATE["last_failed"] if _STATE["last_failed"] in _HINTS else next(reversed(_HINTS), None)
    if name in _HINTS:
        return name
    matches = [k for k in _HINTS if k.lower().startswith(name.strip().lower())]
    return matches[-1] if matches else None


def _qualname(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


__all__ = [
    "FAIL",
    "PASS",
    "REQUIRE_ENV",
    "TODO",
    "ExerciseFailed",
    "Verdict",
    "assert_catalogue_recognised",
    "catalogue_problems",
    "check_function",
    "check_value",
    "describe_inputs",
    "dtype_mistake",
    "hint",
    "judge_function",
    "judge_value",
    "last_result",
    "reset",
]
