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


# --- the guided DDIM loop of notebook 06 and the fixes for oversaturation ---

MIX = GaussianMixture(SCHED, [-1.0, 0.0, 2.0], 0.05)


@pytest.mark.parametrize("w", [0.0, 3.0])
def test_sample_cfg_ddim_is_ddim_on_the_classifier_free_wrapper(w, gen):
    x_T = torch.randn(64, 1, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=gen)
    ours = guidance.sample_cfg_ddim(MIX.eps, x_T, SCHED, 12, w, y, MIX.null_label)
    wrapped = guidance.classifier_free(MIX.eps, w, {"y": torch.tensor([MIX.null_label])}, convention="cond")
    torch.testing.assert_close(ours, samplers.sample_ddim(wrapped, x_T, SCHED, 12, y=y))


def test_guidance_interval_outside_everything_is_the_conditional_sampler(gen):
    x_T = torch.randn(32, 1, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=gen)
    plain = guidance.sample_cfg_ddim(MIX.eps, x_T, SCHED, 10, 0.0, y, MIX.null_label)
    off = guidance.sample_cfg_ddim(MIX.eps, x_T, SCHED, 10, 5.0, y, MIX.null_label, interval=(-2, -1))
    everywhere = guidance.sample_cfg_ddim(MIX.eps, x_T, SCHED, 10, 5.0, y, MIX.null_label, interval=(0, 999))
    torch.testing.assert_close(off, plain)
    torch.testing.assert_close(everywhere, guidance.sample_cfg_ddim(MIX.eps, x_T, SCHED, 10, 5.0, y, MIX.null_label))


def test_dynamic_threshold_leaves_in_range_examples_alone_and_pulls_the_rest_in(gen):
    x = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1  # inside [-1, 1]: s = 1, unchanged
    torch.testing.assert_close(guidance.dynamic_threshold(x, 0.995), x)
    big = 3 * torch.randn(4, 1, 8, 8, generator=gen)
    out = guidance.dynamic_threshold(big, 0.9)
    assert out.abs().max() <= 1 + 1e-6
    s = torch.quantile(big.flatten(1).abs(), 0.9, dim=1).clamp(min=1)
    torch.testing.assert_close(out[0], big[0].clamp(-s[0], s[0]) / s[0])  # a per-example threshold, not a global one


@pytest.mark.parametrize("percentile", [0.5, 0.9, 0.995])
def test_dynamic_threshold_matches_diffusers(percentile, gen):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=percentile, sample_max_value=1e6)
    x = 2.5 * torch.randn(6, 3, 8, 8, generator=gen)
    x[0] *= 0.2  # one example already in range
    torch.testing.assert_close(guidance.dynamic_threshold(x, percentile), sched._threshold_sample(x))


def test_cfg_rescale_matches_its_definition_and_diffusers(gen):
    eps_g, eps_c = 4 * torch.randn(5, 1, 6, 6, generator=gen), torch.randn(5, 1, 6, 6, generator=gen)
    torch.testing.assert_close(guidance.cfg_rescale(eps_g, eps_c, 0.0), eps_g)
    full = guidance.cfg_rescale(eps_g, eps_c, 1.0)
    torch.testing.assert_close(full.flatten(1).std(1), eps_c.flatten(1).std(1))
    pytest.importorskip("diffusers")
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    for phi in (0.0, 0.7, 1.0):
        torch.testing.assert_close(guidance.cfg_rescale(eps_g, eps_c, phi), rescale_noise_cfg(eps_g, eps_c, phi))


def test_dynamic_threshold_inside_the_sampler_keeps_samples_in_range(gen):
    x_T = torch.randn(64, 1, generator=gen, dtype=torch.float64)
    y = torch.full((64,), 2)  # class at +2: outside [-1, 1] by construction
    out = guidance.sample_cfg_ddim(MIX.eps, x_T, SCHED, 10, 2.0, y, MIX.null_label, threshold=0.9)
    assert out.abs().max() <= 1 + 1e-9


def test_notebook_06_catalogues_name_every_mistake(gen):
    """Each catalogued mistake of notebook 06's guidance exercises, fed to the checker, gets a FAIL that names it."""
    from dlib.exercises import assert_catalogue_recognised
    from dlib.exercises.catalogues import nb06

    y = torch.randint(0, 3, (24,), generator=gen)
    loop_cases = [
        dict(model=MIX.eps, x_T=torch.randn(24, 1, generator=gen, dtype=torch.float64), sched=SCHED, steps=s, w=w, y=y)
        | dict(null_y=MIX.null_label)
        for s, w in ((10, 3.0), (25, 0.0))
    ]
    assert_catalogue_recognised(guidance.sample_cfg_ddim, loop_cases, nb06.guided_ddim["mistakes"])
    e_u, e_c = torch.randn(2, 3, generator=gen), torch.randn(2, 3, generator=gen)
    cfg_cases = [
        dict(eps_uncond=e_u, eps_cond=e_c, w=w, convention=c) for w, c in ((7.5, "uncond"), (3.0, "cond"), (2.0, "x"))
    ]
    assert_catalogue_recognised(nb06.cfg_combine["reference"], cfg_cases, nb06.cfg_combine["mistakes"])
