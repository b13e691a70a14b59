"""tools/gpu_notebooks.py: notebooks at once, each with its executed copy, seconds and status, and a limit that stops them."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import gpu_notebooks  # noqa: E402


@pytest.mark.notebooks
def test_runs_notebooks_at_once_and_stops_them_at_the_limit(tmp_path):
    pytest.importorskip("papermill")
    code = gpu_notebooks.main(
        ["13_interview.ipynb", "--budget", "smoke", "--out", str(tmp_path / "ok"), "--limit", "600"]
    )
    timings = json.loads((tmp_path / "ok" / "timings.json").read_text())
    assert (
        code == 0 and timings["13_interview.ipynb"]["status"] == "ok" and timings["13_interview.ipynb"]["seconds"] > 0
    )
    assert (tmp_path / "ok" / "13_interview.ipynb").exists()  # the executed copy

    code = gpu_notebooks.main(
        ["13_interview.ipynb", "--budget", "smoke", "--out", str(tmp_path / "cut"), "--limit", "0.5"]
    )
    timings = json.loads((tmp_path / "cut" / "timings.json").read_text())
    assert code == 1 and timings["13_interview.ipynb"]["status"] == "stopped at the limit"


def test_names_a_notebook_that_is_not_there(tmp_path):
    with pytest.raises(SystemExit, match="not in solutions/: 99_nothing.ipynb"):
        gpu_notebooks.main(["99_nothing.ipynb", "--out", str(tmp_path)])
