"""dlib.quiz: grading, tolerances, the plain fallback, bad input, the drill stopwatch."""

import pytest

from dlib import quiz
from dlib.exercises.catalogues import nb13
from dlib.quiz import Choice, Numeric, Quiz, Stopwatch


def make_quiz():
    return Quiz(
        "Q",
        [
            Choice("mc", "Which?", ("one", "two", "three"), 1, "Because two."),
            Numeric("num", "How much?", 100.0, "A hundred.", abs_tol=1.0, rel_tol=0.01),
            dict(kind="numeric", id="exact", prompt="Index?", answer=980, explanation="49 x 20.", rel_tol=0.0),
        ],
    )


def test_model_answers_get_full_marks():
    q = make_quiz()
    r = q.grade(q.model_answers())
    assert (r.score, r.total, r.wrong, r.unanswered) == (3, 3, {}, ())
    assert r.report == "Q: 3 / 3"


def test_choice_answers_by_letter_or_index():
    q = make_quiz()
    assert q.grade({"mc": "b"}).score == q.grade({"mc": "B "}).score == q.grade({"mc": 1}).score == 1
    r = q.grade({"mc": "a"})
    assert r.score == 0 and "(b) two" in r.wrong["mc"] and "Because two." in r.wrong["mc"]
    assert r.unanswered == ("num", "exact") and "not answered: num, exact" in r.report


@pytest.mark.parametrize(
    "given, ok", [(100, True), (102.0, True), (97.9, False), (102.1, False), (float("nan"), False)]
)
def test_numeric_tolerance(given, ok):
    # abs_tol 1 + rel_tol 0.01 * 100 = 2 either side
    assert (make_quiz().grade({"num": given}).score == 1) is ok


def test_exact_numeric_answer():
    q = make_quiz()
    assert q.grade({"exact": 980}).score == 1
    r = q.grade({"exact": 981})
    assert r.score == 0 and "accepted exactly" in r.wrong["exact"] and "49 x 20." in r.wrong["exact"]


def test_bad_input_errors():
    q = make_quiz()
    with pytest.raises(KeyError, match="no items"):
        q.grade({"nope": 1})
    with pytest.raises(ValueError, match="not an option"):
        q.grade({"mc": "z"})
    with pytest.raises(ValueError, match="not an option"):
        q.grade({"mc": 3})
    with pytest.raises(TypeError, match="option letter or index"):
        q.grade({"mc": 1.0})
    with pytest.raises(TypeError, match="a number"):
        q.grade({"num": "100"})
    with pytest.raises(TypeError, match="a number"):
        q.grade({"num": True})


def test_bad_items_are_refused():
    with pytest.raises(ValueError, match="answer index among them"):
        Choice("c", "?", ("a", "b"), 2, "")
    with pytest.raises(ValueError, match="2 to 10 options"):
        Choice("c", "?", ("a",), 0, "")
    with pytest.raises(ValueError, match="tolerances"):
        Numeric("n", "?", 0.0, "", rel_tol=0.0)
    with pytest.raises(ValueError, match="kind"):
        Quiz("Q", [dict(kind="essay", id="e")])
    with pytest.raises(ValueError, match="unique ids"):
        Quiz("Q", [Choice("c", "?", ("a", "b"), 0, ""), Choice("c", "?", ("a", "b"), 1, "")])
    with pytest.raises(ValueError, match="at least one item"):
        Quiz("Q", [])


def test_plain_fallback_prints_questions_and_answers(capsys, monkeypatch):
    q = make_quiz()
    monkeypatch.setenv(quiz.PLAIN_ENV, "1")
    assert not quiz.widgets_live()
    q.show()
    out = capsys.readouterr().out
    assert "Q (3 questions)" in out and "1. [mc] Which?" in out and "(c) three" in out and "Answer" not in out
    q.print_answers()
    out = capsys.readouterr().out
    assert "Answer: (b) two Because two." in out and "Answer: 100 (accepted within 1 + 0.01 x |answer|)" in out


def test_no_kernel_means_no_widgets(monkeypatch):
    monkeypatch.delenv(quiz.PLAIN_ENV, raising=False)
    assert not quiz.widgets_live()  # pytest is not an IPython kernel


def test_course_quizzes_are_consistent():
    for items in (nb13.NUMBERS, nb13.GUIDE):
        q = Quiz("course", items)
        assert q.grade(q.model_answers()).score == len(q)
    ids = {i["id"] for i in nb13.NUMBERS + nb13.GUIDE}
    assert sorted(nb13.LEDGER) == list(range(1, 32))
    assert all(w.split()[1] in ids for w in nb13.LEDGER.values() if w.startswith("quiz"))


def test_stopwatch(capsys):
    ticks = iter([0.0, 300.0, 0.0, 900.0])
    w = Stopwatch("Drill", target_min=10, clock=lambda: next(ticks)).start()
    w.stop(True)
    assert "5.0 min (target 10 min): solved within the target" in capsys.readouterr().out
    w.start().stop(True)
    assert "over the target" in w.report
    with pytest.raises(RuntimeError, match="start"):
        Stopwatch("D", 1).stop(True)
    with pytest.raises(ValueError, match="positive"):
        Stopwatch("D", 0)


def test_stopwatch_not_solved():
    ticks = iter([0.0, 60.0])
    w = Stopwatch("Drill", target_min=10, clock=lambda: next(ticks)).start()
    w.stop(False)
    assert "not solved yet" in w.report
