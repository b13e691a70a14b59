"""What does each sampler cost beyond its network calls?

For every sampler in dlib.samplers, on the shipped MNIST U-Net at batch 64: its wall time divided by
(number of network calls x the time of one network call). 1.00 means the sampler's own arithmetic
is free; the aim is at most 1.05. The network call is timed in the same process, in rounds that
alternate with the samplers, so that machine noise hits both alike; each ratio is the median over
rounds. The samplers see the network through the parameterisation its card names (eps, x_0 or v:
``config.build_denoiser``); the network call timed is the bare network's.

    python benchmarks/sampler_overhead.py                    # CPU, batch 64, 3 rounds
    python benchmarks/sampler_overhead.py --device cuda --batch 256

Prints and writes benchmarks/results/sampler_overhead-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dlib import samplers
from dlib.checkpoint import hardware, load_pretrained
from dlib.config import build_denoiser, config_from_dict
from dlib.utils import CountCalls

SAMPLERS = {  # name -> call(denoiser, x_T, generator): a Denoiser knows its process, no schedule
    "ddpm, 20 steps": lambda d, x, g: samplers.sample_ddpm(d, x, None, 20, generator=g),
    "ddim, 20 steps": lambda d, x, g: samplers.sample_ddim(d, x, None, 20),
    "ddim eta=1, 20 steps": lambda d, x, g: samplers.sample_ddim(d, x, None, 20, eta=1.0, generator=g),
    "euler, 20 steps": lambda d, x, g: samplers.sample_euler(d, x, None, 20),
    "euler churn, 20 steps": lambda d, x, g: samplers.sample_euler(d, x, None, 20, s_churn=10.0, generator=g),
    "heun, 10 steps": lambda d, x, g: samplers.sample_heun(d, x, None, 10),
    "dpm-solver-3, 7 steps": lambda d, x, g: samplers.sample_dpm_solver(d, x, None, 7, order=3, plus=False),
    "dpm-solver++ 2m, 20 steps": lambda d, x, g: samplers.sample_dpm_solver(d, x, None, 20, order=2),
    "dpm-solver++ 3m, 20 steps": lambda d, x, g: samplers.sample_dpm_solver(d, x, None, 20, order=3),
    "pf-ode rk45, rtol 1e-3": lambda d, x, g: samplers.sample_pf_ode(d, x, rtol=1e-3, atol=1e-3),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    model, sched, card = load_pretrained("mnist-unet", device)
    sched = sched.to(device)
    cfg = config_from_dict(card["config"])
    x_T = torch.randn((args.batch, 1, 28, 28), generator=torch.Generator().manual_seed(0)).to(device)
    t_mid = torch.full((args.batch,), 500, device=device)

    @torch.no_grad()
    def time_network_call(n: int = 10) -> float:
        model(x_T, t_mid)  # warm-up
        sync(device)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            model(x_T, t_mid)
            sync(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    calls = {}
    ratios = {name: [] for name in SAMPLERS}
    call_times = []
    for r in range(args.rounds):
        for name, run in SAMPLERS.items():
            t_call = time_network_call()
            call_times.append(t_call)
            counted = CountCalls(model)  # the bare network's calls, whatever it predicts
            den = build_denoiser(cfg, counted, sched)
            sync(device)
            start = time.perf_counter()
            run(den, x_T, torch.Generator().manual_seed(r))
            sync(device)
            wall = time.perf_counter() - start
            calls[name] = counted.calls
            ratios[name].append(wall / (counted.calls * t_call))
            print(
                f"round {r + 1}: {name:>26}  {counted.calls:4d} calls  {wall:7.2f} s  ratio {ratios[name][-1]:.3f}",
                flush=True,
            )
    results = {
        name: {"network_calls": calls[name], "ratio": round(statistics.median(v), 3)} for name, v in ratios.items()
    }
    summary = {
        "settings": f"shipped mnist-unet, batch {args.batch}, median of {args.rounds} rounds; ratio = wall time / "
        f"(network calls x median time of one network call, measured just before each sampler)",
        "network_call_s": round(statistics.median(call_times), 4),
        "max_ratio": max(r["ratio"] for r in results.values()),
        "results": results,
        "hardware": hardware(),
    }
    out = Path(__file__).resolve().parent / "results" / f"sampler_overhead-{device.type}.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
