"""Execute every solutions/ notebook end to end with papermill.

The budget comes from $DLIB_BUDGET (default smoke); every exercise checker must pass
(DLIB_REQUIRE_SOLVED=1). Executed copies land in build/executed/<budget>/.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


@pytest.mark.notebooks
@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_notebook_runs(path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    budget = os.environ.get("DLIB_BUDGET", "smoke")
    monkeypatch.setenv("DLIB_BUDGET", budget)
    monkeypatch.setenv("DLIB_REQUIRE_SOLVED", "1")
    out = ROOT / "build" / "executed" / budget / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(path),
        str(out),
        parameters={"BUDGET": budget},
        kernel_name="diffusion-course",
        cwd=str(path.parent),
        progress_bar=False,
    )
