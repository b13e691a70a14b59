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
