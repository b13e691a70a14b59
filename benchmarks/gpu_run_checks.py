"""The measurements behind docs/GPU_RUN.md's fixes, one subcommand each.

python benchmarks/gpu_run_checks.py tf32        # CUDA only: DDIM vs Euler (20 steps) with cuDNN's TF32 on and off
python benchmarks/gpu_run_checks.py ode-floor   # notebook 05: RMS to the RK45 end point at 40, 80, 160 calls
python benchmarks/gpu_run_checks.py annealing   # notebook 11: annealed Langevin's share of the 0.8 mode
"""

from __future__ import annotations

import argparse
import math

import torch

import dlib
from dlib.config import card_denoiser
from dlib.denoiser import eps_model
from dlib.gaussian import IsotropicMixture
from dlib.samplers import langevin_step, sample_ddim, sample_dpm_solver, sample_euler, sample_heun, sample_pf_ode


def mnist_model(device):
    net, sched, card = dlib.load_pretrained("mnist-unet", device)
    return eps_model(card_denoiser(card, net, sched)), sched


@torch.no_grad()
def tf32() -> None:
    device = torch.device("cuda")  # the drift is a CUDA matter: the CPU has no TF32
    model, sched = mnist_model(device)
    x_T = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(3)).to(device)
    for on in (True, False):
        torch.backends.cudnn.allow_tf32 = on
        a, b = sample_ddim(model, x_T, sched, 20), sample_euler(model, x_T, sched, 20, spacing="trailing")
        print(f"cudnn.allow_tf32={on}: max |DDIM - Euler| over 16 images, 20 steps: {(a - b).abs().max().item():.1e}")


@torch.no_grad()
def ode_floor() -> None:
    model, sched = mnist_model(dlib.default_device())
    x_T = torch.randn((16, 1, 28, 28), generator=torch.Generator().manual_seed(7)).to(dlib.default_device())
    for tol in (1e-5, 1e-7):
        ref = sample_pf_ode(model, x_T, sched, rtol=tol, atol=tol)
        for k in (40, 80, 160):
            runs = {  # notebook 05's grids (DDIM and DPM-Solver++ on trailing indices, Heun on Karras sigmas), then swapped
                "DDIM": sample_ddim(model, x_T, sched, k),
                "Heun": sample_heun(model, x_T, sched, (k + 1) // 2),
                "DPM-Solver++ 2M": sample_dpm_solver(model, x_T, sched, k, order=2),
                "DPM-Solver++ 3M": sample_dpm_solver(model, x_T, sched, k, order=3),
                "Heun, trailing": sample_heun(model, x_T, sched, (k + 1) // 2, spacing="trailing"),
                "DPM-Solver++ 2M, Karras": sample_dpm_solver(model, x_T, sched, k, order=2, spacing="karras"),
            }
            rms = ", ".join(f"{n} {(x - ref).pow(2).mean().sqrt().item():.4f}" for n, x in runs.items())
            print(f"RK45 tolerance {tol:g}, {k} calls: RMS to its end point: {rms}", flush=True)


def annealing() -> None:
    two = IsotropicMixture([[-2.0, 0.0], [2.0, 0.0]], var_data=0.2**2, weights=[0.8, 0.2])  # notebook 11's
    for n, n_levels, n_each in ((4000, 20, 25), (20000, 20, 25), (100000, 20, 25), (20000, 20, 400), (20000, 20, 2000)):
        g0, g = torch.Generator().manual_seed(12), torch.Generator().manual_seed(13)
        x = 8 * torch.rand(n, 2, generator=g0, dtype=torch.float64) - 4
        levels = torch.logspace(math.log10(5.0), math.log10(0.01), n_levels, dtype=torch.float64).tolist()
        for sigma in levels:
            step = 1e-3 * (sigma / levels[-1]) ** 2 / 20
            for _ in range(n_each):
                x = langevin_step(x, two.score(x, sigma), step, torch.randn(x.shape, generator=g, dtype=torch.float64))
        share = (x[:, 0] < 0).double().mean().item()
        print(f"{n} chains, {n_levels} levels x {n_each} steps: share in the 0.8 mode {share:.3f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=["tf32", "ode-floor", "annealing"])
    {"tf32": tf32, "ode-floor": ode_floor, "annealing": annealing}[parser.parse_args().check]()
