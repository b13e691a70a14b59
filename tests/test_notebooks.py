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
    papermill = pytest.importorskip("papermill")
    import kernel_channels  # noqa: PLC0415 - after papermill, which brings jupyter_client

    kernel_channels.install()  # no lost-wakeup hang on the widget cells (tools/kernel_channels.py)
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
