import pytest
import torch

from dlib import exercises as E


def ref(x):
    return 2 * x


CASES = [dict(x=torch.arange(3.0))]


def test_pass_returns_candidate(capsys, monkeypatch):
    monkeypatch.delenv(E.REQUIRE_ENV, raising=False)

    def mine(x):
        return x + x

    assert E.check_function("ex", mine, ref, CASES, hint="h") is mine
    assert capsys.readouterr().out.startswith("PASS")


def test_unsolved_falls_back(capsys, monkeypatch):
    monkeypatch.delenv(E.REQUIRE_ENV, raising=False)

    def mine(x):
        raise NotImplementedError()

    assert E.check_function("ex", mine, ref, CASES, hint="h") is ref
    assert "TODO  ex: not solved yet" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [lambda x: 3 * x, lambda x: x[:2], lambda x: 1 / 0])
def test_wrong_answer_fails_with_hint(wrong, capsys, monkeypatch):
    monkeypatch.delenv(E.REQUIRE_ENV, raising=False)
    assert E.check_function("ex", wrong, ref, CASES, hint="double it") is ref
    out = capsys.readouterr().out
    assert out.startswith("FAIL") and "Hint: double it" in out


def test_require_solved_turns_fallback_into_error(monkeypatch):
    monkeypatch.setenv(E.REQUIRE_ENV, "1")
    with pytest.raises(E.ExerciseFailed):
        E.check_function("ex", lambda x: 3 * x, ref, CASES, hint="h")
    with pytest.raises(E.ExerciseFailed):
        E.check_value("v", ..., 1.0, hint="h")


def test_check_value(capsys, monkeypatch):
    monkeypatch.delenv(E.REQUIRE_ENV, raising=False)
    assert E.check_value("v", (1.0, torch.ones(2)), (1.0, torch.ones(2)), hint="h")
    assert not E.check_value("v", 0.5, 1.0, hint="h")
    assert not E.check_value("v", None, 1.0, hint="h")
    assert E.check_value("s", " Cosine", "cosine", hint="h")
