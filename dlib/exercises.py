"""Exercise checkers: run a learner's function against dlib's reference and say what happened.

Every checker prints one clear line (PASS, FAIL with a hint, or NOT SOLVED YET) and returns the
function the notebook should go on with: the learner's when it passes, dlib's reference
otherwise, so every notebook runs end to end whether or not its exercises are done.

Set ``DLIB_REQUIRE_SOLVED=1`` (the test suite does, for ``solutions/``) to turn anything but a
pass into an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

REQUIRE_ENV = "DLIB_REQUIRE_SOLVED"


class ExerciseFailed(AssertionError):
    """Raised instead of falling back when ``DLIB_REQUIRE_SOLVED=1``."""


def check_function(
    name: str,
    candidate: Callable,
    reference: Callable,
    cases: Sequence[dict[str, Any]],
    *,
    hint: str,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> Callable:
    """Compare ``candidate(**case)`` with ``reference(**case)`` on every case.

    Outputs may be tensors, numbers, or tuples/lists of them. Returns the function to use next.
    """
    for i, case in enumerate(cases):
        expected = reference(**case)
        try:
            got = candidate(**case)
        except NotImplementedError:
            return _unsolved(name, reference)
        except Exception as e:  # a learner's bug: report it, carry on with the reference
            return _failed(name, reference, f"raised {type(e).__name__}: {e}", hint)
        problem = _compare(got, expected, atol, rtol)
        if problem:
            return _failed(name, reference, f"test case {i + 1} of {len(cases)}: {problem}", hint)
    _report(f"PASS  {name}: matches dlib's reference on {len(cases)} test cases.")
    return candidate


def check_value(name: str, value: Any, expected: Any, *, hint: str, atol: float = 1e-6, rtol: float = 1e-4) -> bool:
    """Check a computed answer (a number, tensor, string or tuple). ``...`` or None means not solved."""
    if value is ... or value is None:
        _unsolved(name, None)
        return False
    problem = _compare(value, expected, atol, rtol)
    if problem:
        _failed(name, None, problem, hint)
        return False
    _report(f"PASS  {name}.")
    return True


def _compare(got: Any, expected: Any, atol: float, rtol: float) -> str | None:
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a sequence of {len(expected)} values, got {type(got).__name__}"
        for k, (g, e) in enumerate(zip(got, expected, strict=True)):
            problem = _compare(g, e, atol, rtol)
            if problem:
                return f"item {k}: {problem}"
        return None
    if isinstance(expected, str):
        return None if str(got).strip().lower() == expected.strip().lower() else f"expected {expected!r}, got {got!r}"
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    try:
        got_t = torch.as_tensor(got, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return f"expected a tensor or number, got {type(got).__name__}"
    if got_t.shape != expected_t.shape:
        return f"shape {tuple(got_t.shape)}, expected {tuple(expected_t.shape)}"
    if not torch.allclose(got_t, expected_t, atol=atol, rtol=rtol, equal_nan=True):
        err = (got_t - expected_t).abs().nan_to_num(float("inf")).max().item()
        return f"values differ from the reference (max abs error {err:.3g}, tolerance {atol:g} + {rtol:g}*|ref|)"
    return None


def _unsolved(name: str, reference: Callable | None):
    if os.environ.get(REQUIRE_ENV) == "1":
        raise ExerciseFailed(f"{name}: not solved, but {REQUIRE_ENV}=1 requires every exercise to pass")
    tail = f" carrying on with the reference `{_qualname(reference)}`." if reference else " skipping."
    _report(f"TODO  {name}: not solved yet;{tail}")
    return reference


def _failed(name: str, reference: Callable | None, problem: str, hint: str):
    if os.environ.get(REQUIRE_ENV) == "1":
        raise ExerciseFailed(f"{name}: {problem}")
    tail = f" Carrying on with the reference `{_qualname(reference)}`." if reference else ""
    _report(f"FAIL  {name}: {problem}\n      Hint: {hint}{tail}")
    return reference


def _qualname(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _report(line: str) -> None:
    print(line)
