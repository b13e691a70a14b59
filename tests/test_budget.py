import pytest
import torch

from dlib import budget


def test_env_overrides_notebook(monkeypatch):
    monkeypatch.setenv(budget.ENV_VAR, "smoke")
    assert budget.resolve_budget("gpu") == "smoke"


def test_auto(monkeypatch):
    monkeypatch.delenv(budget.ENV_VAR, raising=False)
    assert budget.resolve_budget("auto") == ("gpu" if torch.cuda.is_available() else "cpu")
    assert budget.resolve_budget("cpu") == "cpu"


def test_bad_budget(monkeypatch):
    monkeypatch.delenv(budget.ENV_VAR, raising=False)
    with pytest.raises(ValueError, match="unknown budget 'fast'"):
        budget.resolve_budget("fast")
    assert budget.pick("cpu", smoke=1, cpu=2, gpu=3) == 2
    with pytest.raises(ValueError):
        budget.pick("auto", smoke=1, cpu=2, gpu=3)


def test_measured_times_reads_the_readme_table_and_names_a_missing_marker():
    times = budget.measured_times()  # the repository's own README
    assert "01" in times and set(times["01"]) == {"notebook", "smoke", "cpu", "gpu"}
    assert float(times["01"]["smoke"]) > 0  # seconds, as measured
    with pytest.raises(ValueError, match="timings-table"):
        budget.measured_times("a README without the table")


def test_default_device_turns_off_tf32_convolutions_on_cuda(monkeypatch):
    from dlib.utils import default_device

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # PyTorch's default; restored after the test
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device().type == "cpu" and torch.backends.cudnn.allow_tf32  # the CPU leaves it alone
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device().type == "cuda" and not torch.backends.cudnn.allow_tf32
