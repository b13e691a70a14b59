import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_notebooks as B  # noqa: E402


def test_strip_keeps_indentation_and_everything_else():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nprint(f)"
    out = B.strip_solutions(src)
    assert out == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(f)"
    assert "Your answer here" in B.strip_solutions("Q?\n### BEGIN SOLUTION\nA.\n### END SOLUTION", "markdown")


@pytest.mark.parametrize(
    "bad", ["### BEGIN SOLUTION\nx", "x\n### END SOLUTION", "### BEGIN SOLUTION\n### BEGIN SOLUTION"]
)
def test_unbalanced_markers_raise(bad):
    with pytest.raises(ValueError):
        B.strip_solutions(bad)


def test_learner_version_clears_outputs():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")
    cell.outputs = [nbformat.v4.new_output("stream", text="1")]
    nb.cells.append(cell)
    out = B.learner_version(nb)
    assert out.cells[0].outputs == [] and "return 1" not in out.cells[0].source
    assert nb.cells[0].outputs, "the solution notebook itself is left untouched"


def test_notebooks_are_in_sync_with_solutions():
    problems = B.check()
    assert not problems, "\n".join(problems) + "\nrun `make notebooks`"


def test_notebooks_are_committed_executed():
    for path in sorted(B.NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has no outputs"


def test_every_notebook_has_a_parameters_cell_with_budget():
    for path in sorted(B.SOLUTIONS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and "BUDGET" in params[0].source, path.name


README_TABLE = """intro
<!-- timings-table -->
| notebook | smoke | cpu | gpu |
|---|---|---|---|
| 01 forward process | 8.3 | 12.3 | not yet measured |
| 05 sampling | 44.0 | 280.0 | 31.5 |

after
"""


def test_run_time_sentence_comes_from_the_readme_table():
    times = B.measured_times(README_TABLE)
    assert times["05"] == {"notebook": "05 sampling", "smoke": "44.0", "cpu": "280.0", "gpu": "31.5"}
    one = B.run_time_sentence("01", times)
    assert "8 s at `smoke`, 12 s at `cpu`; `gpu` not yet measured." in one
    assert "44 s at `smoke`, 4.7 min at `cpu`; 32 s at `gpu` (on a GPU: see the README)." in B.run_time_sentence(
        "05", times
    )
    with pytest.raises(KeyError, match="no row for notebook 07"):
        B.run_time_sentence("07", times)


def test_header_span_is_rewritten_and_required():
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# 01\nText. <!-- run-time -->about 1 min<!-- /run-time --> More."))
    times = B.measured_times(README_TABLE)
    assert B.with_run_time(nb, "01", times)
    assert "8 s at `smoke`" in nb.cells[0].source and nb.cells[0].source.endswith(" More.")
    assert not B.with_run_time(nb, "01", times), "a second pass changes nothing"
    nb.cells[0].source = "# 01\nno span"
    with pytest.raises(ValueError, match="no <!-- run-time -->"):
        B.with_run_time(nb, "01", times)


def test_outputs_survive_a_markdown_only_change():
    def nb(markdown, code):
        out = nbformat.v4.new_notebook()
        out.cells = [nbformat.v4.new_markdown_cell(markdown), nbformat.v4.new_code_cell(code)]
        return out

    old = nb("# old header", "print(1)")
    old.cells[1].outputs, old.cells[1].execution_count = [nbformat.v4.new_output("stream", text="1\n")], 1
    new = nb("# new header", "print(1)")
    assert B.keep_outputs(old, new) and new.cells[1].outputs == old.cells[1].outputs
    changed = nb("# new header", "print(2)")
    assert not B.keep_outputs(old, changed) and changed.cells[1].outputs == []


def test_carried_widget_outputs_keep_their_own_widget_state():
    def nb(code, state):
        out = nbformat.v4.new_notebook()
        out.cells = [nbformat.v4.new_code_cell(code)]
        out.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
        return out

    old = nb("show()", {"learner-run": {}})  # notebooks/: its outputs name the widgets of its own run
    new = nb("show()", {"solution-run": {}})  # generated from solutions/: the solution run's widgets
    assert B.keep_outputs(old, new) and new.metadata["widgets"] == old.metadata["widgets"]
    changed = nb("show(1)", {"solution-run": {}})
    assert not B.keep_outputs(old, changed) and "widgets" not in changed.metadata  # no outputs, no state


@pytest.mark.parametrize("solutions_only", [False, True])
def test_solutions_only_executes_just_the_solutions_copies(solutions_only, monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr(B, "execute", lambda paths, budget, out: ran.extend(paths) or {})
    monkeypatch.setattr(B, "ROOT", tmp_path)  # the timings log goes here, not into build/
    argv = ["--execute", "--budget", "smoke", "--out", str(tmp_path / "timed"), "--only", "01_forward_process.ipynb"]
    assert B.main(argv + (["--solutions-only"] if solutions_only else [])) == 0
    assert [p.parent.name for p in ran] == (["solutions"] if solutions_only else ["solutions", "notebooks"])
