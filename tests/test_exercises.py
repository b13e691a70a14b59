import math

import pytest
import torch

import dlib
from dlib import exercises as E
from dlib.utils import append_dims


@pytest.fixture(autouse=True)
def fresh_session(monkeypatch):
    """Each test starts like a fresh notebook kernel: no hints seen, not in strict mode."""
    monkeypatch.delenv(E.REQUIRE_ENV, raising=False)
    E.reset()
    yield
    E.reset()


def ref(x):
    return 2 * x


def todo(x):
    raise NotImplementedError()


REF_NAME = f"{ref.__module__}.ref"


CASES = [dict(x=torch.arange(3.0))]


# --- a few exercises of the course with their catalogues of common mistakes ---

G = torch.Generator().manual_seed(0)
SCHED = dlib.schedules.linear(50)
AB = SCHED.alpha_bar.double()
AB_PREV = SCHED.alpha_bar_prev.double()
ALPHAS, BETAS = SCHED.alphas.double(), SCHED.betas.double()


def q_sample(x_0, t, eps):
    ab = append_dims(AB[t], x_0.ndim)
    return ab.sqrt() * x_0 + (1 - ab).sqrt() * eps


Q_SAMPLE_MISTAKES = {
    "alpha_t where alpha_bar_t belongs": lambda x_0, t, eps: (
        append_dims(ALPHAS[t], x_0.ndim).sqrt() * x_0 + (1 - append_dims(ALPHAS[t], x_0.ndim)).sqrt() * eps
    ),
    "a missing square root": lambda x_0, t, eps: (
        append_dims(AB[t], x_0.ndim) * x_0 + (1 - append_dims(AB[t], x_0.ndim)) * eps
    ),
    "a (B,) coefficient that does not broadcast over (B, C, H, W)": lambda x_0, t, eps: (
        AB[t][:, None].sqrt() * x_0 + (1 - AB[t][:, None]).sqrt() * eps
    ),
}
Q_SAMPLE_CASES = [
    dict(
        x_0=torch.randn(4, 1, 8, 8, generator=G, dtype=torch.float64),
        t=torch.tensor([0, 1, 25, 49]),
        eps=torch.randn(4, 1, 8, 8, generator=G),
    )
]


def posterior_var(t):
    return (1 - AB_PREV[t]) / (1 - AB[t]) * BETAS[t]


POSTERIOR_VAR_MISTAKES = {
    "beta_t instead of beta_tilde_t": lambda t: BETAS[t],
    "alpha_bar_{t-1} read as alpha_bar[t-1], which wraps around to the noisiest step at t = 0": lambda t: (
        (1 - AB[t - 1]) / (1 - AB[t]) * BETAS[t]
    ),
}
POSTERIOR_VAR_CASES = [dict(t=torch.tensor([3, 10, 49])), dict(t=torch.tensor([5, 0, 7]))]


def cfg(eps_u, eps_c, w):
    return eps_u + w * (eps_c - eps_u)


CFG_MISTAKES = {
    "the sign of the guidance term": lambda eps_u, eps_c, w: eps_u - w * (eps_c - eps_u),
    "gamma = 1 + w used where w belongs (the other guidance convention)": lambda eps_u, eps_c, w: (
        eps_c + w * (eps_c - eps_u)
    ),
}
CFG_CASES = [dict(eps_u=torch.randn(2, 3, generator=G), eps_c=torch.randn(2, 3, generator=G), w=w) for w in (0.0, 2.5)]

CATALOGUES = {
    "q_sample": (q_sample, Q_SAMPLE_CASES, Q_SAMPLE_MISTAKES),
    "posterior variance": (posterior_var, POSTERIOR_VAR_CASES, POSTERIOR_VAR_MISTAKES),
    "cfg": (cfg, CFG_CASES, CFG_MISTAKES),
}


@pytest.mark.parametrize(
    "exercise, mistake", [(ex, m) for ex, (_, _, mistakes) in CATALOGUES.items() for m in mistakes]
)
def test_every_catalogued_mistake_fails_with_its_name(exercise, mistake):
    reference, cases, mistakes = CATALOGUES[exercise]
    E.assert_catalogue_recognised(reference, cases, mistakes, names=[mistake])


def test_catalogued_mistake_is_named_in_the_output(capsys):
    wrong = POSTERIOR_VAR_MISTAKES["beta_t instead of beta_tilde_t"]
    got = E.check_function(
        "Exercise 2", wrong, posterior_var, POSTERIOR_VAR_CASES, hint="h", mistakes=POSTERIOR_VAR_MISTAKES
    )
    assert got is posterior_var
    assert "This looks like: beta_t instead of beta_tilde_t." in capsys.readouterr().out
    assert E.last_result().status == E.FAIL and E.last_result().mistake == "beta_t instead of beta_tilde_t"


def test_unknown_wrong_answer_fails_without_a_name(capsys):
    E.check_function(
        "ex",
        lambda t: 3 * posterior_var(t),
        posterior_var,
        POSTERIOR_VAR_CASES,
        hint="h",
        mistakes=POSTERIOR_VAR_MISTAKES,
    )
    out = capsys.readouterr().out
    assert out.startswith("FAIL") and "This looks like" not in out
    assert E.last_result().status == E.FAIL and E.last_result().mistake is None


def test_mistake_is_only_named_when_it_also_agrees_on_earlier_cases():
    # wrong only at t = 0 (case 2), and a catalogued mistake that is wrong everywhere: not the same mistake
    def wrong_at_0(t):
        return torch.where(t == 0, BETAS[t], posterior_var(t))

    v = E.judge_function("ex", wrong_at_0, posterior_var, POSTERIOR_VAR_CASES, mistakes=POSTERIOR_VAR_MISTAKES)
    assert v.status == E.FAIL and v.case == 1 and v.mistake is None


def test_a_mistake_that_raises_is_matched_by_its_error():
    wrong = Q_SAMPLE_MISTAKES["a (B,) coefficient that does not broadcast over (B, C, H, W)"]
    v = E.judge_function("ex", wrong, q_sample, Q_SAMPLE_CASES, mistakes=Q_SAMPLE_MISTAKES)
    assert v.problem.startswith("test case 1 of 1: raised RuntimeError")
    assert v.mistake == "a (B,) coefficient that does not broadcast over (B, C, H, W)"


def test_failing_inputs_are_shown_and_the_worst_element_located(capsys):
    wrap = POSTERIOR_VAR_MISTAKES[
        "alpha_bar_{t-1} read as alpha_bar[t-1], which wraps around to the noisiest step at t = 0"
    ]
    E.check_function("ex", wrap, posterior_var, POSTERIOR_VAR_CASES, hint="h")
    out = capsys.readouterr().out
    assert "Problem: test case 2 of 2: values differ" in out
    assert "at index [1], where t=0;" in out  # the wrap only shows at t = 0, the second element of case 2
    assert "Failing inputs: t: (3,) int64 = [5, 0, 7]\n" in out


def test_describe_inputs():
    text = E.describe_inputs(
        dict(
            t=0,
            eta=0.5,
            x_t=torch.zeros(4, 1, 8, 8),
            alpha_bar_t=torch.tensor(0.25, dtype=torch.float64),
            steps=torch.tensor([999, 899]),
            sched=SCHED,
            model=torch.nn.Linear(2, 2),
            convention="cond",
        )
    )
    assert text == (
        "t=0, eta=0.5, x_t: (4, 1, 8, 8) float32, alpha_bar_t: () float64 = 0.25, steps: (2,) int64 = [999, 899], "
        "sched: Schedule 'linear' (T=50), model: Linear, convention='cond'"
    )


LEVELS = [
    "nudge: which schedule array?",
    "closer: the cumulative one",
    "sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps",
]


def test_hints_are_revealed_in_levels(capsys):
    E.check_function("Exercise 2: q_sample", lambda x: 3 * x, ref, CASES, hint=LEVELS)
    out = capsys.readouterr().out
    assert "Hint 1 of 3: nudge" in out and "closer" not in out and "sqrt(1 - alpha_bar_t)" not in out
    assert 'More help: dlib.exercises.hint("Exercise 2: q_sample") shows hint 2 of 3.' in out

    E.hint("Exercise 2")  # a prefix of the name is enough
    out = capsys.readouterr().out
    assert "Hint 2 of 3: closer" in out and "sqrt(1 - alpha_bar_t)" not in out and "shows the last hint" in out
    E.hint()  # the last failed exercise
    assert "Hint 3 of 3: sqrt(alpha_bar_t) x_0" in capsys.readouterr().out
    E.hint()
    assert "that was the last hint" in capsys.readouterr().out


def test_a_failure_never_prints_the_formula_unasked(capsys):
    for _ in range(3):  # running the cell again does not advance the levels
        E.check_function("ex", lambda x: 3 * x, ref, CASES, hint=LEVELS)
        out = capsys.readouterr().out
        assert "nudge" in out and "closer" not in out and "sqrt(1 - alpha_bar_t)" not in out
    E.hint("ex")
    E.check_function("ex", lambda x: 3 * x, ref, CASES, hint=LEVELS)
    out = capsys.readouterr().out  # levels the learner has seen stay shown
    assert "Hint 1 of 3: nudge" in out and "Hint 2 of 3: closer" in out and "sqrt(1 - alpha_bar_t)" not in out


def test_hint_levels_persist_per_exercise(capsys):
    E.check_function("Exercise 1", lambda x: 3 * x, ref, CASES, hint=["a1", "a2", "a3"])
    E.check_function("Exercise 2", lambda x: 3 * x, ref, CASES, hint=["b1", "b2"])
    E.hint("Exercise 1")
    capsys.readouterr()
    E.check_function("Exercise 2", lambda x: 3 * x, ref, CASES, hint=["b1", "b2"])
    assert "b1" in (out := capsys.readouterr().out) and "b2" not in out
    E.check_function("Exercise 1", lambda x: 3 * x, ref, CASES, hint=["a1", "a2", "a3"])
    assert "a2" in (out := capsys.readouterr().out) and "a3" not in out


def test_hint_for_an_unknown_or_unsolved_exercise(capsys):
    E.hint("Exercise 9")
    assert "No checked exercise matches 'Exercise 9'" in capsys.readouterr().out
    E.check_function("Exercise 3", todo, ref, CASES, hint=LEVELS)
    capsys.readouterr()
    E.hint("Exercise 3")  # a learner who has not started can ask for a nudge
    assert "Hint 1 of 3: nudge" in capsys.readouterr().out


def test_fail_output_puts_each_part_on_its_own_line(capsys):
    E.check_function("Exercise 1", lambda x: 3 * x, ref, CASES, hint="double it, then add sigma noise")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "FAIL  Exercise 1"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "Problem",
        "Failing inputs",
        "Hint",
        f"Carrying on with the reference `{REF_NAME}`.",
    ]
    assert lines[3].strip() == "Hint: double it, then add sigma noise"
    assert all(line.startswith("      ") for line in lines[1:])


def test_pass_and_todo_are_one_line(capsys):
    E.check_function("ex", lambda x: x + x, ref, CASES, hint="h")
    E.check_function("ex", todo, ref, CASES, hint="h")
    assert capsys.readouterr().out.splitlines() == [
        "PASS  ex: matches dlib's reference on 1 test case.",
        f"TODO  ex: not solved yet; carrying on with the reference `{REF_NAME}`.",
    ]


def test_require_dtype_names_float32_where_float64_is_needed(capsys):
    def betas64(T):
        return torch.linspace(1e-4, 0.02, T, dtype=torch.float64)

    def betas32(T):
        return betas64(T).float()

    cases = [dict(T=10)]
    assert E.check_function("ex", betas32, betas64, cases, hint="h", require_dtype=torch.float64) is betas64
    assert "This looks like: float32 where float64 is needed." in capsys.readouterr().out
    assert E.last_result().mistake == E.dtype_mistake(torch.float32, torch.float64)
    assert E.check_function("ex", betas64, betas64, cases, hint="h", require_dtype=torch.float64) is betas64
    assert E.last_result().passed
    # integer outputs are not held to a floating-point dtype
    assert E.judge_function(
        "ex", lambda: (torch.arange(3), 1.0), lambda: (torch.arange(3), 1.0), [{}], require_dtype=torch.float64
    ).passed


def cosine_betas(T, s=0.008, max_beta=0.999, dtype=torch.float64):
    u = torch.arange(T + 1, dtype=dtype) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)


def test_float32_cosine_betas_fail_against_a_float64_reference():
    # measured: at the default tolerance a float32 implementation passes (max error 3e-5 at beta ~ 0.5)
    def cosine_betas32(T, s=0.008, max_beta=0.999):
        return cosine_betas(T, s, max_beta, torch.float32)

    def reference(T, s=0.008, max_beta=0.999):
        return dlib.schedules.betas_from_alpha_bar(
            lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2, T, max_beta
        )

    cases = [dict(T=1000), dict(T=20), dict(T=100, s=0.05, max_beta=0.5)]
    assert E.judge_function("ex", cosine_betas32, reference, cases).passed
    tight = E.judge_function("ex", cosine_betas32, reference, cases, atol=0, rtol=1e-9)
    assert tight.status == E.FAIL and "(the output is float32, the reference's float64)" in tight.problem
    named = E.judge_function("ex", cosine_betas32, reference, cases, atol=0, rtol=1e-9, require_dtype=torch.float64)
    assert named.mistake == "float32 where float64 is needed"
    assert E.judge_function("ex", cosine_betas, reference, cases, atol=0, rtol=1e-9, require_dtype=torch.float64).passed


def test_judge_does_not_print_and_todo_on_not_implemented(capsys):
    assert E.judge_function("ex", todo, ref, CASES).status == E.TODO
    assert E.judge_function("ex", ref, ref, CASES).status == E.PASS
    assert capsys.readouterr().out == "" and E.last_result() is None


def test_pass_returns_candidate(capsys):
    def mine(x):
        return x + x

    assert E.check_function("ex", mine, ref, CASES, hint="h") is mine
    assert capsys.readouterr().out.startswith("PASS")
    assert E.last_result().status == E.PASS and E.last_result().passed


def test_unsolved_falls_back(capsys):
    assert E.check_function("ex", todo, ref, CASES, hint="h") is ref
    assert "TODO  ex: not solved yet" in capsys.readouterr().out
    assert E.last_result().status == E.TODO


@pytest.mark.parametrize("wrong", [lambda x: 3 * x, lambda x: x[:2], lambda x: 1 / 0])
def test_wrong_answer_fails_with_hint(wrong, capsys):
    assert E.check_function("ex", wrong, ref, CASES, hint="double it") is ref
    out = capsys.readouterr().out
    assert out.startswith("FAIL") and "Hint: double it" in out


def test_require_solved_turns_fallback_into_error(monkeypatch):
    monkeypatch.setenv(E.REQUIRE_ENV, "1")
    with pytest.raises(E.ExerciseFailed, match="This looks like: the sign of the guidance term"):
        E.check_function(
            "ex", CFG_MISTAKES["the sign of the guidance term"], cfg, CFG_CASES, hint="h", mistakes=CFG_MISTAKES
        )
    with pytest.raises(E.ExerciseFailed):
        E.check_function("ex", todo, ref, CASES, hint="h")
    with pytest.raises(E.ExerciseFailed):
        E.check_value("v", ..., 1.0, hint="h")


def test_require_solved_also_checks_the_catalogue(monkeypatch):
    monkeypatch.setenv(E.REQUIRE_ENV, "1")
    assert E.check_function("ex", cfg, cfg, CFG_CASES, hint="h", mistakes=CFG_MISTAKES) is cfg
    blind = {"the sign of the guidance term": lambda eps_u, eps_c, w: eps_u}  # equals cfg at w = 0 only
    with pytest.raises(E.ExerciseFailed, match="do not tell it from the reference"):
        E.check_function("ex", cfg, cfg, [CFG_CASES[0]], hint="h", mistakes=blind)


def test_catalogue_helper_reports_mistakes_the_cases_cannot_separate():
    twins = {"first": lambda x: 3 * x, "second": lambda x: x * 3, "harmless": lambda x: x + x}
    problems = E.catalogue_problems(ref, CASES, twins)
    assert len(problems) == 2
    assert "'second' was named 'first'" in problems[0] and "'harmless' gave PASS" in problems[1]
    with pytest.raises(AssertionError, match="catalogued mistakes not recognised"):
        E.assert_catalogue_recognised(ref, CASES, twins)


def test_check_value(capsys):
    assert E.check_value("v", (1.0, torch.ones(2)), (1.0, torch.ones(2)), hint="h")
    assert not E.check_value("v", 0.5, 1.0, hint="h")
    assert not E.check_value("v", None, 1.0, hint="h")
    assert E.check_value("s", " Cosine", "cosine", hint="h")


def test_check_value_names_a_wrong_value(capsys):
    mistakes = {"the variance where the standard deviation belongs": 0.25, "a missing square root": 0.0625}
    assert not E.check_value("derive", 0.0625, 0.5, hint="h", mistakes=mistakes)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "FAIL  derive" and "This looks like: a missing square root." in out
    assert "Failing inputs" not in out and "test case" not in out
