"""Generate notebooks/ from solutions/, execute them, or check that the two are in sync.

solutions/ is the source of truth. In a code cell, everything between a line
``### BEGIN SOLUTION`` and a line ``### END SOLUTION`` (markers included) becomes a stub at the
same indentation::

    # YOUR CODE HERE
    raise NotImplementedError()

so exercises are written as function bodies; the checker that follows each exercise catches the
NotImplementedError and carries on with dlib's reference. In a Markdown cell the region becomes
an invitation to answer. Nothing else changes.

    python tools/build_notebooks.py                  # regenerate notebooks/ (outputs cleared)
    python tools/build_notebooks.py --execute        # ... then execute solutions/ and notebooks/ in place (cpu budget)
    python tools/build_notebooks.py --execute --budget smoke --out build/timed   # time a budget, leave the repo alone
    python tools/build_notebooks.py --check          # exit 1 if notebooks/ is stale

Each notebook's header states its run time between ``<!-- run-time -->`` and ``<!-- /run-time -->``.
That sentence is generated from the README's measured table (the one source; see ``run_time_sentence``):
generating rewrites it in solutions/ too, and ``--check`` fails when it differs from the table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat

from dlib.budget import measured_times

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, NOTEBOOKS = ROOT / "solutions", ROOT / "notebooks"
KERNEL = "diffusion-course"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
MARKDOWN_STUB = ["*Your answer here. The worked answer is in the same notebook under `solutions/`.*"]
_MARKER = re.compile(r"^(\s*)(### (?:BEGIN|END) SOLUTION)\s*$")
RUN_TIME = re.compile(r"<!-- run-time -->.*?<!-- /run-time -->", re.S)


def strip_solutions(source: str, cell_type: str = "code") -> str:
    """Replace every BEGIN/END SOLUTION region of one cell's source with a stub."""
    out, inside, indent = [], False, ""
    for n, line in enumerate(source.split("\n"), 1):
        m = _MARKER.match(line)
        if m and m.group(2) == BEGIN:
            if inside:
                raise ValueError(f"line {n}: nested {BEGIN}")
            inside, indent = True, m.group(1)
        elif m and m.group(2) == END:
            if not inside:
                raise ValueError(f"line {n}: {END} without {BEGIN}")
            inside = False
            stub = CODE_STUB if cell_type == "code" else MARKDOWN_STUB
            out.extend(indent + s for s in stub)
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(out)


def learner_version(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook a learner opens: solution regions stubbed, outputs cleared."""
    nb = copy.deepcopy(solution)
    for cell in nb.cells:
        cell.source = strip_solutions(cell.source, cell.cell_type)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def _duration(cell: str) -> str | None:
    try:
        seconds = float(cell)
    except ValueError:
        return None  # "not yet measured (...)"
    return f"{seconds:.0f} s" if seconds < 100 else f"{seconds / 60:.1f} min"


def run_time_sentence(number: str, times: dict[str, dict[str, str]]) -> str:
    """The header's run-time sentence for notebook ``number``, from the README's table."""
    if number not in times:
        raise KeyError(f"README.md's timings table has no row for notebook {number}")
    row = times[number]
    parts = [f"{d} at `{b}`" for b in ("smoke", "cpu") if (d := _duration(row.get(b, "")))]
    unmeasured = [f"`{b}`" for b in ("smoke", "cpu", "gpu") if not _duration(row.get(b, ""))]
    text = (
        "Run time on the course's reference machine (2 CPU cores, no GPU; the README's measured table): "
        + ", ".join(parts)
    )
    if gpu := _duration(row.get("gpu", "")):  # measured elsewhere: the GPU the README's table names
        text += f"; {gpu} at `gpu` (on a GPU: see the README)"
    if unmeasured:
        text += "; " + " and ".join(unmeasured) + " not yet measured"
    return f"<!-- run-time -->{text}.<!-- /run-time -->"


def with_run_time(nb: nbformat.NotebookNode, number: str, times: dict[str, dict[str, str]]) -> bool:
    """Rewrite the header's run-time span in place; True if it changed. A header without the span is an error."""
    header = nb.cells[0]
    if not RUN_TIME.search(header.source):
        raise ValueError(f"notebook {number}: the first cell has no <!-- run-time --> ... <!-- /run-time --> span")
    new = RUN_TIME.sub(lambda _: run_time_sentence(number, times), header.source)
    changed, header.source = new != header.source, new
    return changed


def keep_outputs(old: nbformat.NotebookNode, new: nbformat.NotebookNode) -> bool:
    """Carry the executed outputs of ``old`` into ``new`` when their code cells are identical (only Markdown
    changed, e.g. a header's run-time sentence): the same code gives the same outputs. True if carried."""
    code = [(c.cell_type, c.source if c.cell_type == "code" else None) for c in old.cells]
    new.metadata.pop("widgets", None)  # the solution's widget state belongs to the solution's outputs, not these
    if code != [(c.cell_type, c.source if c.cell_type == "code" else None) for c in new.cells]:
        return False
    for o, n in zip(old.cells, new.cells, strict=True):
        if n.cell_type == "code":
            n.outputs, n.execution_count = o.outputs, o.execution_count
    if "widgets" in old.metadata:  # the state the carried widget outputs refer to
        new.metadata["widgets"] = old.metadata["widgets"]
    return True


def sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def generate(names: list[str] | None = None, target: Path = NOTEBOOKS) -> list[Path]:
    """Regenerate notebooks/ from solutions/ (only ``names`` if given, leaving the others' outputs alone)."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    times = measured_times()
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        if names is not None and path.name not in names:
            continue
        solution = nbformat.read(path, as_version=4)
        # a header without the span is left as it is here; --check (and the tests) report it
        if RUN_TIME.search(solution.cells[0].source) and with_run_time(solution, path.name[:2], times):
            nbformat.write(solution, path)  # only the header's run-time sentence changed
        learner = learner_version(solution)
        if (target / path.name).exists():
            keep_outputs(nbformat.read(target / path.name, as_version=4), learner)
        nbformat.write(learner, target / path.name)
        written.append(target / path.name)
    if names is None and target == NOTEBOOKS:
        for stale in set(NOTEBOOKS.glob("*.ipynb")) - set(written):
            stale.unlink()
    return written


def check() -> list[str]:
    """Return a list of problems; empty when notebooks/ matches solutions/."""
    problems = []
    sol = {p.name for p in SOLUTIONS.glob("*.ipynb")}
    gen = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    problems += [f"notebooks/{n} is missing" for n in sorted(sol - gen)]
    problems += [f"notebooks/{n} has no source in solutions/" for n in sorted(gen - sol)]
    times = measured_times()
    for name in sorted(sol):
        try:
            if with_run_time(nbformat.read(SOLUTIONS / name, as_version=4), name[:2], times):
                problems.append(f"solutions/{name}: the header's run time differs from README.md's table")
        except (ValueError, KeyError) as e:
            problems.append(f"solutions/{name}: {e}")
    for name in sorted(sol & gen):
        expected = learner_version(nbformat.read(SOLUTIONS / name, as_version=4))
        actual = nbformat.read(NOTEBOOKS / name, as_version=4)
        if sources(expected) != sources(actual):
            problems.append(f"notebooks/{name} differs from what solutions/{name} generates")
    return problems


def execute(paths: list[Path], budget: str, out_dir: Path | None, timeout: int = 3600) -> dict[str, float]:
    """Execute notebooks at a budget (in place, or into out_dir); return seconds per notebook."""
    from kernel_channels import install
    from nbclient import NotebookClient

    install()  # no lost-wakeup hang on the widget cells (tools/kernel_channels.py)
    os.environ["DLIB_BUDGET"] = budget
    times = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(
            nb,
            kernel_name=KERNEL,
            timeout=timeout,
            record_timing=False,
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
        times[f"{path.parent.name}/{path.name}"] = round(time.perf_counter() - start, 1)
        target = (out_dir / path.parent.name / path.name) if out_dir else path
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        print(
            f"{times[f'{path.parent.name}/{path.name}']:8.1f} s  {path.parent.name}/{path.name} at {budget}", flush=True
        )
    return times


def run_papermill(path: Path, out: Path, budget: str) -> None:
    """Execute one notebook with papermill at ``budget`` into ``out``, as `make test` and `make test-gpu` do.

    The ``BUDGET`` parameter cell is set, DLIB_BUDGET too, and DLIB_REQUIRE_SOLVED=1 makes every exercise checker
    fail loudly on an unsolved stub. The kernel is the course's, started in the notebook's folder.
    """
    import papermill
    from kernel_channels import install  # after papermill, which brings jupyter_client

    install()  # no lost-wakeup hang on the widget cells (tools/kernel_channels.py)
    os.environ["DLIB_BUDGET"] = budget
    os.environ["DLIB_REQUIRE_SOLVED"] = "1"
    out.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(path),
        str(out),
        parameters={"BUDGET": budget},
        kernel_name=KERNEL,
        cwd=str(path.parent),
        progress_bar=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that notebooks/ is in sync")
    parser.add_argument("--execute", action="store_true", help="execute solutions/ and notebooks/ after generating")
    parser.add_argument("--budget", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--out", type=Path, help="write executed copies here instead of in place")
    parser.add_argument("--only", nargs="*", help="notebook file names to execute (default: all)")
    parser.add_argument(
        "--solutions-only",
        action="store_true",
        help="execute only the solutions/ copies (what README's timings table quotes)",
    )
    args = parser.parse_args(argv)

    if args.check:
        problems = check()
        for p in problems:
            print(p)
        if problems:
            print("notebooks/ is stale: run `make notebooks` (or python tools/build_notebooks.py --execute).")
        return 1 if problems else 0
    # with --out the repository is left alone: learner versions are generated into the output folder
    learner_dir = args.out / "notebooks" if args.out else NOTEBOOKS
    generate(args.only, learner_dir)
    if args.execute:
        names = args.only or [p.name for p in sorted(SOLUTIONS.glob("*.ipynb"))]
        paths = [d / n for n in names for d in ((SOLUTIONS,) if args.solutions_only else (SOLUTIONS, learner_dir))]
        times = execute(paths, args.budget, args.out)
        log = ROOT / "build" / f"timings-{args.budget}.json"
        log.parent.mkdir(exist_ok=True)
        previous = json.loads(log.read_text()) if log.exists() else {}
        log.write_text(json.dumps({**previous, **times}, indent=1, sort_keys=True))
        print(f"timings written to {log.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
