import pytest
import torch


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# `make test` runs under pytest-xdist with --dist loadscope: a test module, and a notebook's nbval cells (which share
# one kernel and must run in order), each go to one worker. The papermill notebooks are one module, the longest
# unit of all; here each is a unit of its own, so the workers share them.
try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist is in the test extra; without it pytest runs in one process
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:

    class NotebookScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/test_notebooks.py::"):
                return nodeid
            return super()._split_scope(nodeid)

    def pytest_xdist_make_scheduler(config, log):
        if config.getoption("dist") == "loadscope":
            return NotebookScopeScheduling(config, log)
        return None
