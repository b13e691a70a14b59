"""The one knob of every notebook: the compute budget.

``smoke``: CI on a 2-core CPU, about a minute per notebook, every assertion still meaningful.
``cpu``: a learner's laptop, a few minutes, good-looking results from shipped checkpoints.
``gpu``: trains from scratch, a few minutes per notebook on one modern GPU.
``auto``: ``gpu`` if CUDA is available, else ``cpu``.

The environment variable ``DLIB_BUDGET`` overrides whatever the notebook asked for, so a test
runner can execute a whole folder at the smoke budget.
"""

from __future__ import annotations

import os

import torch

BUDGETS = ("smoke", "cpu", "gpu")
ENV_VAR = "DLIB_BUDGET"


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
