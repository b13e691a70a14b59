import dataclasses
import math

import pytest
import torch

from dlib import schedules as S


@pytest.mark.parametrize("name", sorted(S.BUILDERS))
def test_schedule_invariants(name):
    s = S.get_schedule(name, 1000)
    assert s.T == 1000 and s.betas.dtype == torch.float32
    assert bool(((s.betas > 0) & (s.betas <= S.MAX_BETA)).all())
    torch.testing.assert_close(s.alphas, 1 - s.betas)
    torch.testing.assert_close(s.alpha_bar, torch.cumprod(s.alphas.double(), 0).float())
    assert bool((s.alpha_bar[1:] < s.alpha_bar[:-1]).all()), "alpha_bar must decrease"
    # SNR from float64: alpha_bar / (1 - alpha_bar) in float32 keeps only ~4 digits near t = 0
    ab = torch.cumprod(1 - s.betas.double(), 0)
    torch.testing.assert_close(s.snr.double(), ab / (1 - ab), rtol=1e-6, atol=0.0)
    torch.testing.assert_close(s.log_snr.double(), torch.log(ab / (1 - ab)), rtol=1e-6, atol=1e-6)
    assert s.alpha_bar_prev[0] == 1 and torch.equal(s.alpha_bar_prev[1:], s.alpha_bar[:-1])


def test_linear_endpoints():
    s = S.linear(1000)
    assert math.isclose(s.betas[0].item(), 1e-4, rel_tol=1e-6) and math.isclose(s.betas[-1].item(), 0.02, rel_tol=1e-6)


def test_cosine_matches_its_formula():
    T, s_off = 1000, 0.008
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s_off) / (1 + s_off) * math.pi / 2) ** 2
    alpha_bar = f[1:] / f[0]
    sched = S.cosine(T)
    clipped = (1 - f[1:] / f[:-1]) > S.MAX_BETA  # only the very last step is clipped
    assert clipped.sum() == 1 and clipped[-1]
    torch.testing.assert_close(sched.alpha_bar[:-1].double(), alpha_bar[:-1], rtol=1e-5, atol=1e-7)


def test_sigmoid_alpha_bar_runs_from_one_to_zero():
    s = S.sigmoid(1000)
    assert s.alpha_bar[0] > 0.999 and s.alpha_bar[-1] < 1e-5


def test_zero_terminal_snr():
    base = S.scaled_linear(1000)
    z = S.rescale_zero_terminal_snr(base)
    assert z.alpha_bar[-1] == 0 and z.betas[-1] == 1
    torch.testing.assert_close(z.alpha_bar[0], base.alpha_bar[0])
    assert math.isinf(z.log_snr[-1].item()) and z.log_snr[-1] < 0


@pytest.mark.parametrize(
    "ours,theirs,kw",
    [
        ("linear", "linear", {}),
        ("scaled_linear", "scaled_linear", dict(beta_start=0.00085, beta_end=0.012)),
        ("cosine", "squaredcos_cap_v2", {}),
    ],
)
@pytest.mark.parametrize("zero_snr", [False, True])
def test_parity_with_diffusers(ours, theirs, kw, zero_snr):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs, rescale_betas_zero_snr=zero_snr, **kw)
    s = S.get_schedule(ours, 1000, zero_terminal_snr=zero_snr, **kw)
    # diffusers builds in float32, we in float64: agreement to float32 precision
    torch.testing.assert_close(s.betas, ref.betas, rtol=1e-5, atol=3e-6)
    torch.testing.assert_close(s.alpha_bar, ref.alphas_cumprod, rtol=1e-5, atol=1e-6)


def test_bad_input_raises_clearly():
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        S.get_schedule("cosin")
    with pytest.raises(ValueError, match="positive integer"):
        S.linear(0)
    with pytest.raises(ValueError, match=r"betas must lie in \(0, 1\]"):
        S.from_betas(torch.tensor([0.1, 1.5]))
    s = S.linear(10)
    with pytest.raises(ValueError, match=r"0 <= t <= T-1 = 9"):
        s.at(s.betas, torch.tensor([10]), 4)
    with pytest.raises(TypeError, match="integer time indices"):
        s.at(s.betas, torch.tensor([1.0]), 4)


def test_schedule_is_frozen():
    s = S.linear(10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.betas = torch.zeros(10)
