"""Consistency models and progressive distillation (notebook 12, ``dlib.distill``): the consistency function's boundary
condition and its large-sigma limit, the distances, iCT's level schedule, the teacher's ODE step, the consistency and
progressive-distillation losses against hand computations with the same draws, gradients that reach only the student,
the conversion of a teacher of another parameterisation, multistep consistency sampling, the config fields and the
tiny distillation recipes (the student starts from its teacher, exact resume, a sampled consistency model).

Ground truth comes from closed forms: Gaussian data N(MU, S2 I), whose exact denoiser (``gaussian_denoiser``) and
probability-flow ODE (z = (x_bar - MU) / sqrt(S2 + sigma^2) is constant along a path) are formulas, a teacher whose
data are one point (DDIM is then exact in one step), and the papers' formulas (Song et al. 2023; Song & Dhariwal 2023;
Salimans & Ho 2022). No trained network is used except the seconds-scale tiny recipes and their shipped teacher.
"""

import dataclasses
import math

import pytest
import torch

from dlib import checkpoint
from dlib.config import TrainConfig, build_denoiser, build_model, card_denoiser, config_from_dict, config_to_dict
from dlib.denoiser import VE, VP, Denoiser, Flow, Prediction, euler_step
from dlib.distill import (
    SIGMA_MAX,
    SIGMA_MIN,
    ConsistencyLoss,
    ConsistencyModel,
    ProgressiveDistillationLoss,
    consistency_coefs,
    ddim_to,
    distance,
    distill_loss,
    ict_levels,
    pd_target,
    teacher_step,
)
from dlib.gaussian import gaussian_denoiser, gaussian_posterior
from dlib.nets import MLPDenoiser, UNet, UNetConfig
from dlib.recipes import RECIPES
from dlib.samplers import sample_consistency, sigma_grid
from dlib.schedules import get_schedule, karras_sigmas
from dlib.train import train
from dlib.utils import CountCalls

MU, S2 = 0.5, 0.25  # Gaussian data N(MU, S2 I), as in test_denoiser.py
LINEAR = get_schedule("linear", 1000)


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def weights(module):
    return torch.cat([p.detach().flatten() for p in module.state_dict().values() if p.is_floating_point()])


def mlp(seed: int, dim: int = 2) -> MLPDenoiser:
    torch.manual_seed(seed)
    return MLPDenoiser(dim=dim, hidden=32, layers=2)


def flow_cm(net) -> ConsistencyModel:
    """A random-weight (or any) network read as a flow velocity, wrapped as a consistency model."""
    return ConsistencyModel(Denoiser(net, "flow", Flow()))


def exact_flow(x_bar: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """The exact probability-flow ODE of N(MU, S2 I) data from sigma to sigma_next, in float64."""
    s, s_next = (
        torch.as_tensor(c, dtype=torch.float64).reshape(-1, *[1] * (x_bar.ndim - 1)) for c in (sigma, sigma_next)
    )
    return MU + (x_bar.double() - MU) * ((S2 + s_next**2) / (S2 + s**2)).sqrt()


# --- ConsistencyModel: the boundary condition and the large-sigma limit ---


def test_consistency_coefs_are_exactly_one_and_zero_at_sigma_min():
    """c_skip(sigma_min) = 1 and c_out(sigma_min) = 0 exactly; away from it c_skip < 1 and c_out > 0."""
    c_skip, c_out = consistency_coefs(torch.tensor(SIGMA_MIN, dtype=torch.float64))
    assert c_skip.item() == 1.0 and c_out.item() == 0.0
    c_skip, c_out = consistency_coefs(torch.tensor([0.01, 1.0, SIGMA_MAX], dtype=torch.float64))
    assert (c_skip < 1).all() and (c_out > 0).all()
    assert c_skip[-1] < 1e-4 and c_out[-1] == pytest.approx(0.5, rel=1e-3)  # f -> the network's output at large sigma


def _inners():
    torch.manual_seed(0)
    unet = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=()))
    return {
        "mlp-flow": (Denoiser(mlp(0), "flow", Flow()), (6, 2)),
        "mlp-eps-vp": (Denoiser(mlp(1), "eps", VP(LINEAR)), (6, 2)),
        "unet-eps-vp": (Denoiser(unet, "eps", VP(LINEAR)), (6, 1, 8, 8)),
    }


@pytest.mark.parametrize("name", ["mlp-flow", "mlp-eps-vp", "unet-eps-vp"])
def test_consistency_model_is_the_identity_at_sigma_min_bit_for_bit(name):
    """f(x, sigma_min) = x exactly for a random network, for a float sigma and for the sigma_min rows of a (B,) sigma."""
    inner, shape = _inners()[name]
    cm = ConsistencyModel(inner)
    x = 3 * torch.randn(shape, generator=g(1))
    with torch.no_grad():
        assert torch.equal(cm(x, SIGMA_MIN).x_0, x)
        sigma = torch.tensor([SIGMA_MIN, 1.0, SIGMA_MIN, SIGMA_MAX, 0.05, SIGMA_MIN], dtype=torch.float64)
        f = cm(x, sigma).x_0
    at_min = sigma == SIGMA_MIN
    assert torch.equal(f[at_min], x[at_min])
    assert (f[~at_min] - x[~at_min]).flatten(1).abs().amax(1).min() > 1e-5  # elsewhere the network acts


def test_consistency_model_approaches_the_inner_denoiser_at_large_sigma():
    """With the exact Gaussian denoiser D inside, |f - D| shrinks as sigma grows (f -> D), and eps = (x - f) / sigma."""
    for inner in (gaussian_denoiser(Flow(), "flow", MU, S2), gaussian_denoiser(VP(LINEAR), "eps", MU, S2)):
        cm = ConsistencyModel(inner)
        z = torch.randn(500, 2, generator=g(2), dtype=torch.float64)
        gaps = []
        for sigma in (1.0, 5.0, 20.0, SIGMA_MAX):
            x_bar = MU + math.sqrt(S2 + sigma**2) * z
            pred = cm(x_bar, sigma)
            a = inner.process.coefs(sigma)[0].item()
            gaps.append((pred.x_0 - inner(a * x_bar, sigma).x_0).abs().max().item())
            torch.testing.assert_close(pred.eps, (x_bar - pred.x_0) / sigma, rtol=0, atol=0)
        assert all(b < 0.5 * a for a, b in zip(gaps, gaps[1:], strict=False)), gaps
        assert gaps[-1] < 1e-4


def test_consistency_model_rejects_bad_sigma_and_bad_arguments():
    """sigma outside [sigma_min, sigma_max] raises ValueError naming the range; a non-Denoiser inner raises TypeError."""
    cm = flow_cm(mlp(0))
    x = torch.randn(3, 2, generator=g(0))
    for sigma in (0.001, 81.0, torch.tensor([1.0, 100.0, 1.0], dtype=torch.float64), 0.0):
        with pytest.raises(ValueError, match=r"\[0\.002, 80\.0\]"):
            cm(x, sigma)
    with pytest.raises(TypeError, match="Denoiser"):
        ConsistencyModel(mlp(0))
    for lo, hi in ((1.0, 1.0), (2.0, 1.0), (0.0, 80.0), (0.002, math.inf)):
        with pytest.raises(ValueError, match="sigma_min < sigma_max"):
            ConsistencyModel(Denoiser(mlp(0), "flow", Flow()), lo, hi)


# --- distance and iCT's levels ---


def test_distance_l2_and_pseudo_huber():
    """l2 is the per-example mean squared difference; pseudo-huber sqrt(||d||^2 + c^2) - c with c = 0.00054 sqrt(dim)."""
    x = torch.randn(5, 1, 4, 4, generator=g(0), dtype=torch.float64)
    y = torch.randn(5, 1, 4, 4, generator=g(1), dtype=torch.float64)
    torch.testing.assert_close(distance(x, y), ((x - y) ** 2).flatten(1).mean(1), rtol=1e-12, atol=0)
    c = 0.00054 * math.sqrt(16)
    sq = ((x - y) ** 2).flatten(1).sum(1)
    torch.testing.assert_close(distance(x, y, "pseudo-huber"), (sq + c**2).sqrt() - c, rtol=1e-12, atol=0)
    assert distance(x, y, "l2").shape == distance(x, y, "pseudo-huber").shape == (5,)
    with pytest.raises(ValueError, match="distance"):
        distance(x, y, "l1")


def test_pseudo_huber_is_quadratic_near_zero_and_linear_far_away():
    """~||d||^2 / (2 c) for tiny d, ~||d|| - c for large d (Song & Dhariwal 2023, Section 3.3)."""
    c = 0.00054 * math.sqrt(16)
    y = torch.zeros(3, 16, dtype=torch.float64)
    tiny = 1e-6 * torch.randn(3, 16, generator=g(0), dtype=torch.float64)
    torch.testing.assert_close(distance(tiny, y, "pseudo-huber"), tiny.pow(2).sum(1) / (2 * c), rtol=1e-4, atol=0)
    large = 10 * torch.randn(3, 16, generator=g(1), dtype=torch.float64)
    torch.testing.assert_close(distance(large, y, "pseudo-huber"), large.norm(dim=1) - c, rtol=1e-6, atol=0)


def test_ict_levels_follow_song_and_dhariwal_eq_8():
    """N(k) = min(s0 2^floor(k / K'), s1) + 1 with K' = floor(K / (log2 floor(s1 / s0) + 1)): starts at s0 + 1, doubles,
    is capped at s1 + 1, and reaches the cap by the end of training."""
    for s0, s1, total in ((10, 1280, 100), (10, 1280, 40_000), (2, 8, 4), (10, 30, 50), (5, 160, 1000), (10, 25, 100)):
        k_prime = math.floor(total / (math.log2(s1 // s0) + 1))
        seq = [ict_levels(k, total, s0, s1) for k in range(total)]
        assert seq == [min(s0 * 2 ** (k // k_prime), s1) + 1 for k in range(total)]
        assert seq[0] == s0 + 1 and max(seq) == seq[-1]
        for a, b in zip(seq, seq[1:], strict=False):
            assert b == a or b - 1 == 2 * (a - 1) or b == s1 + 1
        # the paper's floor(s1 / s0) (the docstring writes s1 / s0): with s1 / s0 = 2.5 it doubles once only, 10 -> 20
        assert seq[-1] == (21 if (s0, s1) == (10, 25) else s1 + 1)
    assert ict_levels(99_999, 800_000) == 11 and ict_levels(100_000, 800_000) == 21  # K' = 800k / 8


# --- the teacher's ODE step ---


def test_teacher_euler_step_is_euler_on_the_teachers_eps():
    """ "euler" is euler_step(x_bar, eps_hat, sigma, sigma_next) with eps_hat the teacher's at (a x_bar, sigma)."""
    teacher = gaussian_denoiser(VP(LINEAR), "eps", MU, S2)
    x_bar = MU + 3 * torch.randn(4, 2, generator=g(0), dtype=torch.float64)
    sigma = torch.tensor([3.0, 1.0, 0.5, 10.0], dtype=torch.float64)
    sigma_next = torch.tensor([2.0, 0.7, 0.1, 5.0], dtype=torch.float64)
    a = teacher.process.coefs(sigma)[0][:, None]
    eps_hat = teacher(a * x_bar, sigma).eps
    expected = euler_step(x_bar, eps_hat, sigma[:, None], sigma_next[:, None])
    torch.testing.assert_close(teacher_step(teacher, x_bar, sigma, sigma_next, "euler"), expected, rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="solver"):
        teacher_step(teacher, x_bar, sigma, sigma_next, "rk4")


def test_teacher_heun_step_is_second_order_on_the_exact_gaussian_flow():
    """Against the exact ODE of Gaussian data, Heun beats Euler, and halving the step cuts Heun's error ~8x, Euler's ~4x."""
    for teacher in (gaussian_denoiser(Flow(), "flow", MU, S2), gaussian_denoiser(VP(LINEAR), "eps", MU, S2)):
        x_bar = MU + math.sqrt(S2 + 4) * torch.randn(64, 2, generator=g(0), dtype=torch.float64)
        sigma = torch.full((64,), 2.0, dtype=torch.float64)
        errors = {"euler": [], "heun": []}
        for h in (0.2, 0.1, 0.05):
            exact = exact_flow(x_bar, sigma, sigma - h)
            for solver in errors:
                step = teacher_step(teacher, x_bar, sigma, sigma - h, solver)
                errors[solver].append((step - exact).abs().max().item())
        assert all(h < 0.2 * e for h, e in zip(errors["heun"], errors["euler"], strict=True)), errors
        for solver, order, (lo, hi) in (("euler", 2, (3.5, 4.6)), ("heun", 3, (7.0, 10.0))):
            ratios = [a / b for a, b in zip(errors[solver], errors[solver][1:], strict=False)]
            assert all(lo < r < hi for r in ratios), (solver, order, ratios)


# --- the consistency losses against hand computations ---


def _hand_consistency_loss(student_net, target_net, x_0, seed, n_levels, *, teacher_solver=None, dist="l2", ict=False):
    """The CM loss written out: the same draws (n, then z, as Shard.randint / Shard.randn make them), the levels of a
    Karras grid, x_hi / x_lo (the exact Gaussian teacher's eps, in closed form, for CD), the distance and the weight."""
    gen = g(seed)
    n = torch.randint(0, n_levels - 1, (len(x_0),), generator=gen)
    z = torch.randn(x_0.shape, generator=gen).to(x_0.dtype)
    grid = karras_sigmas(SIGMA_MIN, SIGMA_MAX, n_levels)
    s_hi, s_lo = grid[n], grid[n + 1]
    col_hi, col_lo = s_hi[:, None], s_lo[:, None]
    x_hi = x_0 + col_hi.to(x_0) * z
    if teacher_solver is None:
        x_lo = x_0 + col_lo.to(x_0) * z
    else:

        def eps(x, s):  # E[eps | x_bar] of N(MU, S2): the teacher's eps in the scaled state, whatever its process
            return gaussian_posterior(x.double(), 1.0, s, MU, S2).eps

        e1 = eps(x_hi, col_hi)
        x_euler = x_hi.double() + (col_lo - col_hi) * e1
        slope = e1 if teacher_solver == "euler" else (e1 + eps(x_euler, col_lo)) / 2
        x_lo = (x_hi.double() + (col_lo - col_hi) * slope).to(x_0)
    f_student = flow_cm(student_net)(x_hi, s_hi).x_0
    f_target = flow_cm(target_net)(x_lo, s_lo).x_0
    sq = (f_student - f_target).flatten(1).pow(2)
    if dist == "l2":
        d = sq.mean(1)
    else:
        c = 0.00054 * math.sqrt(sq.shape[1])
        d = (sq.sum(1) + c**2).sqrt() - c
    w = 1 / (s_hi - s_lo) if ict else torch.ones_like(s_hi)
    return (w.to(d) * d).mean(), n


@pytest.mark.parametrize(
    ("teacher_solver", "dist", "ict"),
    [(None, "l2", False), (None, "pseudo-huber", True), ("euler", "l2", False), ("heun", "pseudo-huber", True)],
)
def test_consistency_loss_is_the_hand_computation_with_the_same_draws(teacher_solver, dist, ict):
    """CT (the same z at both levels) and CD (the teacher's Euler or Heun step), l2 or pseudo-huber, uniform or ict
    weighting 1 / (sigma_n - sigma_{n+1}): the student at (x_hi, sigma_n), the target network at (x_lo, sigma_{n+1})."""
    student_net, target_net = mlp(0), mlp(1)  # different weights: which network sits where is visible
    x_0 = MU + S2**0.5 * torch.randn(64, 2, generator=g(5))
    # Euler calls the teacher at sigma_n only; Heun also at sigma_{n+1}, which may be sigma_min = 0.002, below a VP
    # teacher's range (its time clamps to t = 0, sigma ~ 0.01): there the Gaussian teacher is written as a flow model
    teacher = {
        None: None,
        "euler": gaussian_denoiser(VP(LINEAR), "eps", MU, S2),
        "heun": gaussian_denoiser(Flow(), "flow", MU, S2),
    }[teacher_solver]
    loss_fn = ConsistencyLoss(
        flow_cm,
        lambda: flow_cm(target_net),
        lambda step: 12,
        teacher=teacher,
        solver=teacher_solver or "heun",
        distance=dist,
        weighting="ict" if ict else "uniform",
    )
    loss = loss_fn(student_net, x_0, g(7))
    expected, n = _hand_consistency_loss(
        student_net, target_net, x_0, 7, 12, teacher_solver=teacher_solver, dist=dist, ict=ict
    )
    assert loss.ndim == 0 and len(set(n.tolist())) > 5  # many levels drawn
    torch.testing.assert_close(loss, expected, rtol=2e-4, atol=1e-7)


def test_consistency_loss_reads_its_levels_at_the_step():
    """``levels(step)`` sets N at each step: CT with ict_levels uses the grid of that step's N."""
    student_net, target_net = mlp(0), mlp(1)
    x_0 = MU + S2**0.5 * torch.randn(32, 2, generator=g(5))
    loss_fn = ConsistencyLoss(flow_cm, lambda: flow_cm(target_net), lambda step: ict_levels(step, 40, 2, 16))
    for step, n_levels in ((0, 3), (39, 17)):
        expected, _ = _hand_consistency_loss(student_net, target_net, x_0, 3, n_levels)
        torch.testing.assert_close(loss_fn(student_net, x_0, g(3), step=step), expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="weighting"):
        ConsistencyLoss(flow_cm, lambda: flow_cm(target_net), lambda step: 3, weighting="edm")


def test_ct_shares_its_noise_between_the_two_levels():
    """The guide's bug: with the exact Gaussian denoiser inside, CT with the same z at both levels is a small loss, while
    independent noise at the two levels (computed by hand) is a much larger one that no network can remove."""
    exact = gaussian_denoiser(Flow(), "flow", MU, S2)

    def cm(_=None):
        return ConsistencyModel(exact)

    n_levels = 40
    x_0 = MU + S2**0.5 * torch.randn(2000, 2, generator=g(0), dtype=torch.float64)
    shared = ConsistencyLoss(cm, cm, lambda step: n_levels)(None, x_0, g(1)).item()
    gen = g(1)
    n = torch.randint(0, n_levels - 1, (len(x_0),), generator=gen)
    z_hi = torch.randn(x_0.shape, generator=gen).double()
    z_lo = torch.randn(x_0.shape, generator=gen).double()  # the bug: a second, independent draw
    grid = karras_sigmas(SIGMA_MIN, SIGMA_MAX, n_levels)
    s_hi, s_lo = grid[n], grid[n + 1]
    f_hi = cm()(x_0 + s_hi[:, None] * z_hi, s_hi).x_0
    f_lo = cm()(x_0 + s_lo[:, None] * z_lo, s_lo).x_0
    independent = distance(f_hi, f_lo).mean().item()
    assert shared < 0.01 and independent > 10 * shared, (shared, independent)


def test_gradients_reach_only_the_student():
    """After backward, the student's parameters have gradients; the target network's and the teacher's have none."""
    student_net, target_net, teacher_net = mlp(0), mlp(1), mlp(2)  # all requires_grad: only no_grad protects them
    teacher = Denoiser(teacher_net, "flow", Flow())
    x_0 = torch.randn(16, 2, generator=g(0))
    cd = ConsistencyLoss(flow_cm, lambda: flow_cm(target_net), lambda step: 10, teacher=teacher)
    pd = ProgressiveDistillationLoss(lambda m: Denoiser(m, "flow", Flow()), teacher, 2)
    for loss_fn in (cd, pd):
        for net in (student_net, target_net, teacher_net):
            net.zero_grad(set_to_none=True)
        loss_fn(student_net, x_0, g(1)).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student_net.parameters())
        assert all(p.grad is None for p in (*target_net.parameters(), *teacher_net.parameters()))


# --- progressive distillation ---


def test_pd_target_makes_one_ddim_step_land_on_the_teachers_two():
    """For random coefficients and states, DDIM from x with x_0 = pd_target and eps = (x - a x_0) / b lands on x_two;
    at the last step (a'' = 1, b'' = 0) the target is x_two itself."""
    gen = g(0)
    x, x_two = (torch.randn(8, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    a, b, a_two = (0.1 + torch.rand(8, 1, generator=gen, dtype=torch.float64) for _ in range(3))
    b_two = 0.5 * b * torch.rand(8, 1, generator=gen, dtype=torch.float64)
    x_0 = pd_target(x, x_two, a, b, a_two, b_two)
    eps = (x - a * x_0) / b
    torch.testing.assert_close(ddim_to(Prediction(x_0, eps), a_two, b_two), x_two, rtol=1e-10, atol=1e-12)
    last = pd_target(x, x_two, a, b, torch.ones_like(a), torch.zeros_like(b))
    torch.testing.assert_close(last, x_two, rtol=0, atol=1e-15)


class Constant(torch.nn.Module):
    """A network that outputs one point whatever it sees: an x_0-model of data that are that point."""

    def __init__(self, value: float):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(value, dtype=torch.float64))

    def forward(self, x, time, **_):
        return self.value.expand_as(x)


def test_progressive_distillation_is_zero_where_ddim_is_exact_in_one_step():
    """A teacher whose data are one point takes DDIM steps that one step reproduces: the loss is 0 for the same model,
    positive for a student that differs; the grid of 2N must contain the grid of N, and steps must be >= 1."""
    teacher_net = Constant(0.3)
    teacher = Denoiser(teacher_net, "x_0", Flow())

    def student(m):
        return Denoiser(m, "x_0", Flow())

    x_0 = torch.randn(64, 3, generator=g(0), dtype=torch.float64)
    for steps in (1, 2, 4):
        loss_fn = ProgressiveDistillationLoss(student, teacher, steps)
        assert loss_fn(teacher_net, x_0, g(1)).item() < 1e-12
        assert loss_fn(Constant(0.4), x_0, g(1)).item() > 0.009  # (0.1)^2 with weights >= 1
    with pytest.raises(ValueError, match="contain"):  # Karras grids of N and 2N levels do not nest
        ProgressiveDistillationLoss(student, Denoiser(teacher_net, "x_0", VE()), 4, spacing="karras")
    for steps in (0, -2, 2.0):
        with pytest.raises(ValueError, match="positive integer"):
            ProgressiveDistillationLoss(student, teacher, steps)


def test_progressive_distillation_is_the_hand_computation_with_the_same_draws():
    """Level j, eps, x = a x_0 + b eps, the teacher's two DDIM steps on the 2N grid, pd_target and max(SNR, 1)."""
    teacher = gaussian_denoiser(Flow(), "flow", MU, S2)
    student_net = mlp(0)
    x_0 = MU + S2**0.5 * torch.randn(32, 2, generator=g(2))
    loss = ProgressiveDistillationLoss(lambda m: Denoiser(m, "flow", Flow()), teacher, 3)(student_net, x_0, g(4))
    gen = g(4)
    j = torch.randint(0, 3, (32,), generator=gen)
    eps = torch.randn(x_0.shape, generator=gen)
    t = 1 - torch.arange(7, dtype=torch.float64) / 6  # the flow's 2N = 6 uniform steps in t, 1 -> 0
    sigmas = t / (1 - t)
    levels = [sigmas[2 * j + k] for k in range(3)]
    (a, b), (a1, b1), (a2, b2) = ((1 - t[2 * j + k][:, None], t[2 * j + k][:, None]) for k in range(3))
    x = (a * x_0 + b * eps).float()

    def x_0_of(x, s, a, b):  # the exact E[x_0 | x] of the Gaussian
        return gaussian_posterior(x.double(), a, b, MU, S2).x_0

    x_0_hat = x_0_of(x, levels[0], a, b)
    x_mid = a1 * x_0_hat + b1 * (x - a * x_0_hat) / b
    x_0_mid = x_0_of(x_mid, levels[1], a1, b1)
    x_two = a2 * x_0_mid + b2 * (x_mid - a1 * x_0_mid) / b1
    target = (x_two - (b2 / b) * x) / (a2 - (b2 / b) * a)
    student = Denoiser(student_net, "flow", Flow())(x, levels[0]).x_0
    w = (a / b).pow(2).clamp(min=1).flatten()
    expected = (w * (student.double() - target).pow(2).mean(1)).mean()
    assert len(set(j.tolist())) == 3
    torch.testing.assert_close(loss.double(), expected, rtol=1e-4, atol=1e-7)


# --- distill_loss: the factory, and a teacher of another parameterisation ---


def _flow_student(net):
    return Denoiser(net, "flow", Flow())


def test_distill_loss_reads_an_eps_teacher_as_the_flow_student_would():
    """A VP eps-teacher (exact Gaussian) gives the same CD loss as the same Gaussian teacher written as a flow model."""
    student_net, target_net = mlp(0), mlp(1)
    x_0 = MU + S2**0.5 * torch.randn(64, 2, generator=g(0))
    losses = []
    for teacher in (gaussian_denoiser(VP(LINEAR), "eps", MU, S2), gaussian_denoiser(Flow(), "flow", MU, S2)):
        for solver in ("euler", "heun"):
            loss_fn = distill_loss("cd", _flow_student, teacher, target_net, steps=8, total_steps=10, solver=solver)
            losses.append(loss_fn(student_net, x_0, g(1)).item())
    eps_euler, eps_heun, flow_euler, flow_heun = losses
    assert eps_euler == pytest.approx(flow_euler, rel=1e-4)
    assert eps_heun == pytest.approx(flow_heun, rel=1e-3)  # Heun's second call at sigma_min, below VP's range
    assert eps_euler != pytest.approx(eps_heun, rel=1e-3)  # the solver matters: the check above can fail


def test_distill_loss_pd_from_an_eps_teacher_fails_at_the_flows_pure_noise():
    """The flow student's PD grid starts at t = 1 (sigma = inf), where an eps-teacher says nothing: the first call raises."""
    loss_fn = distill_loss(
        "pd", _flow_student, gaussian_denoiser(VP(LINEAR), "eps", MU, S2), None, steps=4, total_steps=10
    )
    with pytest.raises(ValueError, match="zero signal"):
        loss_fn(mlp(0), torch.randn(8, 2, generator=g(0)), g(1))


def test_distill_loss_checks_its_teacher_and_target():
    """ "ct" takes no teacher, "cd" and "pd" need one, unknown kinds raise, a consistency loss needs its target."""
    teacher = gaussian_denoiser(Flow(), "flow", MU, S2)
    for kind, t in (("ct", teacher), ("cd", None), ("pd", None), ("gan", teacher)):
        with pytest.raises(ValueError, match="distill"):
            distill_loss(kind, _flow_student, t, mlp(1), steps=4, total_steps=10)
    with pytest.raises(ValueError, match="target"):
        distill_loss("cd", _flow_student, teacher, None, steps=4, total_steps=10)
    assert isinstance(distill_loss("ct", _flow_student, None, mlp(1), steps=4, total_steps=10), ConsistencyLoss)
    pd = distill_loss("pd", _flow_student, teacher, None, steps=8, total_steps=10)
    assert isinstance(pd, ProgressiveDistillationLoss) and pd.steps == 4  # the student takes half the teacher's steps


# --- multistep consistency sampling ---


def test_sample_consistency_calls_and_levels():
    """``steps`` network calls at the first ``steps`` levels of sigma_grid(process, steps + 1), or at ``sigmas``."""
    net = CountCalls(mlp(0))
    cm = ConsistencyModel(Denoiser(net, "flow", Flow()))
    x_T = SIGMA_MAX * torch.randn(5, 2, generator=g(0))
    seen = []

    def record(d):
        seen.append(d["sigma"])

    for steps in (1, 2, 4):
        net.calls = 0
        seen.clear()
        out = sample_consistency(cm, x_T, steps=steps, generator=g(1), callback=record)
        assert net.calls == steps and out.shape == x_T.shape
        assert seen == sigma_grid(cm.process, steps + 1)[0][:steps]
        assert seen[0] == pytest.approx(SIGMA_MAX) and min(seen) > SIGMA_MIN
    net.calls = 0
    seen.clear()
    sample_consistency(cm, x_T, steps=3, sigmas=[80.0, 5.0, 0.5], generator=g(1), callback=record)
    assert seen == [80.0, 5.0, 0.5] and net.calls == 3


def test_sample_consistency_rejects_bad_steps_and_sigmas():
    """Non-descending or wrong-length ``sigmas``, and steps that are not a positive integer, raise ValueError."""
    cm = flow_cm(mlp(0))
    x_T = torch.randn(2, 2, generator=g(0))
    for steps, sigmas in ((3, [80.0, 5.0]), (2, [5.0, 80.0]), (2, [5.0, 5.0]), (0, None), (-1, None), (1.0, None)):
        with pytest.raises(ValueError, match="steps|sigmas"):
            sample_consistency(cm, x_T, steps=steps, sigmas=sigmas)


def test_one_consistency_step_from_noise_lands_near_the_data_mean():
    """Around the exact Gaussian denoiser, one step from sigma_max noise gives finite samples at about MU."""
    cm = ConsistencyModel(gaussian_denoiser(Flow(), "flow", MU, S2))
    x_T = MU + math.sqrt(S2 + SIGMA_MAX**2) * torch.randn(2000, 2, generator=g(0), dtype=torch.float64)
    out = sample_consistency(cm, x_T, steps=1)
    assert out.isfinite().all() and (out.mean() - MU).abs() < 0.01 and out.std() < 0.05
    two = sample_consistency(cm, x_T, steps=2, generator=g(1))  # re-noised to a lower level: more spread
    assert two.isfinite().all() and (two.mean() - MU).abs() < 0.05 and two.std() > out.std()


# --- TrainConfig, build_denoiser ---


@pytest.mark.parametrize(
    "kw",
    [
        dict(distill="cd"),
        dict(distill="pd"),
        dict(distill="ct", teacher_of="mnist-flow-unet"),
        dict(distill="pd", teacher_of="mnist-flow-unet", teacher_steps=5),
        dict(distill="cd", teacher_of="mnist-flow-unet", teacher_steps=1),
        dict(distill="gan", teacher_of="mnist-flow-unet"),
        dict(distill="cd", teacher_of="mnist-flow-unet", kind="classifier"),
    ],
)
def test_train_config_rejects_bad_distillation(kw):
    """CD and PD need teacher_of, CT has none, PD's teacher_steps are even, only known names, on diffusion only."""
    with pytest.raises(ValueError, match="distill"):
        TrainConfig(**kw)


@pytest.mark.parametrize(
    "kw",
    [
        dict(distill="cd", teacher_of="mnist-flow-unet", cm_solver="rk4"),
        dict(distill="cd", teacher_of="mnist-flow-unet", cm_distance="l1"),
        dict(distill="ct", cm_weighting="edm"),
        dict(distill="ct", ct_levels=(16, 2)),
        dict(distill="ct", ct_levels=(0, 8)),
    ],
)
def test_train_config_rejects_bad_consistency_options(kw):
    """A bad cm_solver, cm_distance, cm_weighting or ct_levels raises at construction, like every other field."""
    # Checked at construction, not in build_loss after the data and teacher are loaded, nor at the first step
    # (ct_levels=(16, 2) would fail in ict_levels with "math domain error", (0, 8) with a ZeroDivisionError).
    with pytest.raises(ValueError):
        TrainConfig(**kw)


def test_config_round_trip_and_build_denoiser():
    """ct_levels comes back as a tuple; build_denoiser gives a ConsistencyModel for cd / ct and a plain Denoiser for pd,
    and card_denoiser reads a card's recorded config the same way."""
    for kind in ("cd", "ct", "pd"):
        cfg = RECIPES[f"{kind}-tiny"]
        back = config_from_dict(config_to_dict(cfg))
        assert back == cfg and back.ct_levels == (2, 8) and isinstance(back.ct_levels, tuple)
        net = build_model(cfg, (1, 28, 28))
        den = build_denoiser(cfg, net, LINEAR)
        from_card = card_denoiser({"config": config_to_dict(cfg)}, net, LINEAR)
        assert type(from_card) is type(den) and from_card.prediction == den.prediction
        if kind == "pd":
            assert type(den) is Denoiser and den.prediction == "flow" and isinstance(den.process, Flow)
        else:
            assert isinstance(den, ConsistencyModel) and den.net.prediction == "flow"
            assert den.process.sigma_range == (SIGMA_MIN, SIGMA_MAX)


# --- the tiny recipes: training, resume, sampling, the teacher ---


@pytest.mark.parametrize("kind", ["cd", "pd"])
def test_distillation_student_starts_from_its_teacher_and_trains(tmp_path, kind):
    """Before any step the student and its EMA (the consistency target) are the teacher's weights; the loss log is finite."""
    cfg = dataclasses.replace(RECIPES[f"{kind}-tiny"], out_dir=str(tmp_path))
    teacher = weights(checkpoint.load_pretrained("mnist-flow-unet")[0])
    start = train(cfg, stop_after=0, progress=False)
    assert torch.equal(weights(start["model"]), teacher) and torch.equal(weights(start["ema"]), teacher)
    out = train(cfg, progress=False)
    log = out["card"]["loss_log"]
    assert [s for s, _ in log] == [2, 4] and all(math.isfinite(v) and v > 0 for _, v in log)
    assert not torch.equal(weights(out["model"]), teacher)  # it trained


def test_consistency_training_resumes_exactly(tmp_path):
    """ct-tiny stopped after 2 steps and resumed ends with the EMA of an uninterrupted 4-step run."""
    straight = train(dataclasses.replace(RECIPES["ct-tiny"], out_dir=str(tmp_path / "a")), progress=False)
    cfg = dataclasses.replace(RECIPES["ct-tiny"], out_dir=str(tmp_path / "b"))
    train(cfg, stop_after=2, progress=False)
    resumed = train(cfg, progress=False)
    assert resumed["card"]["step"] == 4
    assert torch.equal(weights(resumed["ema"]), weights(straight["ema"]))
    assert torch.equal(weights(resumed["model"]), weights(straight["model"]))
    assert resumed["card"]["loss_log"] == straight["card"]["loss_log"]


def test_a_progressive_round_records_what_the_rounds_before_it_cost(tmp_path):
    """Round 2 (teacher: round 1's run folder) starts from round 1's weights and records round 1's wall time as its
    distill_chain_wall_time_s; round 1, whose teacher is not distilled, records 0."""
    first = train(dataclasses.replace(RECIPES["pd-tiny"], out_dir=str(tmp_path / "a")), progress=False)
    assert first["card"]["distill_chain_wall_time_s"] == 0.0
    run_1 = tmp_path / "a" / "pd-tiny"
    cfg = dataclasses.replace(RECIPES["pd-tiny"], out_dir=str(tmp_path / "b"), teacher_of=str(run_1), teacher_steps=2)
    start = train(cfg, stop_after=0, progress=False)
    assert torch.equal(weights(start["model"]), weights(first["ema"]))  # the student starts as its teacher (the EMA)
    assert start["card"]["distill_chain_wall_time_s"] == checkpoint.read_any_card(str(run_1))["wall_time_s"] > 0


def test_distilled_consistency_model_loads_and_samples(tmp_path):
    """load_ema + build_denoiser of a cd-tiny run is a ConsistencyModel whose 1- and 2-step samples are finite images."""
    cfg = dataclasses.replace(RECIPES["cd-tiny"], out_dir=str(tmp_path))
    train(cfg, progress=False)
    model, sched, card = checkpoint.load_ema(tmp_path / "cd-tiny")
    cm = card_denoiser(card, model, sched)
    assert isinstance(cm, ConsistencyModel) and card["image_shape"] == [1, 28, 28]
    x_T = SIGMA_MAX * torch.randn(3, 1, 28, 28, generator=g(0))
    for steps in (1, 2):
        out = sample_consistency(cm, x_T, steps=steps, generator=g(1))
        assert out.shape == (3, 1, 28, 28) and out.isfinite().all()


def test_load_denoiser_reads_a_teacher_and_refuses_a_classifier():
    """A shipped flow model loads as a frozen flow Denoiser; a classifier is not a teacher."""
    teacher = checkpoint.load_denoiser("mnist-flow-unet")
    assert type(teacher) is Denoiser and teacher.prediction == "flow" and isinstance(teacher.process, Flow)
    assert not any(p.requires_grad for p in teacher.net.parameters())
    with pytest.raises(ValueError, match="not a diffusion model"):
        checkpoint.load_denoiser("mnist-classifier")
