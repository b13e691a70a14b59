"""The one knob of every notebook: the compute budget.

``smoke``: CI on a 2-core CPU, about a minute per notebook, every assertion still meaningful.
``cpu``: a learner's laptop, a few minutes, good-looking results from shipped checkpoints.
``gpu``: bigger samples, and the from-scratch trainings (04, 06 and 07) on one CUDA GPU; the host's side of
each step paces them, not the GPU's arithmetic (mnist-unet: about 19 steps/s on an H200, so 35 minutes for 04's
40,000 steps; docs/GPU_RUN.md).
``auto``: ``gpu`` if CUDA is available, else ``cpu``.

The environment variable ``DLIB_BUDGET`` overrides whatever the notebook asked for, so a test
runner can execute a whole folder at the smoke budget.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

BUDGETS = ("smoke", "cpu", "gpu")
ENV_VAR = "DLIB_BUDGET"
README = Path(__file__).resolve().parent.parent / "README.md"  # the repository's: its table of measured run times


def resolve_budget(requested: str = "auto") -> str:
    """Return the budget to use: ``$DLIB_BUDGET`` if set, else ``requested``; resolve ``auto``."""
    chosen = os.environ.get(ENV_VAR) or requested
    if chosen == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if chosen not in BUDGETS:
        raise ValueError(
            f"unknown budget {chosen!r} (from {'$' + ENV_VAR if os.environ.get(ENV_VAR) else 'the notebook'});"
            f" expected one of {BUDGETS + ('auto',)}"
        )
    return chosen


def pick(budget: str, *, smoke, cpu, gpu):
    """Choose a value by budget: ``n = pick(budget, smoke=256, cpu=4096, gpu=65536)``."""
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; expected one of {BUDGETS} (call resolve_budget first)")
    return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[budget]


def measured_times(readme: str | None = None) -> dict[str, dict[str, str]]:
    """The README's table of measured run times (the one source, after its ``<!-- timings-table -->`` marker):
    notebook number ("01") -> {"notebook": "01 forward process", "smoke": "8.8", "cpu": "12.6", "gpu": ...}, seconds
    as written there ("not yet measured ..." where no run has measured it)."""
    if readme is None:
        if not README.exists():
            raise FileNotFoundError(f"{README} not found: the run-time table lives in the repository's README")
        readme = README.read_text()
    if "<!-- timings-table -->" not in readme:
        raise ValueError("the README has no <!-- timings-table --> marker before its table of measured run times")
    table = readme.split("<!-- timings-table -->", 1)[1].strip().splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = {}
    for line in table[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0][:2]] = {"notebook": cells[0]} | dict(zip(header[1:], cells[1:], strict=True))
    return rows
