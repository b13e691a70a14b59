"""Judging an exercise without printing: compare a candidate with the reference case by case, name the
catalogued mistake it reproduces, summarise the failing inputs. ``dlib.exercises`` prints the verdict."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

PASS, FAIL, TODO = "PASS", "FAIL", "TODO"
Case = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a checker decided. ``mistake`` names the catalogued (or dtype) mistake it recognised."""

    name: str
    status: str  # PASS | FAIL | TODO
    problem: str = ""  # what is wrong, one line ("" unless FAIL)
    mistake: str | None = None
    case: int | None = None  # 0-based index of the failing test case
    n_cases: int = 0
    inputs: str = ""  # the failing case's inputs, summarised
    report: str = dataclasses.field(default="", repr=False)  # the printed text ("" from judge_*)

    @property
    def passed(self) -> bool:
        return self.status == PASS


def dtype_mistake(got: torch.dtype, required: torch.dtype) -> str:
    """The name a checker gives a wrong output dtype, e.g. 'float32 where float64 is needed'."""
    return f"{dtype_name(got)} where {dtype_name(required)} is needed"


def judge_function(
    name: str,
    candidate: Callable,
    reference: Callable,
    cases: Sequence[Case],
    *,
    mistakes: dict[str, Callable] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    require_dtype: torch.dtype | None = None,
) -> Verdict:
    """Compare ``candidate(**case)`` with ``reference(**case)`` case by case. At the first failing case,
    name the first catalogued mistake that reproduces the candidate's outputs on every case so far."""
    outputs = []
    for i, case in enumerate(cases):
        expected = reference(**case)
        try:
            got = candidate(**case)
        except NotImplementedError:
            return Verdict(name, TODO, n_cases=len(cases))
        except Exception as e:  # a learner's bug: report it
            got = _Raised(e)
        outputs.append(got)
        problem = _problem(got, expected, case, atol, rtol)
        wrong_dtype = next((d for d in float_dtypes(got) if d != require_dtype), None) if require_dtype else None
        if problem is None and wrong_dtype is None:
            continue
        mistake = _recognise(outputs, cases, mistakes or {}, atol, rtol) if problem else None
        if wrong_dtype is not None:
            mistake = mistake or dtype_mistake(wrong_dtype, require_dtype)
            values = f"; {problem}" if problem else " (the values are within tolerance on this case)"
            problem = f"output dtype {dtype_name(wrong_dtype)}, expected {dtype_name(require_dtype)}{values}"
        elif (mine := float_dtypes(got)[:1]) and (ref := float_dtypes(expected)[:1]) and mine != ref:
            problem += f" (the output is {dtype_name(mine[0])}, the reference's {dtype_name(ref[0])})"
        problem = f"test case {i + 1} of {len(cases)}: {problem}"
        return Verdict(name, FAIL, problem, mistake, i, len(cases), describe_inputs(case))
    return Verdict(name, PASS, n_cases=len(cases))


def judge_value(
    name: str,
    value: Any,
    expected: Any,
    *,
    mistakes: dict[str, Any] | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-4,
    require_dtype: torch.dtype | None = None,
) -> Verdict:
    """Judge a computed answer (``...`` or None: not solved yet); ``mistakes`` maps names to wrong values."""
    if value is ... or value is None:
        return Verdict(name, TODO)
    wrong = {k: (lambda v=v: v) for k, v in (mistakes or {}).items()}
    tol = dict(atol=atol, rtol=rtol, require_dtype=require_dtype)
    v = judge_function(name, lambda: value, lambda: expected, [{}], mistakes=wrong, **tol)
    return dataclasses.replace(v, problem=v.problem.removeprefix("test case 1 of 1: "), case=None, n_cases=0)


# --- comparing outputs ---


class _Raised:
    """An exception kept as an output, so a candidate's error can match a catalogued mistake's."""

    def __init__(self, e: Exception):
        self.text = f"{type(e).__name__}: {e}"


def _recognise(outputs: list, cases: Sequence[Case], mistakes: dict[str, Callable], atol, rtol) -> str | None:
    """The first mistake whose outputs match the candidate's on every case so far (errors included); cases
    beyond the candidate's outputs are not tried."""
    for key, mistake in mistakes.items():
        if all(
            _problem(got, _call(mistake, case), case, atol, rtol) is None
            for got, case in zip(outputs, cases, strict=False)
        ):
            return key
    return None


def _call(fn: Callable, case: Case) -> Any:
    try:
        return fn(**case)
    except Exception as e:
        return _Raised(e)


def _problem(got: Any, expected: Any, case: Case, atol: float, rtol: float) -> str | None:
    if isinstance(expected, _Raised):  # only when matching a mistake that raises
        return None if isinstance(got, _Raised) and got.text == expected.text else "differs"
    return f"raised {got.text}" if isinstance(got, _Raised) else _compare(got, expected, atol, rtol, case)


def _compare(got: Any, expected: Any, atol: float, rtol: float, case: Case) -> str | None:
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            size = f" of {len(got)} values" if isinstance(got, (tuple, list)) else ""
            return f"expected a sequence of {len(expected)} values, got {_kind(got)}{size}"
        problems = (_compare(g, e, atol, rtol, case) for g, e in zip(got, expected, strict=True))
        return next((f"item {k}: {p}" for k, p in enumerate(problems) if p), None)
    if isinstance(expected, str):
        return None if str(got).strip().lower() == expected.strip().lower() else f"expected {expected!r}, got {got!r}"
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    try:
        got_t = torch.as_tensor(got, dtype=torch.float64).to(expected_t.device)
    except (TypeError, ValueError, RuntimeError):
        return f"expected a tensor or number, got {_kind(got)}"
    if got_t.shape != expected_t.shape:
        return f"shape {tuple(got_t.shape)}, expected {tuple(expected_t.shape)}"
    if torch.allclose(got_t, expected_t, atol=atol, rtol=rtol, equal_nan=True):
        return None
    err = (got_t - expected_t).abs().nan_to_num(float("inf"))
    where = ""
    if err.ndim:  # locate the worst element, and the integer batch inputs (such as t) at its batch position
        excess = torch.where(got_t.isnan() & expected_t.isnan(), -1.0, err - atol - rtol * expected_t.abs())
        index = [int(i) for i in torch.unravel_index(excess.argmax(), excess.shape)]
        at = [f"{k}={v[index[0]].item()}" for k, v in case.items() if _is_batch_index(v, len(got_t))]
        where = f" at index {index}" + (f", where {', '.join(at)}" if at else "")
    return f"values differ from the reference (max abs error {err.max().item():.3g}{where}; tolerance {atol:g} + {rtol:g}*|ref|)"


def _is_batch_index(v: Any, batch: int) -> bool:
    return isinstance(v, torch.Tensor) and v.ndim == 1 and not v.is_floating_point() and len(v) == batch > 1


def float_dtypes(out: Any) -> list[torch.dtype]:
    if isinstance(out, (tuple, list)):
        return [d for o in out for d in float_dtypes(o)]
    return [out.dtype] if isinstance(out, torch.Tensor) and out.is_floating_point() else []


# --- describing inputs ---


def describe_inputs(case: Case, limit: int = 400) -> str:
    """One line: scalars verbatim, tensors as shape and dtype (and values when one element or a few integers)."""
    text = ", ".join(_describe(k, v) for k, v in case.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(key: str, v: Any) -> str:
    if isinstance(v, torch.Tensor):
        head = f"{key}: {tuple(v.shape)} {dtype_name(v.dtype)}"
        if v.numel() == 1:
            return f"{head} = {v.item():.6g}"
        return f"{head} = {v.tolist()}" if not v.is_floating_point() and v.ndim == 1 and v.numel() <= 8 else head
    if isinstance(v, float):
        return f"{key}={v:.6g}"
    if v is None or isinstance(v, (bool, int, str)) or (isinstance(v, (tuple, list)) and len(repr(v)) <= 40):
        return f"{key}={v!r}"
    if isinstance(getattr(v, "T", None), int) and isinstance(getattr(v, "name", None), str):  # a Schedule
        return f"{key}: {type(v).__name__} {v.name!r} (T={v.T})"
    return f"{key}: {_kind(v)}"


def _kind(v: Any) -> str:
    if callable(v) and hasattr(v, "__name__") and not isinstance(v, torch.nn.Module):
        return f"function {v.__name__}"
    return type(v).__name__


def dtype_name(dtype: torch.dtype | None) -> str:
    return str(dtype).removeprefix("torch.")
