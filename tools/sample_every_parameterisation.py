"""Train small v-, x_0- and flow-models with the CLI, then sample each with every sampler and score the samples.

    python -m dlib.train --recipe mnist-v-small --out-dir build/demo/runs      # likewise mnist-x0-small, mnist-flow-small
    python tools/sample_every_parameterisation.py --runs build/demo/runs      # -> build/demo/parameterisations.{json,png}

The point is the model interface, not quality: a 300k-parameter U-Net trained for 400 steps draws rough digits.
Each sampler gets the same starting noise; each result is scored by the shipped ``mnist-classifier``: the share
of samples it labels with confidence >= 0.9 (the same share for real test images is printed beside it) and the
mean pixel value (the data's is printed too), so a sampler that misreads the parameterisation stands out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import dlib
from dlib import data, samplers
from dlib.config import build_denoiser, config_from_dict
from dlib.denoiser import VP
from dlib.metrics import class_probabilities
from dlib.plotting import image_grid
from dlib.schedules import get_schedule
from dlib.train import train

CALLS = {  # sampler -> keyword arguments for about 20-50 network calls
    "ddpm": dict(steps=50),
    "ddim": dict(steps=20),
    "euler": dict(steps=20),
    "heun": dict(steps=10),
    "dpm_solver": dict(steps=15, order=2),
    "pf_ode": dict(steps=None, rtol=1e-3, atol=1e-3),
    "sde": dict(steps=50),
}


@torch.no_grad()
def confident_share(classifier, x: torch.Tensor) -> float:
    return (class_probabilities(classifier, x.clamp(-1, 1)).max(1).values >= 0.9).float().mean().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("build/demo/runs"))
    parser.add_argument("--names", nargs="*", default=["mnist-v-small", "mnist-x0-small", "mnist-flow-small"])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("build/demo"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    classifier, _, _ = dlib.load_pretrained("mnist-classifier")
    x_test, _ = data.load_images("mnist", "test", limit=args.n)
    results = {
        "real test images": {"confident_share": confident_share(classifier, x_test), "mean": x_test.mean().item()}
    }
    x_T = torch.randn((args.n, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    grids = []
    for name in args.names:
        card = json.loads((args.runs / name / "card.json").read_text())
        cfg = config_from_dict(card["config"])
        ema = train(cfg, device=torch.device("cpu"), progress=False)["ema"].eval()  # a finished run: loads, no steps
        den = build_denoiser(cfg, ema, get_schedule(cfg.schedule, cfg.T))
        for sampler, kwargs in CALLS.items():
            if sampler in ("ddpm", "ddim") and not isinstance(den.process, VP):
                continue  # DDPM and DDIM walk the integer indices of a VP schedule; a flow has none
            counted = dlib.utils.CountCalls(den.net)
            den.net = counted
            start = time.perf_counter()
            x = samplers.SAMPLERS[sampler](den, x_T, generator=torch.Generator().manual_seed(1), **kwargs)
            den.net = counted.model
            key = f"{name} / {sampler}"
            results[key] = {
                "calls": counted.calls,
                "confident_share": confident_share(classifier, x),
                "mean": x.clamp(-1, 1).mean().item(),
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(f"{key:>32}: {results[key]}", flush=True)
            grids.append((key, x[:16].clamp(-1, 1)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parameterisations.json").write_text(json.dumps(results, indent=1))
    fig, axs = plt.subplots(len(grids), 1, figsize=(9, 0.75 * len(grids)))
    for ax, (key, x) in zip(axs, grids, strict=True):
        ax.imshow(image_grid(x, nrow=16).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(key, fontsize=7, loc="left")
        ax.axis("off")
    plt.tight_layout()
    plt.savefig(args.out / "parameterisations.png", dpi=110)
    print(f"wrote {args.out / 'parameterisations.json'} and .png")


if __name__ == "__main__":
    main()
