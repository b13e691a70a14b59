import math

import pytest
import torch

from dlib import guidance, samplers
from dlib import schedules as S
from dlib.gaussian import GaussianMixture

SCHED = S.linear(1000)
M, S2 = 1.0, 0.09  # two classes: x_0 ~ N(-M, S2) for y = 0 and N(+M, S2) for y = 1, equally likely
DATA = GaussianMixture(SCHED, [-M, M], S2)
eps_class, log_prob = DATA.eps, DATA.log_prob  # the exact conditional eps-model and noisy classifier


def eps_mixture(x, t):
    return DATA.eps(x, t)  # the exact unconditional eps


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


def test_mixture_eps_is_minus_scaled_score_of_the_marginal(gen):
    """E[eps | x_t] = -sqrt(1 - ab) grad log p(x_t), with p(x_t) written out and differentiated by autograd."""
    data = GaussianMixture(SCHED, [-2.0, 0.5, 1.5], 0.04, weights=[0.2, 0.5, 0.3])
    x = (torch.randn(32, 2, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
    for t_val in (10, 500, 980):
        t = torch.full((32,), t_val)
        ab = 1 / (1 + S.sigma_of_t(SCHED, torch.tensor(float(t_val))) ** 2)
        var = ab * 0.04 + 1 - ab
        comps = torch.stack(
            [
                math.log(w) - 0.5 * ((x - ab.sqrt() * m) ** 2 / var).sum(1) - math.log(2 * math.pi * var)
                for m, w in zip([-2.0, 0.5, 1.5], [0.2, 0.5, 0.3], strict=True)
            ],
            1,
        )
        (score,) = torch.autograd.grad(torch.logsumexp(comps, 1).sum(), x)
        torch.testing.assert_close(data.eps(x, t).detach(), -(1 - ab).sqrt() * score, rtol=1e-6, atol=1e-8)
    assert torch.allclose(data.log_posterior(x, t).exp().sum(1), torch.ones(32, dtype=torch.float64))


def test_classifier_free_guidance_is_classifier_guidance_with_the_implicit_classifier(gen):
    """(1 + w) eps_c - w eps_u = eps_u + (1 + w)(eps_c - eps_u), and eps_c - eps_u = -sqrt(1 - ab) grad log p(y | x_t):
    CFG at scale w ("cond") is classifier guidance of the unconditional model at scale 1 + w."""
    data = GaussianMixture(SCHED, [-1.0, 0.0, 2.0], 0.05)
    x = torch.randn(48, 1, generator=gen, dtype=torch.float64) * 1.5
    y = torch.randint(0, 3, (48,), generator=gen)
    for t_val, w in ((100, 0.5), (600, 3.0), (950, 7.0)):
        t = torch.full((48,), t_val)
        cfg = guidance.classifier_free(data.eps, w, {"y": torch.tensor([data.null_label])}, convention="cond")
        cg = guidance.classifier_guidance(data.eps, data.log_prob, SCHED, scale=1 + w)
        torch.testing.assert_close(cfg(x, t, y=y), cg(x, t, y=y), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_guided_models_drive_every_sampler_unchanged(name, gen):
    """Stronger guidance pushes samples of class 1 further from the other class, whatever the sampler."""
    x_T = torch.randn(256, 1, generator=gen, dtype=torch.float64)
    y = torch.ones(256, dtype=torch.long)

    model = DATA.eps  # conditional model with null label 2 = the mixture
    steps = None if name == "pf_ode" else 20
    means = []
    for w in (1.0, 3.0):
        guided = guidance.classifier_free(model, w, {"y": torch.tensor([2])})
        kw = {"generator": torch.Generator().manual_seed(0)}
        means.append(samplers.SAMPLERS[name](guided, x_T, SCHED, steps, y=y, **kw).mean().item())
    assert abs(means[0] - M) < 0.15 and means[1] > means[0], means
    assert math.isfinite(means[1])
