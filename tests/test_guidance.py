import math

import pytest
import torch

from dlib import guidance, samplers
from dlib import schedules as S
from dlib.gaussian import gaussian_eps

SCHED = S.linear(1000)
M, S2 = 1.0, 0.09  # two classes: x_0 ~ N(-M, S2) for y = 0 and N(+M, S2) for y = 1, equally likely


def alpha_bar_of(t, x):
    return (1 / (1 + S.sigma_of_t(SCHED, t.double()) ** 2)).reshape(-1, *[1] * (x.ndim - 1))


def eps_class(x, t, y):
    """The exact conditional eps-model of the two-Gaussian data."""
    mu = torch.where(y == 1, M, -M).double().reshape(-1, *[1] * (x.ndim - 1))
    return gaussian_eps(x, alpha_bar_of(t, x), mu, S2)


def log_prob(x, t, y):
    """The exact log p(y | x_t): a logistic in x_t with log-odds 2 sqrt(ab) M x / (ab S2 + 1 - ab)."""
    ab = alpha_bar_of(t, x)
    logit = (2 * ab.sqrt() * M * x.double() / (ab * S2 + 1 - ab)).flatten(1).sum(1)
    logits = torch.stack([torch.zeros_like(logit), logit], 1)
    return torch.log_softmax(logits, 1)[torch.arange(len(y)), y]


def eps_mixture(x, t):
    """The exact unconditional eps: the posterior-weighted average of the class predictions."""
    p1 = log_prob(x, t, torch.ones(len(x), dtype=torch.long)).exp().reshape(-1, *[1] * (x.ndim - 1))
    return p1 * eps_class(x, t, torch.ones(len(x), dtype=torch.long)) + (1 - p1) * eps_class(
        x, t, torch.zeros(len(x), dtype=torch.long)
    )


def test_conventions_differ_by_one(gen):
    e_u, e_c = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    for w in (0.0, 1.5, 7.0):
        torch.testing.assert_close(
            guidance.cfg_combine(e_u, e_c, 1 + w, "uncond"), guidance.cfg_combine(e_u, e_c, w, "cond")
        )
    torch.testing.assert_close(guidance.cfg_combine(e_u, e_c, 0.0, "uncond"), e_u)
    torch.testing.assert_close(guidance.cfg_combine(e_u, e_c, 1.0, "uncond"), e_c)
    torch.testing.assert_close(guidance.cfg_combine(e_u, e_c, 0.0, "cond"), e_c)
    with pytest.raises(ValueError, match="convention must be"):
        guidance.cfg_combine(e_u, e_c, 1.0, "imagen")


def test_classifier_free_makes_one_batched_call_and_matches_two_calls(gen):
    calls = []

    def model(x, t, y):  # a class model with "no label" = 2
        calls.append(len(x))
        y_eff = torch.where(y == 2, torch.zeros_like(y), y)
        return eps_class(x, t, y_eff) * (1 + (y == 2).double().reshape(-1, 1))  # per example: null label doubles it

    x, t, y = (
        torch.randn(5, 1, generator=gen, dtype=torch.float64),
        torch.full((5,), 300),
        torch.tensor([0, 1, 1, 0, 1]),
    )
    guided = guidance.classifier_free(model, 3.0, {"y": torch.tensor([2])})
    out = guided(x, t, y=y)
    assert calls == [10]
    expected = guidance.cfg_combine(model(x, t, y=torch.full((5,), 2)), model(x, t, y=y), 3.0)
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="exactly the conditions"):
        guided(x, t)


def test_classifier_guidance_with_scale_one_gives_the_exact_conditional_model(gen):
    """Bayes' rule: the unconditional eps plus the classifier's gradient is the conditional eps."""
    x = torch.randn(64, 1, generator=gen, dtype=torch.float64) * 2
    for t_val in (50, 400.5, 900):
        t = torch.full((64,), t_val, dtype=torch.float64 if t_val % 1 else torch.long)
        y = torch.randint(0, 2, (64,), generator=gen)
        guided = guidance.classifier_guidance(eps_mixture, log_prob, SCHED, scale=1.0)
        torch.testing.assert_close(guided(x, t, y=y), eps_class(x, t, y), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_guided_models_drive_every_sampler_unchanged(name, gen):
    """Stronger guidance pushes samples of class 1 further from the other class, whatever the sampler."""
    x_T = torch.randn(256, 1, generator=gen, dtype=torch.float64)
    y = torch.ones(256, dtype=torch.long)

    def model(x, t, y):  # conditional model with null label 2 = the mixture
        out = eps_mixture(x, t)
        return torch.where((y == 2).reshape(-1, 1), out, eps_class(x, t, torch.where(y == 2, 0, y)))

    steps = None if name == "pf_ode" else 20
    means = []
    for w in (1.0, 3.0):
        guided = guidance.classifier_free(model, w, {"y": torch.tensor([2])})
        kw = {"generator": torch.Generator().manual_seed(0)}
        means.append(samplers.SAMPLERS[name](guided, x_T, SCHED, steps, y=y, **kw).mean().item())
    assert abs(means[0] - M) < 0.15 and means[1] > means[0], means
    assert math.isfinite(means[1])
