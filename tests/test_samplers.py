import math

import pytest
import torch

from dlib import forward as F
from dlib import samplers
from dlib import schedules as S
from dlib.gaussian import gaussian_eps_model, gaussian_ode_endpoint


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_recovers_gaussian_data_moments(gen, variance):
    """With the exact eps-model for N(mu, var_data), 1000 ancestral steps give back the data's moments."""
    sched = S.linear(1000)
    mu, var_data, n = 0.5, 0.25, 20_000
    model = gaussian_eps_model(sched, mu, var_data)
    x = samplers.sample_ddpm(model, torch.randn(n, 1, generator=gen), sched, variance=variance, generator=gen)
    assert abs(x.mean().item() - mu) < 5 * math.sqrt(var_data / n)
    # 5 standard errors, plus 3% for the discretisation of the reverse process into 1000 Gaussian steps
    assert abs(x.var().item() - var_data) < 5 * var_data * math.sqrt(2 / n) + 0.03 * var_data


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


# --- DDIM, the ODE solvers and the closed form for Gaussian data (dlib.gaussian) ---

MU, S2 = 0.5, 0.25


def test_ddim_eta_one_recovers_gaussian_data_moments(gen):
    """DDIM with eta = 1 on all T steps is DDPM (fixed_small): it samples the data distribution."""
    sched = S.linear(1000)
    n = 20_000
    x = samplers.sample_ddim(
        gaussian_eps_model(sched, MU, S2), torch.randn(n, 1, generator=gen), sched, 1000, eta=1.0, generator=gen
    )
    assert abs(x.mean().item() - MU) < 5 * math.sqrt(S2 / n)
    assert abs(x.var().item() - S2) < 5 * S2 * math.sqrt(2 / n) + 0.03 * S2


def test_ddim_eta_zero_is_deterministic_and_eta_one_is_not(gen):
    sched = S.linear(100)
    model = gaussian_eps_model(sched, MU, S2)
    x_T = torch.randn(8, 1, generator=gen)
    a = samplers.sample_ddim(model, x_T, sched, 10, generator=torch.Generator().manual_seed(1))
    b = samplers.sample_ddim(model, x_T, sched, 10, generator=torch.Generator().manual_seed(2))
    c = samplers.sample_ddim(model, x_T, sched, 10, eta=1.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)


ODE_SOLVERS = {  # name -> (sampler call, order of convergence to the ODE's endpoint)
    "ddim": (lambda m, x, s, n: samplers.sample_ddim(m, x, s, n, spacing="linspace"), 1),
    "euler": (lambda m, x, s, n: samplers.sample_euler(m, x, s, n), 1),
    "heun": (lambda m, x, s, n: samplers.sample_heun(m, x, s, n), 2),
    "dpm_solver_1": (
        lambda m, x, s, n: samplers.sample_dpm_solver(m, x, s, n, order=1, plus=False, spacing="logsnr"),
        1,
    ),
    "dpm_solver_2": (
        lambda m, x, s, n: samplers.sample_dpm_solver(m, x, s, n, order=2, plus=False, spacing="logsnr"),
        2,
    ),
    "dpm_solver_3": (
        lambda m, x, s, n: samplers.sample_dpm_solver(m, x, s, n, order=3, plus=False, spacing="logsnr"),
        3,
    ),
    "dpm_solver++2m": (lambda m, x, s, n: samplers.sample_dpm_solver(m, x, s, n, order=2, spacing="logsnr"), 2),
    # diffusers' 3M converges at order 2 here (see test_samplers_parity.py); dlib's at 3 or better
    "dpm_solver++3m": (lambda m, x, s, n: samplers.sample_dpm_solver(m, x, s, n, order=3, spacing="logsnr"), 3),
}


@pytest.mark.parametrize("name", list(ODE_SOLVERS))
def test_ode_solvers_converge_to_the_exact_endpoint_at_their_order(name):
    sched = S.linear(1000)
    model = gaussian_eps_model(sched, MU, S2)
    x_T = torch.linspace(-3, 3, 33, dtype=torch.float64)[:, None]
    exact = gaussian_ode_endpoint(sched, x_T, MU, S2)
    sample, order = ODE_SOLVERS[name]
    err = [(sample(model, x_T, sched, n) - exact).abs().max().item() for n in (40, 80)]
    measured = math.log2(err[0] / err[1])
    assert order - 0.25 < measured < order + 1.5, (
        f"{name}: errors {err}, measured order {measured:.2f}, expected {order}"
    )


def test_pf_ode_reference_hits_the_closed_form(gen):
    sched = S.linear(1000)
    x_T = torch.randn(16, 1, dtype=torch.float64, generator=gen)
    calls = []
    x = samplers.sample_pf_ode(gaussian_eps_model(sched, MU, S2), x_T, sched, callback=calls.append)
    assert (x - gaussian_ode_endpoint(sched, x_T, MU, S2)).abs().max() < 1e-4
    assert 20 < len(calls) < 1000 and set(calls[0]) == {"i", "t", "sigma", "x", "x_0_hat"}


def exact_flow(x_bar_0, sigma_0, sigma):
    """The Gaussian data's PF-ODE flow in sigma space, from (x_bar_0, sigma_0) to sigma."""
    return MU + (x_bar_0 - MU) * math.sqrt((S2 + sigma**2) / (S2 + sigma_0**2))


def exact_eps(x_bar, sigma):
    return sigma * (x_bar - MU) / (S2 + sigma**2)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_step_rules_have_local_error_of_order_plus_one(order):
    """One step from the exact solution errs by O(h^(order+1)) in lambda: halving h divides it by 2^(order+1)."""
    x_bar_0, sigma_0 = torch.tensor([2.0], dtype=torch.float64), 1.0

    def errors(step):
        out = []
        for h in (0.2, 0.1):
            sigma_next = sigma_0 * math.exp(-h)
            out.append(abs(step(h, sigma_next) - exact_flow(x_bar_0, sigma_0, sigma_next)).item())
        return out

    def pp(h, sigma_next):  # multistep history: the exact x_0_hat at sigma_0 e^{jh}, j = 0, 1, 2
        hist = [sigma_0 * math.exp(j * h) for j in range(3)]
        x0s = [exact_flow(x_bar_0, sigma_0, s) - s * exact_eps(exact_flow(x_bar_0, sigma_0, s), s) for s in hist]
        return samplers.dpm_solver_pp_step(x_bar_0, x0s, hist, sigma_next, order)

    def single(h, sigma_next):
        return samplers.dpm_solver_step(exact_eps, x_bar_0, exact_eps(x_bar_0, sigma_0), sigma_0, sigma_next, order)

    for name, step in (("dpm_solver++", pp), ("dpm_solver", single)):
        e = errors(step)
        assert e[0] / e[1] > 0.8 * 2 ** (order + 1), f"{name} order {order}: local errors {e}"


def test_heun_step_is_second_order_and_euler_first():
    x_bar_0, sigma_0 = torch.tensor([2.0], dtype=torch.float64), 1.0
    ratios = {}
    for name in ("euler", "heun"):
        e = []
        for d in (0.1, 0.05):
            s1 = sigma_0 - d
            eps0 = exact_eps(x_bar_0, sigma_0)
            x = samplers.euler_step(x_bar_0, eps0, sigma_0, s1)
            if name == "heun":
                x = samplers.heun_step(x_bar_0, eps0, exact_eps(x, s1), sigma_0, s1)
            e.append(abs(x - exact_flow(x_bar_0, sigma_0, s1)).item())
        ratios[name] = e[0] / e[1]
    assert 3 < ratios["euler"] < 5 and 6 < ratios["heun"] < 10, ratios


def test_ddim_inversion_round_trip(gen):
    sched = S.linear(1000)
    model = gaussian_eps_model(sched, MU, S2)
    x_0 = MU + math.sqrt(S2) * torch.randn(64, 1, dtype=torch.float64, generator=gen)
    errs = []
    for steps in (50, 200):
        x_T = samplers.ddim_invert(model, x_0, sched, steps)
        errs.append((samplers.sample_ddim(model, x_T, sched, steps) - x_0).abs().max().item())
    # inversion is Euler run backwards with the slope from the wrong end: first order, 4x steps ~ 4x better
    assert errs[1] < errs[0] / 2.5 and errs[1] < 0.05, errs


def test_churn_uses_the_generator_and_zero_churn_does_not(gen):
    sched = S.linear(1000)
    model = gaussian_eps_model(sched, MU, S2)
    x_T = torch.randn(8, 1, generator=gen)
    runs = [
        samplers.sample_euler(model, x_T, sched, 10, s_churn=c, generator=torch.Generator().manual_seed(s))
        for c, s in ((0, 1), (0, 2), (5, 1), (5, 1), (5, 2))
    ]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[2], runs[3]) and not torch.equal(runs[2], runs[4])


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_every_sampler_shares_the_signature_and_calls_back(name, gen):
    import inspect

    fn = samplers.SAMPLERS[name]
    params = inspect.signature(fn).parameters
    assert list(params)[:4] == ["model", "x_T", "sched", "steps"]
    assert params["generator"].kind == params["callback"].kind == inspect.Parameter.KEYWORD_ONLY
    sched = S.linear(100)
    seen = []
    steps = None if name == "pf_ode" else 5
    x = fn(
        gaussian_eps_model(sched, MU, S2),
        torch.randn(3, 2, generator=gen),
        sched,
        steps,
        generator=gen,
        callback=seen.append,
    )
    assert x.shape == (3, 2) and torch.isfinite(x).all()
    assert seen and {"i", "t", "x", "x_0_hat"} <= set(seen[0])
    if steps:
        assert [d["i"] for d in seen] == list(range(steps))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, x, s: samplers.sample_ddim(m, x, s, 101), "1 <= steps <= T"),
        (lambda m, x, s: samplers.sample_ddim(m, x, s, 0), "1 <= steps <= T"),
        (lambda m, x, s: samplers.sample_ddim(m, x, s, 10, eta=1.5), "eta must lie in"),
        (lambda m, x, s: samplers.sample_ddim(m, x, s, 10, spacing="uniform"), "unknown spacing"),
        (lambda m, x, s: samplers.sample_ddpm(m, x, s, 10, variance="learned"), "variance must be"),
        (lambda m, x, s: samplers.sample_dpm_solver(m, x, s, 10, order=4), "order must be 1, 2 or 3"),
        (lambda m, x, s: samplers.sample_dpm_solver(m, x, s, 10, spacing="cosine"), "unknown spacing"),
        (lambda m, x, s: samplers.sample_dpm_solver(m, x, s, 101), "1 <= steps <= T"),
        (lambda m, x, s: samplers.sample_euler(m, x, s, 0), "positive integer"),
        (lambda m, x, s: samplers.sample_heun(m, x, s, 2.5), "positive integer"),
        (lambda m, x, s: samplers.sample_pf_ode(m, x, s, 10), "chooses its own steps"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message, gen):
    sched = S.linear(100)
    with pytest.raises(ValueError, match=message):
        call(gaussian_eps_model(sched, MU, S2), torch.randn(2, 2, generator=gen), sched)


def test_slerp_ends_norms_and_orthogonal_midpoint(gen):
    from dlib.utils import slerp

    a, b = torch.randn(4, 1, 8, 8, generator=gen), torch.randn(4, 1, 8, 8, generator=gen)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    torch.testing.assert_close(mid.flatten(1).norm(dim=1), (a.flatten(1).norm(dim=1) + b.flatten(1).norm(dim=1)) / 2)
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(slerp(e1, e2, 0.5), torch.tensor([[0.5**0.5, 0.5**0.5]]))
    torch.testing.assert_close(slerp(e1, e1, 0.3), e1)  # parallel inputs: no division by sin(0)
