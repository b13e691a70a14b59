"""The interview question bank (docs/interview/questions.yaml), its loader dlib.interview, and the flash-card export.

Fast: the notebooks' JSON is read, never executed.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from dlib.interview import (
    LEVELS,
    TOPICS,
    Question,
    find_cell,
    flashcards_csv,
    interview_questions,
    load_bank,
    to_html,
)

ROOT = Path(__file__).resolve().parent.parent
COURSE = [f"{k:02d}" for k in range(1, 13)]  # the bank covers notebooks 01-12 (00 and 13 build on it)
NOTEBOOKS = sorted(p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb") if p.stem[:2] in COURSE)
GOOD = dict(id="a-good-entry", topic="sampling", level="intuition", shows="05_sampling.ipynb#7a54bc79")


@pytest.fixture(scope="module")
def bank() -> list[Question]:
    return load_bank()


def cell_ids(folder: str, notebook: str) -> set[str]:
    """The cell ids of a notebook, read straight from its JSON (independently of dlib.interview)."""
    return {c["id"] for c in json.loads((ROOT / folder / notebook).read_text())["cells"]}


def details_in_section(notebook: str) -> int:
    """How many <details> blocks the notebook's '## Interview questions' section holds, counted from the raw JSON."""
    cells = json.loads((ROOT / "solutions" / f"{notebook}.ipynb").read_text())["cells"]
    sections = [
        "".join(c["source"]).split("## Interview questions", 1)[1]
        for c in cells
        if c["cell_type"] == "markdown" and "## Interview questions" in "".join(c["source"])
    ]
    assert len(sections) == 1, f"{notebook}: expected one interview section, found {len(sections)}"
    return sections[0].split("\n## ", 1)[0].count("<details>")


def test_the_course_has_twelve_notebooks():
    assert [n[:2] for n in NOTEBOOKS] == COURSE


def test_size_ids_levels_topics(bank):
    assert len(bank) >= 120
    ids = Counter(q.id for q in bank)
    assert not [i for i, n in ids.items() if n > 1], "duplicate ids"
    levels = Counter(q.level for q in bank)
    assert set(levels) == set(LEVELS) and min(levels.values()) >= 10, levels
    assert {q.topic for q in bank} <= set(TOPICS)


def test_every_notebook_has_questions(bank):
    shown = Counter(q.notebook for q in bank)
    asked = Counter(q.from_ref.split("#")[0] for q in bank if q.from_ref)
    for name in NOTEBOOKS:
        assert shown[name] >= 3 and asked[name] >= 1, name


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_every_pointer_names_a_cell_in_both_folders(bank, folder):
    for q in bank:
        notebook, cell_id = q.shows_cell
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", notebook), q.shows
        assert cell_id in cell_ids(folder, notebook), f"{q.id}: {folder}/{notebook} has no cell {cell_id}"
        assert find_cell(q.shows, folder=folder)["id"] == cell_id


def test_every_question_has_text(bank):
    for q in bank:
        assert q.question.strip() and q.answer.strip(), q.id
        assert "<details" not in q.answer and "</summary>" not in q.question, q.id


def test_every_notebook_question_is_in_the_bank_exactly_once(bank):
    refs = Counter(q.from_ref for q in bank if q.from_ref)
    assert max(refs.values()) == 1, [r for r, n in refs.items() if n > 1]
    total = 0
    for name in NOTEBOOKS:
        n = details_in_section(name)
        total += n
        assert len(interview_questions(name)) == n, name
        assert sorted(int(r.split("#")[1]) for r in refs if r.startswith(name + "#")) == list(range(1, n + 1)), name
    assert total == sum(refs.values()) == 87


def test_from_text_is_the_notebooks(bank):
    for q in bank:
        if q.from_ref:
            name, k = q.from_ref.split("#")
            raw = "".join(
                "".join(c["source"]) for c in json.loads((ROOT / "solutions" / f"{name}.ipynb").read_text())["cells"]
            )
            assert q.question in raw and q.answer in raw, q.id
            assert (q.question, q.answer) == interview_questions(name)[int(k) - 1]


def test_unnumbered_summaries_are_numbered_by_order():
    pairs = interview_questions("09_audio")
    assert len(pairs) == 4 and pairs[0][0] == "Why are waveforms harder to generate than images?"
    assert interview_questions("05_sampling.ipynb")[0][0].startswith("Why can DDIM sample")  # <b>1. ...</b> stripped


def test_study_guide_questions(bank):
    guide = [q for q in bank if q.source == "study-guide"]
    assert len(guide) == 4 and all(q.from_ref is None for q in guide)
    text = " ".join(q.question for q in guide)
    for words in ("intuition behind diffusion", "GANs", "sampling faster", "classifier-free guidance"):
        assert words in text, words


def test_new_questions(bank):
    new = [q for q in bank if q.from_ref is None and q.source is None]
    assert len(new) >= 30
    levels = Counter(q.level for q in new)
    assert levels["systems"] >= 8 and levels["implementation"] >= 8 and levels["derivation"] >= 5, levels
    for q in new:
        assert 200 < len(q.answer) < 1400, f"{q.id}: {len(q.answer)} characters; answer in 2-6 sentences"


def test_question_pointer_parts():
    q = Question("x", "sampling", "intuition", "Q?", "A.", "05_sampling.ipynb#7a54bc79")
    assert q.shows_cell == ("05_sampling.ipynb", "7a54bc79") and q.notebook == "05_sampling"


def write_bank(tmp_path: Path, entries) -> Path:
    path = tmp_path / "bank.yaml"
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


def test_a_good_bank_loads(tmp_path):
    entries = [dict(GOOD, question="Why?", answer="Because."), dict(GOOD, id="another", **{"from": "05_sampling#2"})]
    bank = load_bank(write_bank(tmp_path, entries))
    assert [q.id for q in bank] == ["a-good-entry", "another"] and bank[1].question.startswith("What does")


BAD = {
    "unknown level": ([dict(GOOD, level="expert", question="Q", answer="A")], "unknown level 'expert'"),
    "unknown topic": ([dict(GOOD, topic="gans", question="Q", answer="A")], "unknown topic 'gans'"),
    "duplicate ids": ([dict(GOOD, question="Q", answer="A")] * 2, "entry 2: duplicate id 'a-good-entry'"),
    "missing answer": ([dict(GOOD, question="Q")], "entry 1 \\('a-good-entry'\\): missing 'answer'"),
    "empty answer": ([dict(GOOD, question="Q", answer="  ")], "missing 'answer'"),
    "from and question": ([dict(GOOD, question="Q", answer="A", **{"from": "05_sampling#1"})], "not both"),
    "from out of range": ([dict(GOOD, **{"from": "05_sampling#13"})], "05_sampling has 12 interview questions"),
    "from an absent notebook": ([dict(GOOD, **{"from": "99_nothing#1"})], "cannot be resolved"),
    "from malformed": ([dict(GOOD, **{"from": "05_sampling-1"})], "'NN_name#K'"),
    "shows malformed": ([dict(GOOD, shows="05_sampling#7a54bc79", question="Q", answer="A")], "not of the form"),
    "shows no cell": ([dict(GOOD, shows="05_sampling.ipynb#nosuchid", question="Q", answer="A")], "names no cell"),
    "shows no notebook": ([dict(GOOD, shows="99_nothing.ipynb#7a54bc79", question="Q", answer="A")], "names no cell"),
    "unknown key": ([dict(GOOD, question="Q", answer="A", hint="x")], "unknown keys \\['hint'\\]"),
    "bad id": ([dict(GOOD, id="Not A Slug", question="Q", answer="A")], "slug"),
    "missing shows": ([{k: v for k, v in dict(GOOD, question="Q", answer="A").items() if k != "shows"}], "'shows'"),
    "empty source": ([dict(GOOD, question="Q", answer="A", source="")], "source"),
    "not a mapping": (["just a string"], "entry 1: expected a mapping"),
    "not a list": ({"questions": []}, "expected a YAML list"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_entries_are_refused_by_name(tmp_path, case):
    entries, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        load_bank(write_bank(tmp_path, entries))


def test_missing_bank_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="questions.yaml"):
        load_bank(root=tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing.yaml"):
        load_bank(tmp_path / "nothing.yaml")


def test_find_cell_errors():
    with pytest.raises(KeyError, match="05_sampling.ipynb#nosuchid"):
        find_cell("05_sampling.ipynb#nosuchid")
    with pytest.raises(ValueError, match="NN_name.ipynb#<cell id>"):
        find_cell("05_sampling#7a54bc79")
    with pytest.raises(FileNotFoundError):
        find_cell("99_nothing.ipynb#7a54bc79")


def test_to_html():
    assert to_html("$a < b$ and $$c$$") == r"\(a &lt; b\) and \[c\]"
    assert to_html("**bold** `x * y` and *it*\n\nnext") == "<b>bold</b> <code>x * y</code> and <i>it</i><br><br>next"
    assert to_html('a "quoted"\nline\n- item') == "a &quot;quoted&quot; line<br>- item"


def test_flashcards_round_trip(bank, tmp_path):
    path = tmp_path / "deck" / "flashcards.csv"
    assert flashcards_csv(bank, path) == len(bank)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[:3] == ["#separator:tab", "#html:true", "#tags column:3"]
    rows = list(csv.reader(lines[3:-1], delimiter="\t"))
    assert lines[-1] == "" and len(rows) == len(bank)
    for q, (front, back, tags) in zip(bank, rows, strict=True):
        assert front and back and "$" not in front + back, q.id
        assert f"cell {q.shows_cell[1]}" in back and f"See notebook {q.notebook[:2]}" in back
        assert tags.split()[:3] == ["diffusion-course", f"topic::{q.topic}", f"level::{q.level}"]
    assert sum(r"\(" in front + back for front, back, _ in rows) > 100
