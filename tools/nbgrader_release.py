"""Turn solutions/ notebooks into an nbgrader assignment: mark the solution cells, then ``nbgrader generate_assignment``.

The course's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines are nbgrader's markers, but nbgrader only clears a
region in a cell whose metadata marks it as a solution cell (otherwise ``generate_assignment`` stops with "Solution
region detected in a non-solution cell"). This script writes copies of the chosen solutions/ notebooks into
``COURSE/source/ASSIGNMENT/`` with that metadata added, and nothing else changed:

- a code cell holding a region becomes an "autograded answer" (solution, not graded, not locked);
- a Markdown cell holding a region (a derivation or a find-the-bug answer) becomes a "manually graded answer"
  (nbgrader requires Markdown solution cells to carry points; ``--markdown-points``, default 1);
- with ``--grade-cells``, a locked "autograder tests" cell is inserted after every exercise checker: it asserts that
  the checker above printed PASS (``dlib.exercises.last_result()``), worth ``--checker-points`` each. The checker
  itself never raises, so the rest of the notebook runs on dlib's reference whatever the learner wrote; the test
  cell is tagged ``raises-exception`` so that its failure on an unsolved exercise does not stop "Run All".

Then it runs ``nbgrader generate_assignment`` in the course folder (the release lands in ``COURSE/release/``) and checks
that no line of any solution region survives in the released notebooks.

    python tools/nbgrader_release.py --course /tmp/course --assignment week1 01_forward_process 02_noise_schedules
    python tools/nbgrader_release.py --course /tmp/course --assignment week1 02_noise_schedules --grade-cells --no-db

nbgrader is not a dependency of the course: ``pip install nbgrader`` into the course's .venv first
(docs/instructors/nbgrader.md says which version was checked).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")
_CHECKER = re.compile(r"\bcheck_(?:function|value)\(")
GRADE_CELL = """\
# nbgrader: points when the checker above printed PASS (the checker itself never raises)
import dlib.exercises as _exercises

_verdict = _exercises.last_result()
assert _verdict is not None and _verdict.passed, f"{_verdict.name}: {_verdict.status}" if _verdict else "no checker ran"
"""


def has_region(source: str) -> bool:
    return any(_MARKER.match(line) for line in source.split("\n"))


def split_regions(source: str) -> tuple[list[str], list[str]]:
    """(lines inside the solution regions, lines outside them) of one cell's source, stripped, blanks dropped."""
    inside_lines, outside_lines, inside = [], [], False
    for line in source.split("\n"):
        m = _MARKER.match(line)
        if m:
            inside = m.group(1) == "BEGIN"
        elif line.strip():
            (inside_lines if inside else outside_lines).append(line.strip())
    return inside_lines, outside_lines


def _meta(grade_id: str, *, solution: bool, grade: bool, locked: bool, points: float | None = None) -> dict:
    meta = dict(grade=grade, grade_id=grade_id, locked=locked, schema_version=3, solution=solution, task=False)
    if points is not None:
        meta["points"] = points
    return meta


def mark_for_nbgrader(
    nb: nbformat.NotebookNode,
    stem: str,
    *,
    markdown_points: float = 1,
    grade_cells: bool = False,
    checker_points: float = 1,
) -> nbformat.NotebookNode:
    """A copy of a solutions/ notebook with nbgrader's cell metadata on every cell that holds a solution region
    (and, with ``grade_cells``, a locked test cell after every checker). Sources are unchanged."""
    nb = copy.deepcopy(nb)
    cells = []
    for i, cell in enumerate(nb.cells):
        cells.append(cell)
        if has_region(cell.source):
            if cell.cell_type == "code":
                cell.metadata["nbgrader"] = _meta(f"{stem}-answer-{i}", solution=True, grade=False, locked=False)
            else:  # nbgrader: a Markdown answer is always manually graded, with points
                cell.metadata["nbgrader"] = _meta(
                    f"{stem}-answer-{i}", solution=True, grade=True, locked=False, points=markdown_points
                )
        if grade_cells and cell.cell_type == "code" and _CHECKER.search(cell.source):
            test = nbformat.v4.new_code_cell(GRADE_CELL.rstrip("\n"))
            test.metadata["nbgrader"] = _meta(
                f"{stem}-checker-{i}", solution=False, grade=True, locked=True, points=checker_points
            )
            # an unsolved exercise fails this cell; the tag lets "Run All" (JupyterLab, nbclient, papermill) go on
            test.metadata["tags"] = ["raises-exception"]
            cells.append(test)
    nb.cells = cells
    return nb


def write_config(course: Path, course_id: str = "diffusion-course") -> Path:
    path = course / "nbgrader_config.py"
    path.write_text(
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.course_id = {course_id!r}\n"
        f"c.CourseDirectory.root = {str(course.resolve())!r}\n"
        # our notebooks take 10 s to 20 min; nbgrader's default per-cell timeout is 30 s
        "c.ExecutePreprocessor.timeout = 1800\n"
        "c.Execute.timeout = 1800\n"
        # autograding runs the notebooks through nbclient, whose wait can hang on a widget cell (tools/kernel_channels.py)
        "import sys  # noqa: E402\n"
        f"sys.path.insert(0, {str(ROOT / 'tools')!r})\n"
        "import kernel_channels  # noqa: E402\n"
        "kernel_channels.install()\n"
    )
    return path


def prepare(
    course: Path,
    assignment: str,
    names: list[str],
    *,
    markdown_points: float = 1,
    grade_cells: bool = False,
    checker_points: float = 1,
) -> list[Path]:
    """Write nbgrader_config.py and the marked copies into COURSE/source/ASSIGNMENT/; return their paths."""
    course.mkdir(parents=True, exist_ok=True)
    if not (course / "nbgrader_config.py").exists():
        write_config(course)
    target = course / "source" / assignment
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        path = resolve(name)
        nb = nbformat.read(path, as_version=4)
        marked = mark_for_nbgrader(
            nb, path.stem, markdown_points=markdown_points, grade_cells=grade_cells, checker_points=checker_points
        )
        nbformat.write(marked, target / path.name)
        written.append(target / path.name)
    return written


def resolve(name: str) -> Path:
    """A solutions/ notebook from its file name, its stem or its number ("02")."""
    candidates = sorted(SOLUTIONS.glob("*.ipynb"))
    for p in candidates:
        if name in (p.name, p.stem, p.name[:2]):
            return p
    raise SystemExit(f"no notebook {name!r} in solutions/ (have: {', '.join(p.stem for p in candidates)})")


def nbgrader_command() -> list[str]:
    """nbgrader from the interpreter running this script (the course's .venv)."""
    exe = Path(sys.executable).parent / "nbgrader"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("nbgrader")
    if found:
        return [found]
    raise SystemExit("nbgrader is not installed here: .venv/bin/pip install nbgrader (docs/instructors/nbgrader.md)")


def generate(course: Path, assignment: str, *, db: bool = True) -> subprocess.CompletedProcess:
    cmd = [*nbgrader_command(), "generate_assignment", assignment, "--force"] + ([] if db else ["--no-db"])
    return subprocess.run(cmd, cwd=course, capture_output=True, text=True, env=venv_env())


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's bin/ first on PATH: nbgrader's gradebook runs ``alembic`` by name,
    which fails ("No such file or directory: 'alembic'") when the venv is not activated."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def leaked_solutions(source_nb: Path, released_nb: Path) -> list[str]:
    """Problems with a released notebook: a marker left, or a line of a solution region present in the release
    (a line that also appears outside every region of the source, such as a formula quoted in the prose, is fine)."""
    src = nbformat.read(source_nb, as_version=4)
    rel = nbformat.read(released_nb, as_version=4)
    released_text = "\n".join(c.source for c in rel.cells)
    problems = [f"{released_nb.name}: a solution marker is left" for m in (BEGIN, END) if m in released_text]
    inside, outside = set(), set()
    for cell in src.cells:
        i, o = split_regions(cell.source)
        inside.update(i)
        outside.update(o)
    released_lines = {line.strip() for line in released_text.split("\n")}
    for line in sorted((inside - outside) & released_lines):
        problems.append(f"{released_nb.name}: solution line still present: {line[:80]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", help="solutions/ notebooks: file name, stem or number (02)")
    parser.add_argument("--course", type=Path, required=True, help="the nbgrader course folder (created if missing)")
    parser.add_argument("--assignment", required=True, help="the assignment's name, e.g. week1")
    parser.add_argument("--grade-cells", action="store_true", help="add a locked test cell after every checker")
    parser.add_argument("--checker-points", type=float, default=1)
    parser.add_argument("--markdown-points", type=float, default=1)
    parser.add_argument("--no-db", action="store_true", help="do not record the assignment in nbgrader's gradebook")
    parser.add_argument("--prepare-only", action="store_true", help="write source/ but do not run nbgrader")
    args = parser.parse_args(argv)

    sources = prepare(
        args.course,
        args.assignment,
        args.notebooks,
        markdown_points=args.markdown_points,
        grade_cells=args.grade_cells,
        checker_points=args.checker_points,
    )
    for p in sources:
        print(f"source:  {p}")
    if args.prepare_only:
        return 0
    done = generate(args.course, args.assignment, db=not args.no_db)
    if done.returncode != 0:
        print(done.stdout + done.stderr)
        print(f"nbgrader generate_assignment failed (exit {done.returncode})")
        return 1
    problems = []
    for p in sources:
        released = args.course / "release" / args.assignment / p.name
        if not released.exists():
            problems.append(f"{released} was not written")
            continue
        problems += leaked_solutions(p, released)
        print(f"release: {released}")
    for problem in problems:
        print(f"PROBLEM {problem}")
    print("no solution code left in the release" if not problems else "the release still holds solution code")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
