import math

import pytest
import torch

from dlib import forward as F
from dlib import samplers
from dlib import schedules as S


def gaussian_eps_model(sched, mu, s2):
    """The exact eps-model for data N(mu, s2 I): E[eps | x_t] in closed form."""

    def eps_model(x_t, t):
        ab = sched.at(sched.alpha_bar, t, x_t.ndim).double()
        var_t = ab * s2 + (1 - ab)
        return ((1 - ab).sqrt() * (x_t.double() - ab.sqrt() * mu) / var_t).to(x_t.dtype)

    return eps_model


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_recovers_gaussian_data_moments(gen, variance):
    """With the exact eps-model for N(mu, s2), 1000 ancestral steps give back the data's moments."""
    sched = S.linear(1000)
    mu, s2, n = 0.5, 0.25, 20_000
    model = gaussian_eps_model(sched, mu, s2)
    x = samplers.sample_ddpm(model, torch.randn(n, 1, generator=gen), sched, variance=variance, generator=gen)
    assert abs(x.mean().item() - mu) < 5 * math.sqrt(s2 / n)
    # 5 standard errors, plus 3% for the discretisation of the reverse process into 1000 Gaussian steps
    assert abs(x.var().item() - s2) < 5 * s2 * math.sqrt(2 / n) + 0.03 * s2


def test_respaced_ddpm_variance_choice_brackets(gen):
    """With 100 respaced steps, beta_tilde under-disperses and beta over-disperses (Nichol & Dhariwal 2021)."""
    sched = S.linear(1000)
    model = gaussian_eps_model(sched, 0.5, 0.25)
    x_T = torch.randn(20_000, 1, generator=gen)
    small = samplers.sample_ddpm(model, x_T, sched, 100, variance="fixed_small", generator=gen).var().item()
    large = samplers.sample_ddpm(model, x_T, sched, 100, variance="fixed_large", generator=gen).var().item()
    assert small < 0.25 < large


def test_ddpm_step_matches_diffusers(gen):
    diffusers = pytest.importorskip("diffusers")
    sched = S.linear(1000)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    ref.set_timesteps(1000)
    x, eps_hat = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    for t in (999, 500, 3, 0):
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))  # what diffusers will draw
        prev = sched.alpha_bar[t - 1].item() if t else 1.0
        ours, _ = samplers.ddpm_step(x, eps_hat, sched.alpha_bar[t].item(), prev, noise if t else None)
        theirs = ref.step(eps_hat, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_ddpm_step_x0_hat_inverts_q_sample(gen):
    sched = S.cosine(1000)
    x_0, eps = torch.randn(3, 2, generator=gen), torch.randn(3, 2, generator=gen)
    t = torch.tensor([400] * 3)
    x_t = F.q_sample(x_0, t, sched, eps)
    _, x_0_hat = samplers.ddpm_step(x_t, eps, sched.alpha_bar[400].item(), sched.alpha_bar[399].item(), None)
    torch.testing.assert_close(x_0_hat, x_0, rtol=1e-4, atol=1e-4)


def test_timesteps_spacings():
    assert samplers.timesteps(1000, 10, "leading").tolist() == list(range(900, -1, -100))
    assert samplers.timesteps(1000, 10, "trailing").tolist() == list(range(999, 98, -100))
    assert samplers.timesteps(1000, 1000).tolist() == list(range(999, -1, -1))
    assert samplers.timesteps(1000, 5, "quadratic").tolist()[0] == 800
    with pytest.raises(ValueError, match="1 <= steps <= T"):
        samplers.timesteps(10, 11)
    with pytest.raises(ValueError, match="unknown spacing"):
        samplers.timesteps(10, 5, "cosine")


def test_callback_sees_every_step(gen):
    sched = S.linear(50)
    seen = []
    samplers.sample_ddpm(
        lambda x, t: torch.zeros_like(x),
        torch.randn(2, 2, generator=gen),
        sched,
        10,
        generator=gen,
        callback=seen.append,
    )
    assert [d["i"] for d in seen] == list(range(10)) and set(seen[0]) == {"i", "t", "x", "x_0_hat"}


def test_zero_terminal_snr_eps_model_gets_a_clear_error(gen):
    sched = S.get_schedule("cosine", 100, zero_terminal_snr=True)
    with pytest.raises(ValueError, match="zero terminal SNR"):
        samplers.sample_ddpm(lambda x, t: torch.zeros_like(x), torch.randn(2, 2, generator=gen), sched, generator=gen)
