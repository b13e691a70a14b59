"""The one model interface: every parameterisation on every process reaches the exact Gaussian endpoint."""

import math

import pytest
import torch

from dlib import samplers
from dlib import schedules as S
from dlib.denoiser import VE, VP, Denoiser, Flow, as_denoiser, eps_model
from dlib.gaussian import gaussian_denoiser, gaussian_ode_endpoint, gaussian_posterior

MU, S2 = 0.5, 0.25
LINEAR = S.linear(1000)

# (process, parameterisations defined on it)
FAMILIES = {
    "vp": (VP(LINEAR), ("eps", "x_0", "v", "score", "edm")),
    "flow": (Flow(), ("flow", "x_0", "v_absent")),
    "ve": (VE(), ("eps", "x_0", "score", "edm")),
}
CASES = [(fam, pred) for fam, (_, preds) in FAMILIES.items() for pred in preds if pred != "v_absent"]


def x_T_for(process, n=33):
    """States at the process's first noise level: N(0, I) scale for VP and the flow, sigma_max for VE."""
    a, b = (c.item() for c in process.coefs(process.sigma_range[1]))
    return torch.linspace(-3, 3, n, dtype=torch.float64)[:, None] * math.hypot(a * S2**0.5, b)


@pytest.mark.parametrize(("family", "prediction"), CASES)
def test_conversions_agree_with_the_exact_posterior(family, prediction):
    process = FAMILIES[family][0]
    den = gaussian_denoiser(process, prediction, MU, S2)
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    lo, hi = process.sigma_range
    for sigma in (max(lo, 1e-2), 0.3, 1.0, 7.0, min(hi, 60.0)):
        a, b = (c.item() for c in process.coefs(sigma))
        pred, exact = den(x, sigma), gaussian_posterior(x, a, b, MU, S2)
        torch.testing.assert_close(pred.x_0, exact.x_0, rtol=1e-6, atol=1e-6)  # sigma -> time -> sigma, and score's b^2
        torch.testing.assert_close(pred.eps, exact.eps, rtol=1e-6, atol=1e-6)  # sigma -> time -> sigma, and score's b^2


ODE = {  # name -> (call with a spacing, order)
    "euler": (lambda d, x, n, sp: samplers.sample_euler(d, x, steps=n, spacing=sp), 1),
    "heun": (lambda d, x, n, sp: samplers.sample_heun(d, x, steps=n, spacing=sp), 2),
    "dpm_solver_2": (lambda d, x, n, sp: samplers.sample_dpm_solver(d, x, steps=n, order=2, plus=False, spacing=sp), 2),
    "dpm_solver++2m": (lambda d, x, n, sp: samplers.sample_dpm_solver(d, x, steps=n, order=2, spacing=sp), 2),
    "dpm_solver++3m": (lambda d, x, n, sp: samplers.sample_dpm_solver(d, x, steps=n, order=3, spacing=sp), 2),
}
SPACING = {"vp": "logsnr", "ve": "karras", "flow": "uniform"}
# On the flow's uniform-t grid the first steps are of size O(1) in lambda = -log sigma, however many
# steps there are (lambda = log((1 - t) / t) near t = 1), so DPM-Solver's expansion in lambda gains no
# order there (measured about 1.05 singlestep, 1.6 for 2M); Heun, in sigma, keeps its order 2.
ORDER_ON = {("flow", "dpm_solver_2"): 1, ("flow", "dpm_solver++2m"): 1, ("flow", "dpm_solver++3m"): 1}


@pytest.mark.parametrize("solver", list(ODE))
@pytest.mark.parametrize(("family", "prediction"), CASES)
def test_every_ode_solver_reaches_the_exact_endpoint_from_every_parameterisation(family, prediction, solver):
    """Each process on its usual grid: log-SNR for VP (DPM-Solver's), Karras for VE, uniform t from t = 1
    for the flow. 3M is held to order 2 (the Karras grid makes its history steps uneven)."""
    process = FAMILIES[family][0]
    den = gaussian_denoiser(process, prediction, MU, S2)
    x_T = x_T_for(process)
    exact = gaussian_ode_endpoint(process, x_T, MU, S2)
    call, order = ODE[solver]
    order = ORDER_ON.get((family, solver), order)
    err = [(call(den, x_T, n, SPACING[family]) - exact).abs().max().item() for n in (40, 80)]
    measured = math.log2(err[0] / err[1])
    assert err[1] < 0.1 and measured > order - 0.3, (
        f"{family}/{prediction}/{solver}: errors {err}, order {measured:.2f}"
    )


@pytest.mark.parametrize(("family", "prediction"), CASES)
def test_rk45_reference_hits_the_closed_form_from_every_parameterisation(family, prediction):
    process = FAMILIES[family][0]
    x_T = x_T_for(process, 9)
    x = samplers.sample_pf_ode(gaussian_denoiser(process, prediction, MU, S2), x_T, rtol=1e-7, atol=1e-7)
    assert (x - gaussian_ode_endpoint(process, x_T, MU, S2)).abs().max() < 1e-4


@pytest.mark.parametrize("prediction", ["eps", "x_0", "v"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim_eta1", "sde"])
def test_stochastic_samplers_recover_the_data_moments_from_every_vp_parameterisation(prediction, sampler, gen):
    den = gaussian_denoiser(VP(S.linear(1000)), prediction, MU, S2)
    n = 20_000
    x_T = torch.randn(n, 1, generator=gen)
    call = {
        "ddpm": lambda: samplers.sample_ddpm(den, x_T, steps=500, generator=gen),
        "ddim_eta1": lambda: samplers.sample_ddim(den, x_T, steps=500, eta=1.0, generator=gen),
        "sde": lambda: samplers.sample_sde(den, x_T, steps=500, spacing="logsnr", generator=gen),
    }[sampler]
    x = call()
    assert abs(x.mean().item() - MU) < 5 * math.sqrt(S2 / n)
    assert abs(x.var().item() - S2) < 5 * S2 * math.sqrt(2 / n) + 0.04 * S2


@pytest.mark.parametrize("family", ["flow", "ve"])
def test_reverse_sde_recovers_the_data_moments_on_flow_and_ve(family, gen):
    process, preds = FAMILIES[family]
    den = gaussian_denoiser(process, preds[0], MU, S2)
    n = 20_000
    a, b = (c.item() for c in process.coefs(process.sigma_range[1]))
    x_T = a * MU + math.hypot(a * S2**0.5, b) * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    x = samplers.sample_sde(den, x_T, steps=500, generator=gen)
    assert abs(x.mean().item() - MU) < 5 * math.sqrt(S2 / n) + 0.01
    assert abs(x.var().item() - S2) < 5 * S2 * math.sqrt(2 / n) + 0.04 * S2


def test_zero_terminal_snr_v_model_samples_from_pure_noise(gen):
    """A v-model starts where an eps-model cannot: alpha_bar = 0 at the first visited index."""
    sched = S.get_schedule("cosine", 1000, zero_terminal_snr=True)
    den = gaussian_denoiser(VP(sched), "v", MU, S2)
    x_T = torch.linspace(-3, 3, 33, dtype=torch.float64)[:, None]
    exact = gaussian_ode_endpoint(sched, x_T, MU, S2)
    for call in (
        lambda n: samplers.sample_ddim(den, x_T, steps=n),
        lambda n: samplers.sample_euler(den, x_T, steps=n, spacing="trailing"),
        lambda n: samplers.sample_dpm_solver(den, x_T, steps=n),
    ):
        err = [(call(n) - exact).abs().max().item() for n in (50, 100)]
        assert err[1] < err[0] and err[1] < 0.05, err
    x = samplers.sample_ddpm(den, torch.randn(20_000, 1, generator=gen), steps=200, generator=gen)
    assert abs(x.mean().item() - MU) < 0.02 and abs(x.var().item() - S2) < 0.03
    with pytest.raises(ValueError, match="zero terminal SNR"):
        samplers.sample_ddim(gaussian_denoiser(VP(sched), "eps", MU, S2), x_T, steps=10)


def test_flow_euler_is_the_textbook_loop_and_ddim_is_euler_in_sigma():
    x_T = torch.linspace(-3, 3, 9, dtype=torch.float64)[:, None]
    den = gaussian_denoiser(Flow(), "flow", MU, S2)
    x, n = x_T.clone(), 10
    for k in range(n):  # x_{t - 1/n} = x_t - u(x_t, t) / n, t from 1 to 1/n
        t = 1 - k / n
        x = x - den.net(x, torch.full((9,), 1000.0 * t, dtype=torch.float64)) / n
    torch.testing.assert_close(samplers.sample_euler(den, x_T, steps=n), x, rtol=1e-10, atol=1e-10)
    vp = gaussian_denoiser(VP(LINEAR), "eps", MU, S2)
    x_T = torch.linspace(-3, 3, 9)[:, None]
    torch.testing.assert_close(
        samplers.sample_ddim(vp, x_T, steps=20), samplers.sample_euler(vp, x_T, steps=20, spacing="trailing")
    )


def test_consistency_sampling_calls_the_model_steps_times_and_jumps_to_x_0_hat(gen):
    den = gaussian_denoiser(Flow(), "x_0", MU, S2)
    calls = []
    x_T = torch.randn(5, 1, dtype=torch.float64, generator=gen)
    x = samplers.sample_consistency(den, x_T, steps=1, callback=calls.append)
    torch.testing.assert_close(x, torch.full_like(x, MU))  # E[x_0 | pure noise] is the data mean
    calls.clear()
    samplers.sample_consistency(den, x_T, steps=4, generator=gen, callback=calls.append)
    assert len(calls) == 4


def test_non_finite_results_get_a_clear_error(gen):
    x_T = torch.randn(4, 2, generator=gen)
    x_T[0, 0] = float("nan")
    den = gaussian_denoiser(VP(LINEAR), "eps", MU, S2)
    for name, fn in samplers.SAMPLERS.items():
        with pytest.raises(FloatingPointError, match="non-finite"):
            fn(den, x_T, None, None if name == "pf_ode" else 5, generator=gen)


def test_bad_denoisers_get_clear_errors():
    net = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="defined on the VP process only"):
        Denoiser(net, "v", Flow())
    with pytest.raises(ValueError, match="defined on the Flow process only"):
        Denoiser(net, "flow", VP(LINEAR))
    with pytest.raises(ValueError, match="prediction must be one of"):
        Denoiser(net, "epsilon", VP(LINEAR))
    with pytest.raises(TypeError, match="process must be"):
        Denoiser(net, "eps", LINEAR)
    with pytest.raises(TypeError, match="needs its Schedule"):
        samplers.sample_ddim(net, torch.zeros(2, 2), None, 5)
    with pytest.raises(ValueError, match="not both"):
        as_denoiser(Denoiser(net, "eps", VP(LINEAR)), S.cosine(1000))
    with pytest.raises(ValueError, match="integer indices of a discrete VP"):
        samplers.sample_ddpm(Denoiser(net, "flow", Flow()), torch.zeros(2, 2), steps=5)
    with pytest.raises(ValueError, match="finite sigma range"):
        samplers.sample_euler(Denoiser(net, "flow", Flow()), torch.zeros(2, 2), steps=5, spacing="karras")
    with pytest.raises(ValueError, match="says nothing about x_0"):
        samplers.sample_euler(Denoiser(net, "eps", Flow()), torch.zeros(2, 2), steps=5)


@pytest.mark.parametrize("prediction", ["eps", "x_0", "v", "score", "edm"])
def test_eps_model_reads_any_vp_parameterisation_as_the_exact_eps(prediction):
    den = gaussian_denoiser(VP(LINEAR), prediction, MU, S2)
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for t in (0, 250, 999):
        a, b = (c.item() for c in VP(LINEAR).coefs(S.sigma_of_t(LINEAR, torch.tensor(float(t)))))
        eps = eps_model(den)(x, torch.full((5,), t))
        torch.testing.assert_close(eps, gaussian_posterior(x, a, b, MU, S2).eps, rtol=1e-6, atol=1e-6)


def test_eps_model_of_an_eps_network_is_that_network_at_the_same_integer_time():
    seen = []

    def net(x, t):
        seen.append(t)
        return x * 0.5 + t[:, None].to(x)

    x, t = torch.randn(4, 2), torch.tensor([3, 7, 7, 999])
    assert torch.equal(eps_model(Denoiser(net, "eps", VP(LINEAR)))(x, t), net(x, t))
    assert seen[0].dtype == torch.long and torch.equal(seen[0], t)
    with pytest.raises(TypeError, match="VP process"):
        eps_model(Denoiser(net, "flow", Flow()))
    with pytest.raises(TypeError, match="VP process"):
        eps_model(net)
