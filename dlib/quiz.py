"""Self-check quizzes and drill stopwatches: multiple choice and numeric answers with a tolerance.

A ``Quiz`` holds ``Choice`` and ``Numeric`` items (or dicts with ``kind: "choice" | "numeric"``, so catalogues can
keep plain data). It always works without widgets: ``grade({id: answer})`` returns a ``Result`` whose ``report``
explains each wrong answer; ``print_questions()`` / ``print_answers()`` print plain text. ``show()`` draws ipywidgets
in a live kernel that has them (``DLIB_QUIZ_PLAIN=1`` forces text). A choice is answered with its letter ("b") or
0-based index; a number is right within ``abs_tol + rel_tol * |answer|``. ``Stopwatch`` times a coding drill.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PLAIN_ENV = "DLIB_QUIZ_PLAIN"
LETTERS = "abcdefghij"


@dataclass(frozen=True)
class Choice:
    """A multiple-choice item; ``answer`` is the 0-based index of the correct option."""

    id: str
    prompt: str
    options: tuple[str, ...]
    answer: int
    explanation: str
    ref: str = ""  # where the course shows it: a bank id or a notebook section

    def __post_init__(self) -> None:
        if not 2 <= len(self.options) <= len(LETTERS) or not 0 <= self.answer < len(self.options):
            raise ValueError(f"{self.id}: a choice needs 2 to {len(LETTERS)} options and an answer index among them")

    def index(self, given: Any) -> int:
        """The option index of an answer given as a letter or an index; ValueError if it names no option."""
        if isinstance(given, bool) or not isinstance(given, (int, str)):
            raise TypeError(f"{self.id}: answer with an option letter or index, got {type(given).__name__}")
        k = LETTERS.find(given.strip().lower()) if isinstance(given, str) and len(given.strip()) == 1 else given
        if not isinstance(k, int) or not 0 <= k < len(self.options):
            raise ValueError(f"{self.id}: {given!r} is not an option (a to {LETTERS[len(self.options) - 1]})")
        return k

    def correct(self, given: Any) -> bool:
        return self.index(given) == self.answer

    def answer_text(self) -> str:
        return f"({LETTERS[self.answer]}) {self.options[self.answer]}"


@dataclass(frozen=True)
class Numeric:
    """A numeric item: correct within ``abs_tol + rel_tol * |answer|``."""

    id: str
    prompt: str
    answer: float
    explanation: str
    abs_tol: float = 0.0
    rel_tol: float = 1e-2
    ref: str = ""

    def __post_init__(self) -> None:
        if self.abs_tol < 0 or self.rel_tol < 0 or (self.abs_tol == 0 and self.rel_tol == 0 and self.answer == 0):
            raise ValueError(f"{self.id}: tolerances must be >= 0 and leave some room around the answer")

    def correct(self, given: Any) -> bool:
        if isinstance(given, bool) or not isinstance(given, (int, float)):
            raise TypeError(f"{self.id}: answer with a number, got {type(given).__name__}")
        return math.isfinite(given) and abs(given - self.answer) <= self.abs_tol + self.rel_tol * abs(self.answer)

    def answer_text(self) -> str:
        room = f"within {self.abs_tol:g} + {self.rel_tol:g} x |answer|" if self.abs_tol or self.rel_tol else "exactly"
        return f"{self.answer:.6g} (accepted {room})"


Item = Choice | Numeric
_KINDS: dict[str, type] = {"choice": Choice, "numeric": Numeric}


def make_item(spec: Item | Mapping[str, Any]) -> Item:
    """An item from itself or from a dict with ``kind`` ("choice" or "numeric") and the item's fields."""
    if isinstance(spec, (Choice, Numeric)):
        return spec
    fields = dict(spec)
    if (kind := fields.pop("kind", None)) not in _KINDS:
        raise ValueError(f"item {fields.get('id', '?')!r}: kind must be one of {sorted(_KINDS)}, got {kind!r}")
    return _KINDS[kind](**fields | ({"options": tuple(fields.get("options", ()))} if kind == "choice" else {}))


@dataclass(frozen=True)
class Result:
    """A graded quiz: ``score`` out of ``total``; ``wrong`` maps item ids to their feedback lines."""

    title: str
    score: int
    total: int
    wrong: dict[str, str] = field(default_factory=dict)
    unanswered: tuple[str, ...] = ()

    @property
    def report(self) -> str:
        lines = [f"{self.title}: {self.score} / {self.total}"]
        lines += [f"  WRONG {k}: {text}" for k, text in self.wrong.items()]
        lines += [f"  not answered: {', '.join(self.unanswered)}"] if self.unanswered else []
        return "\n".join(lines)


class Quiz:
    """A titled list of items, graded with ``grade`` and shown with ``show`` (widgets) or ``print_questions``."""

    def __init__(self, title: str, items: Iterable[Item | Mapping[str, Any]]):
        self.title = title
        self.items = [make_item(s) for s in items]
        ids = [q.id for q in self.items]
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"{title}: a quiz needs at least one item and unique ids, got {ids}")
        self._by_id = {q.id: q for q in self.items}

    def __len__(self) -> int:
        return len(self.items)

    def model_answers(self) -> dict[str, Any]:
        """The correct answers, in the form ``grade`` takes (letters and numbers)."""
        return {q.id: LETTERS[q.answer] if isinstance(q, Choice) else q.answer for q in self.items}

    def grade(self, answers: Mapping[str, Any]) -> Result:
        """Grade ``{item id: answer}``; unknown ids raise KeyError, unusable answers TypeError or ValueError."""
        if unknown := [k for k in answers if k not in self._by_id]:
            raise KeyError(f"{self.title}: no items {unknown}; the ids are {list(self._by_id)}")
        wrong = {
            k: f"you said {given!r}; the answer is {q.answer_text()}. {q.explanation}"
            for k, given in answers.items()
            if not (q := self._by_id[k]).correct(given)
        }
        missing = tuple(q.id for q in self.items if q.id not in answers)
        return Result(self.title, len(answers) - len(wrong), len(self.items), wrong, missing)

    def questions_text(self, answers: bool = False) -> str:
        lines = [f"{self.title} ({len(self.items)} questions)"]
        for n, q in enumerate(self.items, 1):
            lines.append(f"{n}. [{q.id}] {q.prompt}")
            if isinstance(q, Choice):
                lines += [f"   ({LETTERS[i]}) {o}" for i, o in enumerate(q.options)]
            if answers:
                lines.append(f"   Answer: {q.answer_text()} {q.explanation}" + (f" (see {q.ref})" if q.ref else ""))
        return "\n".join(lines)

    def print_questions(self) -> None:
        print(self.questions_text())

    def print_answers(self) -> None:
        print(self.questions_text(answers=True))

    def show(self) -> None:
        """Interactive widgets in a live kernel with ipywidgets; the plain questions otherwise."""
        if not widgets_live():
            self.print_questions()
            return
        import ipywidgets as w  # lazily: the module works without it

        rows, inputs = [], {}
        for n, q in enumerate(self.items, 1):
            if isinstance(q, Choice):
                opts = [(f"({LETTERS[i]}) {o}", LETTERS[i]) for i, o in enumerate(q.options)]
                inputs[q.id] = w.RadioButtons(options=opts, value=None, layout=w.Layout(width="auto"))
            else:
                inputs[q.id] = w.Text(placeholder="a number", description="answer")
            rows += [w.HTML(f"<b>{n}.</b> {q.prompt}"), inputs[q.id]]
        out, button = w.Output(), w.Button(description="Grade")

        def on_click(_: Any) -> None:
            out.clear_output()
            with out:
                try:
                    given = {k: i.value if isinstance(i, w.RadioButtons) else float(i.value) for k, i in inputs.items() if i.value not in (None, "")}  # fmt: skip
                    print(self.grade(given).report)
                except (TypeError, ValueError) as e:
                    print(f"Could not grade: {e}")

        button.on_click(on_click)
        from IPython.display import display

        display(w.VBox([w.HTML(f"<h4>{self.title}</h4>"), *rows, button, out]))


def widgets_live() -> bool:
    """True in a running IPython kernel with ipywidgets installed, unless ``DLIB_QUIZ_PLAIN=1``."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    return os.environ.get(PLAIN_ENV) != "1" and getattr(get_ipython(), "kernel", None) is not None


class Stopwatch:
    """Times a coding drill against a target in minutes: ``start()``, then ``stop(passed)`` says how it went."""

    def __init__(self, name: str, target_min: float, clock: Callable[[], float] = time.monotonic):
        if target_min <= 0:
            raise ValueError(f"{name}: the target must be a positive number of minutes, got {target_min}")
        self.name, self.target_min, self._clock, self._t0, self.report = name, target_min, clock, None, ""

    def start(self) -> Stopwatch:
        self._t0 = self._clock()
        print(f"{self.name}: stopwatch started, target {self.target_min:g} min. Write the function below.")
        return self

    def stop(self, passed: bool) -> None:
        """Print the elapsed time against the target (kept in ``self.report``); a wall-clock time, never in a checked cell."""
        if self._t0 is None:
            raise RuntimeError(f"{self.name}: start() the stopwatch before stop()")
        minutes = (self._clock() - self._t0) / 60
        verdict = ("solved within the target" if minutes <= self.target_min else "solved, over the target: drill it again tomorrow") if passed else "not solved yet: keep going, or read the hints and drill it again tomorrow"  # fmt: skip
        self.report = f"{self.name}: {minutes:.1f} min (target {self.target_min:g} min): {verdict}."
        print(self.report)
