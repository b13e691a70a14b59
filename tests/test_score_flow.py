"""Score matching, flow matching and rectified flow (notebook 11): the losses against hand computations with the
same draws, the exact mixture score and its Tweedie denoiser, conversions between parameterisations, Langevin
and predictor-corrector sampling (with parity to diffusers' ScoreSdeVeScheduler), straightness of ODE paths,
and reflow's pairs and training run.

Ground truth comes from closed forms (Gaussian data, isotropic Gaussian mixtures), never from a trained
network; the one training test uses the seconds-scale tiny recipes.
"""

import dataclasses
import itertools
import json
import math

import pytest
import torch

from dlib import checkpoint, data
from dlib.config import TrainConfig
from dlib.denoiser import OUTPUTS, PREDICTIONS, VE, VP, Denoiser, Flow, convert
from dlib.gaussian import IsotropicMixture, gaussian_denoiser, gaussian_ode_endpoint, gaussian_posterior
from dlib.losses import FlowMatchingLoss, ot_coupling
from dlib.recipes import RECIPES
from dlib.rectified import FlowPath, ode_path, reflow_pairs, straightness
from dlib.samplers import (
    SAMPLERS,
    langevin_step,
    sample_annealed_langevin,
    sample_euler,
    sample_pc,
    sample_pf_ode,
    sde_step,
    sigma_grid,
)
from dlib.schedules import get_schedule
from dlib.score import ScoreMatchingLoss
from dlib.train import train
from dlib.train.__main__ import cached_reflow_pairs
from dlib.utils import CountCalls

MU, S2 = 0.5, 0.25  # Gaussian data N(MU, S2 I), as in test_denoiser.py
LINEAR = get_schedule("linear", 1000)
PROCESSES = {"vp": VP(LINEAR), "flow": Flow(), "ve": VE()}
ANGLES = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
EIGHT = IsotropicMixture(torch.stack([ANGLES.cos(), ANGLES.sin()], 1), 0.05**2)  # eight Gaussians on the unit circle


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def weights(module):
    return torch.cat([p.detach().flatten() for p in module.state_dict().values() if p.is_floating_point()])


# --- dlib.score: denoising score matching ---


@pytest.mark.parametrize("weighting", ["sigma2", "none"])
def test_score_matching_loss_is_the_hand_computation_with_the_same_draws(weighting):
    """sigma ~ U(sigmas) per example, then z; the model sees x_0 + sigma z at VE time log(sigma) / 4 and regresses -z / sigma."""
    sigmas = [0.01, 0.1, 1.0, 10.0]
    seen = {}

    def model(x, time):
        seen["time"] = time
        return torch.tanh(x) * time.view(-1, 1, 1, 1) + 0.3

    x_0 = torch.randn(6, 1, 4, 4, generator=g(1))
    loss = ScoreMatchingLoss(sigmas, weighting=weighting)(model, x_0, g(2))
    gen = g(2)
    k = torch.randint(0, len(sigmas), (6,), generator=gen)
    z = torch.randn(x_0.shape, generator=gen)
    sigma = torch.tensor(sigmas, dtype=torch.float64)[k]
    s = sigma.float().view(-1, 1, 1, 1)
    time = (sigma.log() / 4).float()
    per_example = ((torch.tanh(x_0 + s * z) * time.view(-1, 1, 1, 1) + 0.3 + z / s) ** 2).flatten(1).mean(1)
    expected = (per_example * (sigma.float() ** 2 if weighting == "sigma2" else 1)).mean()
    torch.testing.assert_close(seen["time"], time)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert loss.ndim == 0 and len(set(k.tolist())) > 1  # several levels were drawn


def test_exact_score_minimises_score_matching_at_its_closed_form_value():
    """Gaussian data N(MU, S2 I): the exact score's sigma^2-weighted loss is the mean over levels of S2 / (S2 + sigma^2)
    (the irreducible part), and a score off by delta costs exactly E[sigma^2] delta^2 more (the cross term vanishes:
    Vincent 2011), with common random numbers."""
    sigmas = [0.05, 0.3, 1.0, 3.0]
    gauss = IsotropicMixture([[MU, MU]], S2)  # K = 1: the Gaussian
    net = gauss.denoiser(VE()).net  # the exact score at VE time log(sigma) / 4
    x_0 = gauss.sample(40_000, g(0)).float()
    loss_fn = ScoreMatchingLoss(sigmas)
    exact = loss_fn(net, x_0, g(1)).item()
    assert exact == pytest.approx(sum(S2 / (S2 + s**2) for s in sigmas) / len(sigmas), rel=0.02)
    delta = 0.2
    shifted = loss_fn(lambda x, t: net(x, t) + delta, x_0, g(1)).item()
    scaled = loss_fn(lambda x, t: 1.2 * net(x, t), x_0, g(1)).item()
    assert shifted - exact == pytest.approx(delta**2 * sum(s**2 for s in sigmas) / len(sigmas), rel=0.05)
    assert scaled > exact + 0.005
    # the same on the eight Gaussians: the mixture's exact score beats a perturbed one
    x_8 = EIGHT.sample(20_000, g(2)).float()
    net_8 = EIGHT.denoiser(VE()).net
    exact_8 = loss_fn(net_8, x_8, g(3)).item()
    assert loss_fn(lambda x, t: 0.9 * net_8(x, t), x_8, g(3)).item() > exact_8 + 1e-3
    assert loss_fn(lambda x, t: net_8(x, t) + delta, x_8, g(3)).item() > exact_8 + 0.5 * delta**2


def test_unweighted_score_matching_at_one_tiny_sigma_has_target_variance_one_over_sigma_squared():
    """The study guide's version: one sigma = 0.01, no weighting. The target -z / sigma has variance 1 / sigma^2 per
    dimension, so even the exact score scores about 1 / sigma^2 = 1e4, while the sigma^2 weighting brings it to O(1)."""
    sigma = 0.01
    gauss = IsotropicMixture([[MU] * 4], S2)
    x_0 = gauss.sample(20_000, g(0)).float()

    def zero(x, t):
        return torch.zeros_like(x)

    unweighted = ScoreMatchingLoss([sigma], weighting="none")
    assert unweighted(zero, x_0, g(1)).item() == pytest.approx(1 / sigma**2, rel=0.02)
    exact = unweighted(gauss.denoiser(VE()).net, x_0, g(1)).item()
    assert exact == pytest.approx(S2 / (S2 + sigma**2) / sigma**2, rel=0.02)
    assert ScoreMatchingLoss(sigma)(zero, x_0, g(1)).item() == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize(
    ("sigmas", "kw", "message"),
    [
        ([], {}, "sigmas must be positive finite"),
        ([0.1, 0.0], {}, "sigmas must be positive finite"),
        ([-1.0], {}, "sigmas must be positive finite"),
        ([0.1, math.inf], {}, "sigmas must be positive finite"),
        ([math.nan], {}, "sigmas must be positive finite"),
        ([0.1], {"weighting": "min_snr"}, r"weighting must be one of \('sigma2', 'none'\)"),
    ],
)
def test_score_matching_bad_input_gets_a_clear_error(sigmas, kw, message):
    with pytest.raises(ValueError, match=message):
        ScoreMatchingLoss(sigmas, **kw)


# --- dlib.gaussian.IsotropicMixture ---

MIX = IsotropicMixture([[0.0, 0.0], [1.5, -0.5], [-1.0, 1.0]], 0.1, weights=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("sigma", [0.0, 0.1, 0.7, 3.0, "per_example"])
def test_mixture_score_is_the_gradient_of_its_log_prob(sigma):
    x = torch.randn(20, 2, dtype=torch.float64, generator=g(0)) * 1.5
    if sigma == "per_example":
        sigma = torch.linspace(0.05, 2.0, 20, dtype=torch.float64)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(MIX.log_prob(x, sigma).sum(), x)
    torch.testing.assert_close(MIX.score(x.detach(), sigma), grad, rtol=1e-9, atol=1e-9)
    if isinstance(sigma, torch.Tensor):  # a (B,) sigma is each row's own level
        rows = torch.cat([MIX.score(x.detach()[i : i + 1], sigma[i].item()) for i in range(20)])
        torch.testing.assert_close(MIX.score(x.detach(), sigma), rows, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_mixture_log_prob_integrates_to_one(sigma):
    h = 0.02
    axis = torch.arange(-6, 6, h, dtype=torch.float64) + h / 2
    grid = torch.cartesian_prod(axis, axis)
    mass = MIX.log_prob(grid, sigma).exp().sum() * h**2
    assert mass.item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("family", ["vp", "ve", "flow"])
def test_one_component_mixture_is_the_gaussian_denoiser(family):
    process = PROCESSES[family]
    mixture = IsotropicMixture([[MU, MU, MU]], S2).denoiser(process)
    assert mixture.prediction == "score"
    gauss = gaussian_denoiser(process, "eps", MU, S2)
    x = torch.randn(9, 3, dtype=torch.float64, generator=g(0))
    for sigma in (0.02, 0.3, 1.0, 5.0, 50.0):
        ours, ref = mixture(x, sigma), gauss(x, sigma)
        torch.testing.assert_close(ours.x_0, ref.x_0, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ours.eps, ref.eps, rtol=1e-6, atol=1e-6)


def test_tweedie_posterior_mean_matches_monte_carlo():
    """E[x_0 | x_bar] = x_bar + sigma^2 score(x_bar): estimated by weighting mixture draws x_0 by N(x_bar; x_0, sigma^2 I)."""
    sigma = 0.7
    x_0 = MIX.sample(400_000, g(0))
    x_bar = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 1.5], [2.0, -1.0], [0.3, 0.8]], dtype=torch.float64)
    log_w = -0.5 * torch.cdist(x_bar, x_0).pow(2) / sigma**2  # (5, N)
    mc = torch.softmax(log_w, dim=1) @ x_0
    tweedie = x_bar + sigma**2 * MIX.score(x_bar, sigma)
    torch.testing.assert_close(tweedie, mc, rtol=0, atol=0.01)
    assert (sigma**2 * MIX.score(x_bar, sigma)).norm(dim=1).min() > 0.1  # the score term is not negligible
    # the Denoiser reading of the same score on VE says the same
    torch.testing.assert_close(MIX.denoiser(VE())(x_bar, sigma).x_0, tweedie, rtol=1e-6, atol=1e-6)


def test_mixture_samples_have_the_mixture_moments():
    """Mean sum_k w_k mu_k and covariance sum_k w_k (mu_k - m)(mu_k - m)^T + var_data I, weights normalised."""
    x = MIX.sample(100_000, g(0))
    assert x.shape == (100_000, 2) and x.dtype == torch.float64
    w = torch.tensor([1 / 6, 2 / 6, 3 / 6], dtype=torch.float64)
    m = w @ MIX.means
    d = MIX.means - m
    cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0) + 0.1 * torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(x.mean(0), m, rtol=0, atol=0.01)
    torch.testing.assert_close(x.T.cov(), cov, rtol=0, atol=0.015)
    assert torch.equal(MIX.sample(5, g(1)), MIX.sample(5, g(1)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0.0, 1.0], 0.1), r"means must be finite \(K, D\)"),
        (([[[0.0]]], 0.1), r"means must be finite \(K, D\)"),
        (([[0.0, float("nan")]], 0.1), r"means must be finite \(K, D\)"),
        (([[0.0, 1.0]], 0.0), "var_data a positive finite number"),
        (([[0.0, 1.0]], -1.0), "var_data a positive finite number"),
        (([[0.0, 1.0]], float("nan")), "var_data a positive finite number"),
        (([[0.0, 1.0]], float("inf")), "var_data a positive finite number"),
        (([[0.0], [1.0]], 0.1, [1.0]), "weights must be 2 positive finite numbers"),
        (([[0.0], [1.0]], 0.1, [1.0, 0.0]), "weights must be 2 positive finite numbers"),
        (([[0.0], [1.0]], 0.1, [1.0, -2.0]), "weights must be 2 positive finite numbers"),
        (([[0.0], [1.0]], 0.1, [float("nan"), 1.0]), "weights must be 2 positive finite numbers"),
        (([[0.0], [1.0]], 0.1, [float("inf"), 1.0]), "weights must be 2 positive finite numbers"),
    ],
)
def test_mixture_bad_input_gets_a_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        IsotropicMixture(*args)


# --- dlib.denoiser: OUTPUTS and convert ---


@pytest.mark.parametrize("prediction", list(PREDICTIONS))
def test_outputs_invert_predictions(prediction):
    gen = g(0)
    x_0, eps = torch.randn(2, 5, 3, dtype=torch.float64, generator=gen)
    u = torch.rand(5, 1, dtype=torch.float64, generator=gen) * 0.9 + 0.05
    a, b = {"v": ((1 - u**2).sqrt(), u), "flow": (1 - u, u)}.get(prediction, (u + 0.3, 2 * u))
    out = OUTPUTS[prediction](x_0, eps, a, b)
    back = PREDICTIONS[prediction](out, a * x_0 + b * eps, a, b)
    torch.testing.assert_close(back.x_0, x_0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(back.eps, eps, rtol=1e-10, atol=1e-10)


SOURCES = [
    ("vp", "eps"),
    ("vp", "v"),
    ("vp", "score"),
    ("flow", "flow"),
    ("flow", "x_0"),
    ("ve", "score"),
    ("ve", "x_0"),
]
ONLY_ON = {"v": "vp", "flow": "flow"}  # dlib.denoiser.PROCESS_OF
TARGETS = [(fam, p) for fam in PROCESSES for p in ("eps", "x_0", "score", "v", "flow") if ONLY_ON.get(p, fam) == fam]


@pytest.mark.parametrize(("target", "prediction"), TARGETS)
def test_a_converted_network_predicts_what_the_source_does(target, prediction):
    """Denoiser(convert(den, p, proc), p, proc) at proc's state s x_bar gives den's (x_0_hat, eps_hat) at den's s' x_bar."""
    process = PROCESSES[target]
    x_bar = torch.randn(6, 2, dtype=torch.float64, generator=g(0)) * 2
    for family, source in SOURCES:
        den = gaussian_denoiser(PROCESSES[family], source, MU, S2)
        converted = Denoiser(convert(den, prediction, process), prediction, process)
        for sigma in (0.05, 0.5, 2.0, 20.0):
            ref = den(den.process.coefs(sigma)[0].item() * x_bar, sigma)
            got = converted(process.coefs(sigma)[0].item() * x_bar, sigma)
            torch.testing.assert_close(got.x_0, ref.x_0, rtol=1e-5, atol=1e-5, msg=f"{family} {source} at {sigma}")
            torch.testing.assert_close(got.eps, ref.eps, rtol=1e-5, atol=1e-5, msg=f"{family} {source} at {sigma}")
            torch.testing.assert_close(got.x_0, gaussian_posterior(x_bar, 1.0, sigma, MU, S2).x_0, rtol=1e-5, atol=1e-5)


def test_convert_at_pure_noise_and_bad_input():
    flow = gaussian_denoiser(Flow(), "flow", MU, S2)
    x_T = torch.randn(5, 2, dtype=torch.float64, generator=g(0))
    as_x0 = Denoiser(convert(flow, "x_0", Flow()), "x_0", Flow())
    torch.testing.assert_close(as_x0(x_T, math.inf).x_0, flow(x_T, math.inf).x_0)  # finite at t = 1
    torch.testing.assert_close(flow(x_T, math.inf).x_0, torch.full_like(x_T, MU))  # E[x_0 | pure noise] = mu
    as_eps = Denoiser(convert(flow, "eps", Flow()), "eps", Flow())
    with pytest.raises(ValueError, match="says nothing about x_0"):
        as_eps(x_T, math.inf)
    with pytest.raises(ValueError, match="prediction must be one of"):
        convert(flow, "edm", Flow())
    with pytest.raises(ValueError, match="prediction must be one of"):
        convert(flow, "velocity", Flow())
    with pytest.raises(ValueError, match="defined on the VP process only"):
        convert(flow, "v", Flow())
    with pytest.raises(ValueError, match="defined on the Flow process only"):
        convert(flow, "flow", VP(LINEAR))


def test_converted_eps_model_on_vp_lands_where_the_flow_model_does():
    """A flow model sampled by Euler on the flow, and the same model read as an eps-model on VP and sampled there, both
    reach the Gaussian's ODE endpoint (which differs between the two only by VP's finite sigma range)."""
    flow = gaussian_denoiser(Flow(), "flow", MU, S2)
    eps = Denoiser(convert(flow, "eps", VP(LINEAR)), "eps", VP(LINEAR))
    x_T = torch.randn(64, 2, dtype=torch.float64, generator=g(0))
    on_flow, on_vp = sample_euler(flow, x_T, steps=200), sample_euler(eps, x_T, steps=200)
    torch.testing.assert_close(on_flow, gaussian_ode_endpoint(Flow(), x_T, MU, S2), rtol=0, atol=0.03)
    torch.testing.assert_close(on_vp, gaussian_ode_endpoint(VP(LINEAR), x_T, MU, S2), rtol=0, atol=0.05)
    torch.testing.assert_close(on_flow, on_vp, rtol=0, atol=0.05)
    assert (on_vp - x_T).abs().max() > 0.3  # the samplers did move


# --- dlib.losses: flow matching with given noise and the OT coupling ---


def velocity_model(x, time):
    return torch.sin(x) * (1 + time.view(-1, *[1] * (x.ndim - 1)) / 1000) - 0.2


def hand_flow_loss(x_0, t, eps):
    tt = t.view(-1, 1, 1, 1)
    x_t = (1 - tt) * x_0 + tt * eps
    return ((velocity_model(x_t, 1000 * t) - (eps - x_0)) ** 2).flatten(1).mean(1).mean()


def test_flow_matching_with_given_noise_is_the_hand_computation():
    x_0 = torch.randn(5, 1, 3, 3, generator=g(0))
    noise = torch.randn(5, 1, 3, 3, generator=g(1))
    loss = FlowMatchingLoss()(velocity_model, x_0, g(2), noise=noise)
    t = torch.rand(5, generator=g(2))  # t still comes from the generator
    torch.testing.assert_close(loss, hand_flow_loss(x_0, t, noise))
    # the pairs are fixed: an OT coupling does not re-pair given noise
    torch.testing.assert_close(FlowMatchingLoss(coupling="ot")(velocity_model, x_0, g(2), noise=noise), loss)
    # without noise, the generator's eps after t
    gen = g(2)
    t, eps = torch.rand(5, generator=gen), torch.randn(x_0.shape, generator=gen)
    torch.testing.assert_close(FlowMatchingLoss()(velocity_model, x_0, g(2)), hand_flow_loss(x_0, t, eps))


def test_flow_matching_bad_noise_or_coupling_gets_a_clear_error():
    x_0 = torch.randn(5, 1, 3, 3)
    with pytest.raises(ValueError, match=r"noise must pair one-to-one with x_0 \(5, 1, 3, 3\), got \(4, 1, 3, 3\)"):
        FlowMatchingLoss()(velocity_model, x_0, g(0), noise=torch.randn(4, 1, 3, 3))
    with pytest.raises(ValueError, match="noise must pair one-to-one"):
        FlowMatchingLoss()(velocity_model, x_0, g(0), noise=torch.randn(5, 9))
    with pytest.raises(ValueError, match=r"coupling must be one of \('independent', 'ot'\), got 'sinkhorn'"):
        FlowMatchingLoss(coupling="sinkhorn")


def pairing_cost(x_0, eps):
    return (x_0 - eps).flatten(1).pow(2).sum().item()


def test_ot_coupling_is_the_optimal_permutation():
    x_0 = torch.randn(5, 1, 2, 2, generator=g(0))
    eps = torch.randn(5, 1, 2, 2, generator=g(1))
    paired = ot_coupling(x_0, eps)
    # a permutation of eps's rows
    match = (paired.flatten(1)[:, None] == eps.flatten(1)[None]).all(2)  # (5, 5)
    assert match.sum(1).eq(1).all() and match.sum(0).eq(1).all()
    best = min(pairing_cost(x_0, eps[list(p)]) for p in itertools.permutations(range(5)))
    assert pairing_cost(x_0, paired) == pytest.approx(best, rel=1e-12)
    assert best < pairing_cost(x_0, eps)  # the identity pairing is not optimal for these draws
    x_big, eps_big = torch.randn(64, 3, generator=g(2)), torch.randn(64, 3, generator=g(3))
    cost = pairing_cost(x_big, ot_coupling(x_big, eps_big))
    assert cost < pairing_cost(x_big, eps_big)
    gen = g(4)
    assert all(cost <= pairing_cost(x_big, eps_big[torch.randperm(64, generator=gen)]) for _ in range(50))


def test_ot_coupling_loss_uses_the_repaired_noise():
    x_0 = torch.randn(8, 1, 3, 3, generator=g(0))
    loss = FlowMatchingLoss(coupling="ot")(velocity_model, x_0, g(5))
    gen = g(5)
    t, eps = torch.rand(8, generator=gen), torch.randn(x_0.shape, generator=gen)
    repaired = ot_coupling(x_0, eps)
    assert not torch.equal(repaired, eps)
    torch.testing.assert_close(loss, hand_flow_loss(x_0, t, repaired))
    assert not torch.allclose(loss, hand_flow_loss(x_0, t, eps))


# --- dlib.samplers.sde: Langevin dynamics and predictor-corrector ---


def test_langevin_step_is_the_textbook_update():
    x, score, noise = torch.randn(3, 4, 2, 2, generator=g(0))
    torch.testing.assert_close(langevin_step(x, score, 0.01, noise), x + 0.01 * score + math.sqrt(0.02) * noise)
    step = torch.tensor([0.0, 0.1, 0.5, 2.0])
    expected = torch.stack([x[i] + s * score[i] + math.sqrt(2 * s) * noise[i] for i, s in enumerate(step.tolist())])
    torch.testing.assert_close(langevin_step(x, score, step, noise), expected)
    torch.testing.assert_close(langevin_step(x, score, step[:1], noise), x)  # zero step: no move
    torch.testing.assert_close(langevin_step(x, score, 1, noise), x + score + math.sqrt(2) * noise)  # an int step
    assert langevin_step(x, score, step.double(), noise).dtype == x.dtype  # a float64 step keeps x's dtype


def test_langevin_chains_reach_the_gaussian_with_their_discretisation_bias():
    """Unadjusted Langevin on N(m, v) with the exact score: the chain x' = x - h (x - m) / v + sqrt(2 h) z is an AR(1)
    process whose stationary law is N(m, v / (1 - h / (2 v))), exactly (the step's bias, 11% here)."""
    m, v, h = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.5, 0.1
    gen = g(0)
    x = torch.randn(20_000, 2, dtype=torch.float64, generator=gen) * 3
    for _ in range(150):
        x = langevin_step(x, -(x - m) / v, h, torch.randn(x.shape, dtype=torch.float64, generator=gen))
    torch.testing.assert_close(x.mean(0), m, rtol=0, atol=0.02)
    torch.testing.assert_close(
        x.var(0), torch.full((2,), v / (1 - h / (2 * v)), dtype=torch.float64), rtol=0.025, atol=0
    )


def mode_counts(x: torch.Tensor) -> torch.Tensor:
    return torch.bincount(torch.cdist(x.double(), EIGHT.means).argmin(1), minlength=8)


@pytest.mark.parametrize("sampler", ["pc", "annealed_langevin"])
@pytest.mark.parametrize("family", ["ve", "vp"])
def test_score_samplers_find_all_eight_gaussians(family, sampler):
    process = VE(0.01, 5.0) if family == "ve" else VP(LINEAR)
    den = EIGHT.denoiser(process)
    gen = g(0)
    x_T = (5.0 if family == "ve" else 1.0) * torch.randn(2000, 2, generator=gen)
    if sampler == "pc":
        x = sample_pc(den, x_T, steps=50, generator=gen)
    else:
        x = sample_annealed_langevin(den, x_T, generator=gen)
    r = x.norm(dim=1)
    assert abs(r.mean().item() - 1) < 0.03 and r.std().item() < 0.12
    counts = mode_counts(x)
    assert counts.min() > 0.75 * 250 and counts.max() < 1.25 * 250, counts.tolist()


def test_annealed_langevin_needs_a_finite_largest_sigma():
    flow = gaussian_denoiser(Flow(), "flow", MU, S2)
    x_T = torch.randn(4, 2)
    with pytest.raises(ValueError, match="annealed Langevin needs a finite largest sigma"):
        sample_annealed_langevin(flow, x_T, spacing="uniform")
    with pytest.raises(ValueError, match="needs a finite sigma range"):
        sample_annealed_langevin(flow, x_T)  # the default geometric spacing cannot start at sigma = inf


@pytest.mark.parametrize("corrector_steps", [0, 1, 3])
def test_network_calls_of_annealed_langevin_and_pc(corrector_steps):
    net = CountCalls(EIGHT.denoiser(VE(0.01, 5.0)).net)
    den = Denoiser(net, "score", VE(0.01, 5.0))
    x_T = 5 * torch.randn(16, 2, generator=g(0))
    x = sample_annealed_langevin(den, x_T, steps=4, n_each=corrector_steps + 2, generator=g(1))
    assert net.calls == 4 * (corrector_steps + 2) + 1  # steps n_each + 1, as documented
    levels = []
    seen = sample_annealed_langevin(
        den, x_T, steps=4, n_each=corrector_steps + 2, generator=g(1), callback=levels.append
    )
    assert torch.equal(seen, x) and [d["i"] for d in levels] == [0, 1, 2, 3]  # a callback changes nothing drawn
    assert net.calls == 2 * (4 * (corrector_steps + 2) + 1) + 4  # x_0_hat for the callback: one call per level
    net.calls = 0
    sample_pc(den, x_T, steps=7, corrector_steps=corrector_steps, generator=g(1))
    assert net.calls == 7 + 6 * corrector_steps  # no correction after the last step, to sigma = 0
    flow_net = CountCalls(gaussian_denoiser(Flow(), "flow", MU, S2).net)
    sample_pc(Denoiser(flow_net, "flow", Flow()), x_T / 5, steps=7, corrector_steps=corrector_steps, generator=g(1))
    assert flow_net.calls == 7 + 5 * corrector_steps  # from sigma = inf the first call only starts the chain


def ve_score(x: torch.Tensor, sigma) -> torch.Tensor:
    """A stand-in score network: the exact score of N(MU, S2) data plus a smooth nonlinear term on the same scale
    (its slope times a step's sigma^2 stays O(0.1): float32 rounding is not amplified at sigma = 50)."""
    var = S2 + torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, *[1] * (x.ndim - 1)) ** 2
    return (-(x.double() - MU) / var + 0.2 * torch.sin(2 * x.double() / var.sqrt()) / var.sqrt()).to(x.dtype)


SIGMA_MIN, SIGMA_MAX = 0.01, 50.0
VE_SDE = VE(SIGMA_MIN, SIGMA_MAX)
STAND_IN = Denoiser(lambda x, time: ve_score(x, VE_SDE.sigma_of_time(time)), "score", VE_SDE)


def diffusers_sde_ve(steps: int, snr: float = 0.16):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.ScoreSdeVeScheduler(
        num_train_timesteps=steps, snr=snr, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sampling_eps=1e-5
    )
    ref.set_timesteps(steps)
    ref.set_sigmas(steps)
    return ref


def test_pc_steps_match_diffusers_score_sde_ve():
    """One reverse-diffusion predictor step and one Langevin corrector step, same score and noise. diffusers' model
    output is the score itself; its predictor is x + (sigma^2 - sigma_next^2) score + sqrt(sigma^2 - sigma_next^2) z, our
    sde_step with eps_hat = -sigma score; its corrector's step 2 (snr mean||z|| / mean||score||)^2 is sample_pc's."""
    steps = 10
    ref = diffusers_sde_ve(steps)
    sig, _ = sigma_grid(VE_SDE, steps, "logsnr")
    torch.testing.assert_close(ref.discrete_sigmas.flip(0).double(), torch.tensor(sig[:-1]).double(), rtol=1e-6, atol=0)
    x = torch.randn(4, 1, 6, 6, generator=g(0)) * 3
    i = 3
    sigma, sigma_next = sig[i], sig[i + 1]
    score = ve_score(x, sigma)
    theirs = ref.step_pred(score, ref.timesteps[i], x, generator=g(1)).prev_sample
    ours = sde_step(x, -sigma * score, sigma, sigma_next, torch.randn(x.shape, generator=g(1)))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    score = ve_score(ours, sigma_next)
    theirs = ref.step_correct(score, ours, generator=g(2)).prev_sample
    z = torch.randn(x.shape, generator=g(2))
    ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean()
    torch.testing.assert_close(
        langevin_step(ours, score, 2 * (0.16 * ratio.item()) ** 2, z), theirs, rtol=1e-5, atol=1e-5
    )


def test_sample_pc_matches_a_diffusers_score_sde_ve_loop():
    """A whole run: diffusers' step_pred then step_correct at the new level (dlib's order: diffusers' own pipeline
    corrects before predicting), one generator for both noises; the last predictor's mean is Tweedie's x_0_hat."""
    steps = 12
    ref = diffusers_sde_ve(steps)
    sig, _ = sigma_grid(VE_SDE, steps, "logsnr")
    x_T = torch.randn(4, 1, 6, 6, generator=g(0)) * SIGMA_MAX
    gen, x = g(1), x_T
    for i, t in enumerate(ref.timesteps):
        out = ref.step_pred(ve_score(x, sig[i]), t, x, generator=gen)
        if i == steps - 1:
            x = out.prev_sample_mean
            break
        x = ref.step_correct(ve_score(out.prev_sample, sig[i + 1]), out.prev_sample, generator=gen).prev_sample
    ours = sample_pc(STAND_IN, x_T, steps=steps, spacing="logsnr", snr=0.16, generator=g(1))
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)
    assert (ours - x_T).abs().mean() > 1  # it did sample: from sigma 50 down to the data


# --- dlib.rectified: ODE paths, straightness, reflow pairs ---


def test_a_point_mass_has_straight_flow_paths():
    """Data at one point mu: the velocity eps - mu is constant along each path, so S = 0 (up to rounding)."""
    den = gaussian_denoiser(Flow(), "flow", MU, 1e-12)
    x_T = torch.randn(8, 3, dtype=torch.float64, generator=g(0))
    path = ode_path(den, x_T, steps=20)
    assert straightness(path).abs().max() < 1e-12
    torch.testing.assert_close(path.y[-1], torch.full_like(x_T, MU))


def test_standard_normal_data_has_curved_paths_of_closed_form_straightness():
    """Data N(0, I): the flow ODE carries z along y_t = z sqrt((1 - t)^2 + t^2) (it shrinks, then grows back to z), so the
    chord is 0 and S = mean(z^2) int_0^1 (2t - 1)^2 / ((1 - t)^2 + t^2) dt = mean(z^2) (2 - pi / 2)."""
    den = gaussian_denoiser(Flow(), "flow", 0.0, 1.0)
    x_T = torch.randn(8, 3, dtype=torch.float64, generator=g(0))
    path = ode_path(den, x_T, steps=400)
    S = straightness(path)
    torch.testing.assert_close(S, x_T.pow(2).mean(1) * (2 - math.pi / 2), rtol=0.01, atol=0)
    norms = path.y.flatten(2).norm(dim=2)  # (N + 1, B)
    assert (norms[200] < 0.75 * norms[0]).all() and (norms[-1] > 0.95 * norms[0]).all()


@pytest.mark.parametrize(("family", "prediction"), [("flow", "flow"), ("flow", "x_0"), ("vp", "eps"), ("ve", "x_0")])
def test_ode_path_shapes_end_and_euler_relation(family, prediction):
    process = PROCESSES[family]
    den = gaussian_denoiser(process, prediction, MU, S2)
    a, b = (c.item() for c in process.coefs(process.sigma_range[1]))
    x_T = torch.randn(5, 1, 2, 2, dtype=torch.float64, generator=g(0)) * math.hypot(a * S2**0.5, b)
    steps = 12
    path = ode_path(den, x_T, steps=steps)
    assert isinstance(path, FlowPath)
    assert (
        path.t.shape == (steps + 1,) and path.y.shape == (steps + 1, 5, 1, 2, 2) and path.v.shape == (steps, 5, 1, 2, 2)
    )
    sigma_max = process.sigma_range[1]
    assert path.t[0].item() == pytest.approx(sigma_max / (1 + sigma_max) if math.isfinite(sigma_max) else 1.0)
    assert path.t[-1] == 0 and (path.t[1:] < path.t[:-1]).all()
    torch.testing.assert_close(path.y[0], x_T / (a + b))
    assert torch.equal(path.y[-1], sample_euler(den, x_T, steps=steps))
    dt = (path.t[:-1] - path.t[1:]).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(path.y[1:], path.y[:-1] - dt * path.v, rtol=1e-9, atol=1e-9)  # Euler in t on y


def test_vp_and_flow_paths_of_the_same_data_end_at_its_ode_endpoint():
    x_T = torch.randn(16, 2, dtype=torch.float64, generator=g(0))
    flow = ode_path(gaussian_denoiser(Flow(), "flow", MU, S2), x_T, steps=200)
    vp = ode_path(gaussian_denoiser(VP(LINEAR), "eps", MU, S2), x_T, steps=200)
    torch.testing.assert_close(flow.y[-1], gaussian_ode_endpoint(Flow(), x_T, MU, S2), rtol=0, atol=0.03)
    torch.testing.assert_close(vp.y[-1], gaussian_ode_endpoint(VP(LINEAR), x_T, MU, S2), rtol=0, atol=0.05)
    torch.testing.assert_close(vp.y[-1], flow.y[-1], rtol=0, atol=0.05)
    # the two are one ODE: equally (not) straight, S = chord-free variance of the velocity
    torch.testing.assert_close(straightness(vp), straightness(flow), rtol=0.1, atol=0.01)


def test_reflow_pairs_are_the_samplers_outputs_deterministic_and_batch_free():
    den = gaussian_denoiser(Flow(), "flow", MU, S2)
    pairs = reflow_pairs(den, (1, 3, 3), 7, steps=4, batch=3, seed=5)
    assert pairs["x_0"].shape == pairs["noise"].shape == (7, 1, 3, 3)
    assert pairs["x_0"].dtype == pairs["noise"].dtype == torch.float32
    torch.testing.assert_close(pairs["noise"], torch.randn((7, 1, 3, 3), generator=g(5)), rtol=0, atol=0)
    assert torch.equal(pairs["x_0"], SAMPLERS["heun"](den, pairs["noise"], steps=4))
    again = reflow_pairs(den, (1, 3, 3), 7, steps=4, batch=100, seed=5)
    assert torch.equal(again["x_0"], pairs["x_0"]) and torch.equal(again["noise"], pairs["noise"])
    assert {k: pairs["card"][k] for k in ("n", "sampler", "steps", "seed")} == dict(
        n=7, sampler="heun", steps=4, seed=5
    )
    other = reflow_pairs(den, (1, 3, 3), 7, steps=4, seed=6)
    assert not torch.equal(other["noise"], pairs["noise"])
    euler = reflow_pairs(den, (1, 3, 3), 7, sampler="euler", steps=4, seed=5)
    assert torch.equal(euler["x_0"], sample_euler(den, pairs["noise"], steps=4))
    adaptive = reflow_pairs(den, (1, 3, 3), 3, sampler="pf_ode", steps=10, seed=5)  # steps ignored by RK45
    assert torch.equal(adaptive["x_0"], sample_pf_ode(den, adaptive["noise"]).float())
    many = reflow_pairs(den, (1, 3, 3), 7, steps=50, seed=5)  # the pairs approach the ODE's map of the noise
    torch.testing.assert_close(
        many["x_0"].double(), gaussian_ode_endpoint(Flow(), many["noise"], MU, S2), rtol=0, atol=1e-3
    )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(sampler="ddpm"), "reflow needs a deterministic ODE sampler"),
        (dict(sampler="sde"), "reflow needs a deterministic ODE sampler"),
        (dict(sampler="pc"), "reflow needs a deterministic ODE sampler"),
        (dict(n=0), "n and batch must be positive"),
        (dict(batch=0), "n and batch must be positive"),
    ],
)
def test_reflow_pairs_bad_input_gets_a_clear_error(kw, message):
    den = gaussian_denoiser(Flow(), "flow", MU, S2)
    with pytest.raises(ValueError, match=message):
        reflow_pairs(den, (2,), **{"n": 4, **kw})


# --- training: a reflow run on its pairs ---


def test_reflow_config_and_pairs_must_go_together(tmp_path):
    with pytest.raises(ValueError, match="reflow_of needs prediction 'flow'"):
        TrainConfig(reflow_of="mnist-flow-unet", prediction="eps")
    with pytest.raises(ValueError, match="reflow_n >= 1"):
        TrainConfig(reflow_of="mnist-flow-unet", prediction="flow", reflow_n=0)
    with pytest.raises(ValueError, match="no edit"):
        TrainConfig(reflow_of="mnist-flow-unet", prediction="flow", edit="inpaint", base_of="mnist-unet")
    reflow = dataclasses.replace(RECIPES["reflow-tiny"], out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="trains on pairs, and only it"):
        train(reflow, progress=False)
    fake = dict(x_0=torch.zeros(4, 1, 28, 28), noise=torch.zeros(4, 1, 28, 28), card={})
    with pytest.raises(ValueError, match="trains on pairs, and only it"):
        train(dataclasses.replace(RECIPES["mnist-flow-tiny"], out_dir=str(tmp_path)), pairs=fake, progress=False)
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    """The tiny flow-matching model reflow starts from (trained once for the tests below)."""
    out = tmp_path_factory.mktemp("flow")
    train(dataclasses.replace(RECIPES["mnist-flow-tiny"], out_dir=str(out)), progress=False)
    return out / "mnist-flow-tiny"


def reflow_cfg(flow_run, out_dir, **kw) -> TrainConfig:
    return dataclasses.replace(
        RECIPES["reflow-tiny"],
        reflow_of=str(flow_run),
        out_dir=str(out_dir),
        unet=RECIPES["mnist-flow-tiny"].unet,
        **kw,
    )


def test_reflow_pairs_are_cached_checked_and_made_again_identically(flow_run, tmp_path, monkeypatch):
    cfg = reflow_cfg(flow_run, tmp_path)
    pairs = cached_reflow_pairs(cfg)
    run_dir = tmp_path / "reflow-tiny"
    path, meta = run_dir / "pairs.safetensors", run_dir / "pairs.json"
    card = json.loads(meta.read_text())
    assert card["sha256"] == data.sha256(path)
    assert {k: card[k] for k in ("of", "n", "sampler", "steps", "seed")} == dict(
        of=str(flow_run), n=16, sampler="heun", steps=2, seed=0
    )
    assert pairs["x_0"].shape == pairs["noise"].shape == (16, 1, 28, 28)
    # the pairs are the flow model's Heun samples of their own noise
    flow = Denoiser(checkpoint.load_frozen(str(flow_run)), "flow", Flow())
    torch.testing.assert_close(pairs["x_0"], SAMPLERS["heun"](flow, pairs["noise"], steps=2), rtol=1e-5, atol=1e-5)
    original = path.read_bytes()

    def not_again(*args, **kwargs):
        raise AssertionError("the cached pairs were not reused")

    with monkeypatch.context() as m:  # intact and made for this run: reused, not made again
        m.setattr("dlib.rectified.reflow_pairs", not_again)
        reused = cached_reflow_pairs(cfg)
    assert torch.equal(reused["x_0"], pairs["x_0"]) and torch.equal(reused["noise"], pairs["noise"])
    raw = bytearray(original)
    raw[-7] ^= 0xFF  # flip bits in the tensor data
    path.write_bytes(bytes(raw))
    with monkeypatch.context() as m:  # the hash catches it
        m.setattr("dlib.rectified.reflow_pairs", not_again)
        with pytest.raises(AssertionError, match="not reused"):
            cached_reflow_pairs(cfg)
    remade = cached_reflow_pairs(cfg)
    assert torch.equal(remade["x_0"], pairs["x_0"]) and torch.equal(remade["noise"], pairs["noise"])
    assert path.read_bytes() == original and json.loads(meta.read_text())["sha256"] == card["sha256"]
    fewer = cached_reflow_pairs(dataclasses.replace(cfg, reflow_n=8))  # made for another run: made again
    assert len(fewer["x_0"]) == 8 and json.loads(meta.read_text())["n"] == 8


def test_reflow_training_starts_from_the_flow_model_and_resumes_exactly(flow_run, tmp_path):
    cfg = reflow_cfg(flow_run, tmp_path / "a")
    pairs = cached_reflow_pairs(cfg)
    flow = checkpoint.load_frozen(str(flow_run))
    start = train(reflow_cfg(flow_run, tmp_path / "init"), pairs=pairs, stop_after=0, progress=False)
    assert torch.equal(weights(start["model"]), weights(flow)) and torch.equal(weights(start["ema"]), weights(flow))
    whole = train(cfg, pairs=pairs, progress=False)
    assert whole["card"]["step"] == 4 and whole["card"]["reflow_pairs"] == pairs["card"]
    assert not torch.equal(weights(whole["model"]), weights(flow))  # it trained
    saved = json.loads((tmp_path / "a" / "reflow-tiny" / "card.json").read_text())
    assert saved["reflow_pairs"]["n"] == 16 and saved["config"]["reflow_of"] == str(flow_run)
    split_cfg = reflow_cfg(flow_run, tmp_path / "b")
    train(split_cfg, pairs=cached_reflow_pairs(split_cfg), stop_after=2, progress=False)
    resumed = train(split_cfg, pairs=cached_reflow_pairs(split_cfg), progress=False)  # as a restarted process would
    assert resumed["card"]["step"] == 4
    assert torch.equal(weights(whole["model"]), weights(resumed["model"]))
    assert torch.equal(weights(whole["ema"]), weights(resumed["ema"]))
    other = train(reflow_cfg(flow_run, tmp_path / "c"), pairs=dict(pairs, noise=-pairs["noise"]), progress=False)
    assert not torch.equal(weights(other["model"]), weights(whole["model"]))  # the loss saw the pairs' noise


def test_a_diverging_langevin_step_is_reported_not_returned():
    """A step size that blows the chain up raises (check_finite) instead of handing back NaN images."""
    den = EIGHT.denoiser(VE(0.01, 5.0))
    with pytest.raises(FloatingPointError, match="sample_annealed_langevin produced .* non-finite values"):
        sample_annealed_langevin(
            den, 5 * torch.randn(8, 2, generator=g(0)), steps=3, n_each=20, step_lr=50.0, generator=g(1)
        )
