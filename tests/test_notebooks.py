"""Execute every solutions/ notebook end to end with papermill.

The budget comes from $DLIB_BUDGET (default smoke); every exercise checker must pass
(DLIB_REQUIRE_SOLVED=1). Executed copies land in build/executed/<budget>/.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


@pytest.mark.notebooks
@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_notebook_runs(path, monkeypatch):
    pytest.importorskip("papermill")
    from build_notebooks import run_papermill  # noqa: PLC0415 - after the skip: it imports papermill

    budget = os.environ.get("DLIB_BUDGET", "smoke")
    monkeypatch.setenv("DLIB_BUDGET", budget)  # restored after the test (run_papermill sets both)
    monkeypatch.setenv("DLIB_REQUIRE_SOLVED", "1")
    run_papermill(path, ROOT / "build" / "executed" / budget / path.name, budget)
