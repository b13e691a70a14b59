import math

import pytest
import torch

from dlib import forward as F
from dlib import schedules as S


def test_markov_chain_matches_closed_form(gen):
    """Iterating q(x_t | x_{t-1}) t+1 times gives the moments of q(x_t | x_0)."""
    sched = S.linear(1000)
    n = 200_000
    x_0 = torch.full((n, 1), 0.7)
    for t_stop in (0, 49, 299):
        x = x_0
        for t in range(t_stop + 1):
            x = F.q_step(x, torch.full((n,), t), sched, torch.randn(x.shape, generator=gen))
        ab = sched.alpha_bar[t_stop].double()
        mean, var = 0.7 * ab.sqrt(), 1 - ab
        se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / n)
        assert abs(x.double().mean() - mean) < 5 * se_mean
        assert abs(x.double().var() - var) < 5 * se_var


def test_q_sample_is_deterministic_given_eps(gen):
    sched = S.cosine(100)
    x_0, eps = torch.randn(3, 1, 4, 4, generator=gen), torch.randn(3, 1, 4, 4, generator=gen)
    t = torch.tensor([0, 50, 99])
    x_t = F.q_sample(x_0, t, sched, eps)
    ab = sched.alpha_bar[t].view(3, 1, 1, 1)
    torch.testing.assert_close(x_t, ab.sqrt() * x_0 + (1 - ab).sqrt() * eps)


def test_q_sample_matches_diffusers_add_noise(gen):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    x_0, eps = torch.randn(4, 1, 8, 8, generator=gen), torch.randn(4, 1, 8, 8, generator=gen)
    t = torch.tensor([0, 10, 500, 999])
    torch.testing.assert_close(
        F.q_sample(x_0, t, S.linear(1000), eps), ref.add_noise(x_0, eps, t), rtol=1e-5, atol=1e-5
    )


def test_posterior_variance_is_beta_tilde():
    sched = S.linear(1000)
    t = torch.arange(1000)
    _, var = F.q_posterior(torch.zeros(1000, 1), torch.zeros(1000, 1), t, sched)
    beta = sched.betas.double()
    ab = torch.cumprod(1 - beta, 0)
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    beta_tilde = (1 - ab_prev) / (1 - ab) * beta
    torch.testing.assert_close(var.squeeze(1).double(), beta_tilde, rtol=1e-6, atol=0.0)
    assert var[0] == 0


def test_posterior_matches_gaussian_conditioning():
    """For x_0 fixed, (x_{t-1}, x_t) are jointly Gaussian: condition directly and compare.

    The reference is computed in float64 from the stored betas, so this also checks that
    q_posterior keeps full precision where 1 - alpha_bar is tiny (t = 1, 2).
    """
    sched = S.linear(1000)
    betas = sched.betas.double()
    alpha_bar = torch.cumprod(1 - betas, 0)
    for t in (1, 2, 10, 500, 999):
        ab, ab_prev, alpha = alpha_bar[t], alpha_bar[t - 1], 1 - betas[t]
        # x_{t-1} ~ N(sqrt(ab_prev) x_0, 1 - ab_prev); x_t = sqrt(alpha) x_{t-1} + sqrt(1-alpha) e
        cov = alpha.sqrt() * (1 - ab_prev)
        mean = ab_prev.sqrt() * 0.3 + cov / (1 - ab) * (-0.8 - ab.sqrt() * 0.3)
        var = (1 - ab_prev) - cov**2 / (1 - ab)
        m, v = F.q_posterior(torch.tensor([[0.3]]), torch.tensor([[-0.8]]), torch.tensor([t]), sched)
        assert math.isclose(m.item(), mean.item(), rel_tol=1e-6), t  # float32 results: ~1e-7 relative
        assert math.isclose(v.item(), var.item(), rel_tol=1e-6), t


def test_posterior_at_t0_returns_x0_exactly():
    x_0, x_t = torch.tensor([[0.25]]), torch.tensor([[0.7]])
    m, v = F.q_posterior(x_0, x_t, torch.tensor([0]), S.linear(1000))
    assert m.item() == 0.25 and v.item() == 0


def test_parameterisations_round_trip(gen):
    x_0, eps = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    ab = torch.rand(5, 1, generator=gen) * 0.98 + 0.01
    x_t = ab.sqrt() * x_0 + (1 - ab).sqrt() * eps
    v = F.v_from_x0_eps(x_0, eps, ab)
    torch.testing.assert_close(F.x0_from_eps(x_t, eps, ab), x_0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(F.eps_from_x0(x_t, x_0, ab), eps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(F.x0_from_v(x_t, v, ab), x_0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(F.eps_from_v(x_t, v, ab), eps, rtol=1e-5, atol=1e-5)


def test_normal_kl_closed_form():
    assert F.normal_kl(torch.tensor(0.0), 1.0, torch.tensor(0.0), 1.0) == 0
    # KL(N(1, 2) || N(0, 1)) = 0.5 * (2 + 1 - 1 - log 2)
    assert math.isclose(
        F.normal_kl(torch.tensor(1.0), 2.0, torch.tensor(0.0), 1.0).item(), 0.5 * (2 - math.log(2)), rel_tol=1e-6
    )


def test_discretized_likelihood_is_a_distribution():
    """The probabilities of all 256 levels sum to one."""
    levels = torch.linspace(-1, 1, 256)
    for mean, var in ((0.1, 0.01), (-0.95, 0.3), (0.5, 1e-4)):
        logp = F.discretized_gaussian_log_likelihood(levels, torch.full_like(levels, mean), var)
        assert math.isclose(logp.exp().sum().item(), 1.0, rel_tol=1e-4)


def test_vlb_prior_and_oracle(gen):
    """L_T has its closed form; the oracle eps-model makes every KL term vanish."""
    sched = S.linear(50, beta_end=0.2)
    x_0 = torch.randint(0, 256, (4, 1, 2, 2), generator=gen).float() / 127.5 - 1

    class Oracle:
        """Knows x_0, so returns the exact eps for any x_t."""

        def __call__(self, x_t, t):
            ab = sched.at(sched.alpha_bar, t, x_t.ndim)
            return F.eps_from_x0(x_t, x_0, ab)

    out = F.vlb_terms(Oracle(), x_0, sched, generator=gen)
    assert out["terms"].shape == (4, 50)
    ab = sched.alpha_bar[-1].double()
    prior = 0.5 * (-torch.log(1 - ab) + (1 - ab) + ab * x_0.double() ** 2 - 1).mean((1, 2, 3)) / math.log(2)
    torch.testing.assert_close(out["prior"].double(), prior, rtol=1e-4, atol=1e-7)
    assert out["terms"][:, 1:].abs().max() < 1e-4
    zero = F.vlb_terms(lambda x, t: torch.zeros_like(x), x_0, sched, generator=gen)
    assert (zero["total"] > out["total"]).all()


def test_l_simple_targets_and_zero_model(gen):
    sched = S.linear(1000)
    x_0 = torch.randn(4096, 2, generator=gen)
    loss = F.l_simple(lambda x, t: torch.zeros_like(x), x_0, sched, generator=gen)
    assert loss.shape == (4096,)
    assert abs(loss.mean().item() - 1.0) < 5 * math.sqrt(2 / 4096 / 2) * 1.5  # E||eps||^2 per dim = 1
    t = torch.full((4,), 10)
    eps = torch.randn(4, 2, generator=gen)
    x = x_0[:4]
    for pred, target in (("eps", eps), ("x_0", x), ("v", F.v_from_x0_eps(x, eps, sched.alpha_bar[10]))):
        exact = F.l_simple(lambda x_t, t, target=target: target, x, sched, prediction=pred, t=t, eps=eps)
        assert exact.abs().max() < 1e-10


def test_bad_input_raises_clearly(gen):
    sched = S.linear(10)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"shape \(B,\) = \(2,\)"):
        F.q_sample(x, torch.tensor([1]), sched)
    with pytest.raises(ValueError, match="0 <= t <= T-1 = 9"):
        F.q_sample(x, torch.tensor([0, 10]), sched)
    with pytest.raises(ValueError, match="eps must have the shape"):
        F.q_sample(x, torch.tensor([0, 1]), sched, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="same shape"):
        F.q_posterior(x, torch.zeros(2, 4), torch.tensor([0, 1]), sched)
    with pytest.raises(ValueError, match="prediction must be one of"):
        F.l_simple(lambda x, t: x, x, sched, prediction="score")


def test_prior_term_is_negligible_for_ddpm_linear(gen):
    x_0 = torch.rand(2, 1, 2, 2, generator=gen) * 2 - 1
    out = F.vlb_terms(lambda x, t: torch.zeros_like(x), x_0, S.linear(1000), generator=gen)
    assert (out["prior"] < 1e-4).all()  # bits per dim: L_T has no trainable parameters and is ~0
