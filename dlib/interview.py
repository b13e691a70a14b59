"""The course's interview question bank: ``docs/interview/questions.yaml``, checked, and exported as flash cards.

Each entry of the YAML list is a question with an ``id``, a ``topic`` (one of ``TOPICS``), a ``level`` (one of
``LEVELS``) and ``shows``, the cell that demonstrates the answer, written ``NN_name.ipynb#<cell id>`` (the nbformat
cell id, the same in ``solutions/`` and ``notebooks/``). Its text comes from one of two places:

- ``from: NN_name#K``: question K of the notebook's ``## Interview questions`` section, read from
  ``solutions/NN_name.ipynb`` at load time (one text in one place);
- ``question:`` and ``answer:``: Markdown with ``$LaTeX$``, for questions the notebooks do not ask.

``source: study-guide`` marks the study guide's own questions (answered afresh here).

    bank = load_bank()                          # list[Question], validated
    interview_questions("05_sampling")          # [(question, answer), ...] of one notebook
    find_cell("05_sampling.ipynb#7a54bc79")     # the cell's nbformat dict
    flashcards_csv(bank, "build/flashcards.csv")  # an Anki text import, one note per question
"""

from __future__ import annotations

import csv
import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

LEVELS = ("intuition", "derivation", "implementation", "systems")
TOPICS = (
    "forward-process",
    "schedules",
    "unet",
    "training",
    "sampling",
    "conditioning",
    "latent",
    "editing",
    "audio",
    "metrics",
    "score-flow",
    "fast-sampling",
    "systems",
)
REPO_ROOT = Path(__file__).resolve().parent.parent  # the repository: dlib's parent
BANK = Path("docs") / "interview" / "questions.yaml"  # relative to the repository root
KEYS = ("id", "topic", "level", "shows", "from", "question", "answer", "source")

_SHOWS = re.compile(r"^(\d\d_[A-Za-z0-9_]+)\.ipynb#([A-Za-z0-9_-]+)$")
_FROM = re.compile(r"^(\d\d_[A-Za-z0-9_]+)#([1-9][0-9]*)$")
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_DETAILS = re.compile(r"<details>\s*<summary>(.*?)</summary>(.*?)</details>", re.S)
_NUMBERED = re.compile(r"^<b>\s*(\d+)\.\s*(.*?)\s*</b>$", re.S)
_INLINE = re.compile(r"(\$\$.+?\$\$|\$.+?\$|`[^`]+`)", re.S)


@dataclass(frozen=True)
class Question:
    """One question of the bank; ``question`` and ``answer`` are Markdown with ``$LaTeX$``."""

    id: str
    topic: str
    level: str
    question: str
    answer: str
    shows: str  # "NN_name.ipynb#<cell id>"
    from_ref: str | None = None  # "NN_name#K" when the text is the notebook's
    source: str | None = None  # "study-guide" for the study guide's questions

    @property
    def shows_cell(self) -> tuple[str, str]:
        """The notebook file name and the cell id of ``shows``: ``("05_sampling.ipynb", "7a54bc79")``."""
        notebook, cell_id = self.shows.split("#", 1)
        return notebook, cell_id

    @property
    def notebook(self) -> str:
        """The notebook that demonstrates the answer, without its suffix: ``"05_sampling"``."""
        return self.shows_cell[0].removesuffix(".ipynb")


def _root(root: str | Path | None) -> Path:
    return REPO_ROOT if root is None else Path(root)


def _notebook_path(notebook: str | Path, root: str | Path | None, folder: str = "solutions") -> Path:
    path = Path(notebook)
    if path.suffix != ".ipynb":
        path = path.with_name(path.name + ".ipynb")
    if not path.is_absolute() and path.parent == Path("."):
        path = _root(root) / folder / path.name
    if not path.is_file():
        raise FileNotFoundError(f"no notebook {path}: expected a name like '05_sampling' of a file in {folder}/")
    return path


@lru_cache(maxsize=64)
def _cells(path: Path, mtime: float) -> tuple[dict[str, Any], ...]:  # mtime: a notebook saved since is read again
    return tuple(json.loads(path.read_text(encoding="utf-8"))["cells"])


def interview_questions(notebook: str | Path, root: str | Path | None = None) -> list[tuple[str, str]]:
    """The (question, answer) pairs of a notebook's ``## Interview questions`` section, in order.

    ``notebook`` is a name (``"05_sampling"``, with or without ``.ipynb``) looked up in ``root/solutions/``, or a
    path. The section is the text from the heading to the next ``## `` heading; each question is a
    ``<details><summary><b>K. question</b></summary> answer </details>`` block (unnumbered summaries are
    numbered by their order).
    """
    path = _notebook_path(notebook, root)
    for cell in _cells(path, path.stat().st_mtime):
        source = "".join(cell["source"])
        if cell["cell_type"] != "markdown" or "## Interview questions" not in source:
            continue
        section = re.split(r"^## Interview questions[ \t]*$", source, maxsplit=1, flags=re.M)[-1]
        section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
        pairs = []
        for k, (summary, answer) in enumerate(_DETAILS.findall(section), start=1):
            summary = summary.strip()
            numbered = _NUMBERED.match(summary)
            if numbered:
                if int(numbered.group(1)) != k:
                    raise ValueError(f"{path.name}: interview question {k} is numbered {numbered.group(1)}")
                summary = numbered.group(2)
            pairs.append((re.sub(r"</?b>", "", summary).strip(), answer.strip()))
        if not pairs:
            raise ValueError(f"{path.name}: the '## Interview questions' section holds no <details> blocks")
        return pairs
    raise ValueError(f"{path.name} has no markdown cell with a '## Interview questions' section")


def find_cell(pointer: str, root: str | Path | None = None, folder: str = "solutions") -> dict[str, Any]:
    """The cell that a ``shows`` pointer ``NN_name.ipynb#<cell id>`` names, from ``root/folder/``."""
    match = _SHOWS.match(pointer)
    if not match:
        raise ValueError(f"pointer {pointer!r}: expected 'NN_name.ipynb#<cell id>', e.g. '05_sampling.ipynb#7a54bc79'")
    path = _notebook_path(match.group(1), root, folder)
    for cell in _cells(path, path.stat().st_mtime):
        if cell.get("id") == match.group(2):
            return cell
    raise KeyError(f"pointer {pointer!r}: {folder}/{path.name} has no cell with id {match.group(2)!r}")


def _entry(raw: Any, k: int, root: Path) -> Question:
    if not isinstance(raw, dict):
        raise ValueError(f"entry {k}: expected a mapping with keys {KEYS}, got {type(raw).__name__}")
    name = f"entry {k} ({raw.get('id', 'no id')!r})"
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ValueError(f"{name}: unknown keys {unknown}; expected only {KEYS}")
    for key in ("id", "topic", "level", "shows"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ValueError(f"{name}: missing {key!r} (a non-empty string)")
    if not _ID.match(raw["id"]):
        raise ValueError(f"{name}: id must be a lower-case slug like 'sampling-ddim-without-retraining'")
    if raw["topic"] not in TOPICS:
        raise ValueError(f"{name}: unknown topic {raw['topic']!r}; expected one of {TOPICS}")
    if raw["level"] not in LEVELS:
        raise ValueError(f"{name}: unknown level {raw['level']!r}; expected one of {LEVELS}")
    if not _SHOWS.match(raw["shows"]):
        raise ValueError(f"{name}: shows {raw['shows']!r} is not of the form 'NN_name.ipynb#<cell id>'")
    try:
        find_cell(raw["shows"], root)
    except (KeyError, FileNotFoundError) as err:
        raise ValueError(f"{name}: shows names no cell: {err}") from None
    source = raw.get("source")
    if source is not None and (not isinstance(source, str) or not source.strip()):
        raise ValueError(f"{name}: source must be a non-empty string such as 'study-guide'")
    ref = raw.get("from")
    if ref is not None:
        if "question" in raw or "answer" in raw:
            raise ValueError(f"{name}: give either 'from' (the notebook's text) or 'question' and 'answer', not both")
        match = _FROM.match(str(ref))
        if not match:
            raise ValueError(f"{name}: from {ref!r} is not of the form 'NN_name#K', e.g. '05_sampling#1'")
        try:
            pairs = interview_questions(match.group(1), root)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"{name}: from {ref!r} cannot be resolved: {err}") from None
        number = int(match.group(2))
        if number > len(pairs):
            raise ValueError(f"{name}: from {ref!r}, but {match.group(1)} has {len(pairs)} interview questions")
        question, answer = pairs[number - 1]
    else:
        question, answer = raw.get("question"), raw.get("answer")
        for key, text in (("question", question), ("answer", answer)):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{name}: missing {key!r}: give 'question' and 'answer', or 'from: NN_name#K'")
    return Question(raw["id"], raw["topic"], raw["level"], question.strip(), answer.strip(), raw["shows"], ref, source)


def load_bank(path: str | Path | None = None, root: str | Path | None = None) -> list[Question]:
    """Read, resolve and validate the bank (default: ``docs/interview/questions.yaml`` of the repository).

    ``root`` is the repository whose ``solutions/`` the ``from`` and ``shows`` pointers are read from.
    Raises FileNotFoundError if the file is absent, ValueError naming the entry for anything malformed.
    """
    root_path = _root(root)
    path = root_path / BANK if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no question bank at {path}: expected the YAML list of docs/interview/questions.yaml")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a YAML list of questions, got {type(raw).__name__}")
    bank = [_entry(entry, k, root_path) for k, entry in enumerate(raw, start=1)]
    seen: dict[str, int] = {}
    for k, q in enumerate(bank, start=1):
        if q.id in seen:
            raise ValueError(f"entry {k}: duplicate id {q.id!r} (first used by entry {seen[q.id]})")
        seen[q.id] = k
    return bank


def to_html(markdown: str) -> str:
    """Markdown with ``$LaTeX$`` to Anki's HTML: ``\\(...\\)`` and ``\\[...\\]`` for MathJax, code, bold, breaks."""
    pieces = []
    for piece in _INLINE.split(markdown):
        if piece.startswith("$$") and piece.endswith("$$") and len(piece) > 4:
            pieces.append(r"\[" + html.escape(piece[2:-2], quote=False) + r"\]")
        elif piece.startswith("$") and piece.endswith("$") and len(piece) > 2:
            pieces.append(r"\(" + html.escape(piece[1:-1], quote=False) + r"\)")
        elif piece.startswith("`") and piece.endswith("`") and len(piece) > 2:
            pieces.append("<code>" + html.escape(piece[1:-1], quote=False) + "</code>")
        else:
            text = html.escape(piece, quote=False).replace('"', "&quot;")  # no CSV quoting needed
            text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text, flags=re.S)
            pieces.append(re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", text, flags=re.S))
    text = "".join(pieces).replace("\t", " ").replace("\r", "")
    paragraphs = re.split(r"\n\s*\n", text.strip())
    lines = [re.sub(r"\n(?=\s*(?:[-*] |\d+\. ))", "<br>", p) for p in paragraphs]  # keep list items apart
    return "<br><br>".join(re.sub(r"\s*\n\s*", " ", p) for p in lines)


def flashcards_csv(questions: Iterable[Question], path: str | Path) -> int:
    """Write an Anki plain-text import (tab-separated Front, Back, Tags; HTML; MathJax); return the card count.

    The header lines ``#separator:tab``, ``#html:true``, ``#tags column:3`` need Anki 2.1.54 or later.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("#separator:tab\n#html:true\n#tags column:3\n")
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        for q in questions:
            notebook, cell_id = q.shows_cell
            back = to_html(q.answer) + f"<br><br><i>See notebook {notebook[:2]} ({notebook}), cell {cell_id}.</i>"
            tags = f"diffusion-course topic::{q.topic} level::{q.level} notebook::{notebook[:2]}"
            writer.writerow([to_html(q.question), back, tags + (f" source::{q.source}" if q.source else "")])
            count += 1
    return count
