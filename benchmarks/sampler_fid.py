"""How many network calls does each sampler need to match 1,000-step DDPM?

Draws n samples from the shipped MNIST model with each sampler from the same starting noise
(chunk c of the run uses x_T from seed ``seed + c``), scores each set with the classifier-feature
FID against the 10,000 MNIST test images, and reports FID against the number of network calls
(NFE). The reference is ancestral DDPM with all T = 1000 steps. Samples are cached per chunk in
build/sampler_fid/ so that a killed run resumes where it stopped.

    python benchmarks/sampler_fid.py                      # n = 1000, the headline numbers
    python benchmarks/sampler_fid.py --n 200 --chunk 100  # a quicker, noisier look

Writes benchmarks/results/sampler_fid-<device>.json. The headline: the smallest NFE at which
DPM-Solver++(2M) comes within 10% of the reference FID.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dlib import data, samplers
from dlib.checkpoint import hardware
from dlib.metrics import classifier_fid
from dlib.train import load_pretrained

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "sampler_fid"


def sampler_runs(nfes: list[int]) -> dict[str, tuple[int, callable]]:
    """name -> (network calls per sample, fn(model, x_T, sched, generator) -> x_0)."""
    runs = {"ddpm-1000": (1000, lambda m, x, s, g: samplers.sample_ddpm(m, x, s, None, generator=g))}
    for k in nfes:
        runs[f"ddpm-{k}"] = (k, lambda m, x, s, g, k=k: samplers.sample_ddpm(m, x, s, k, generator=g))
        runs[f"ddim-{k}"] = (k, lambda m, x, s, g, k=k: samplers.sample_ddim(m, x, s, k, generator=g))
        runs[f"dpm++2m-{k}"] = (
            k,
            lambda m, x, s, g, k=k: samplers.sample_dpm_solver(m, x, s, k, order=2, plus=True, generator=g),
        )
        runs[f"dpm++3m-{k}"] = (
            k,
            lambda m, x, s, g, k=k: samplers.sample_dpm_solver(m, x, s, k, order=3, plus=True, generator=g),
        )
        runs[f"euler-{k}"] = (k, lambda m, x, s, g, k=k: samplers.sample_euler(m, x, s, k, generator=g))
        if k % 2 == 0:  # Heun costs two calls per step but the last, which is Euler: 2 steps - 1
            runs[f"heun-{(k + 1) // 2 * 2 - 1}"] = (
                k - 1,
                lambda m, x, s, g, k=k: samplers.sample_heun(m, x, s, k // 2, generator=g),
            )
    return runs


def samples_for(name, fn, model, sched, n, chunk, seed, shape, device) -> torch.Tensor:
    """n samples, cached per chunk under build/sampler_fid/<name>/."""
    out = []
    for c in range(0, n // chunk):
        path = CACHE / name / f"seed{seed + c}-chunk{chunk}.pt"
        if not path.exists():
            gen = torch.Generator().manual_seed(seed + c)
            x_T = torch.randn((chunk, *shape), generator=gen).to(device)
            t0 = time.perf_counter()
            x_0 = fn(model, x_T, sched, gen).clamp(-1, 1).cpu()
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(x_0, path.with_suffix(".tmp"))
            path.with_suffix(".tmp").rename(path)
            print(f"{name}: chunk {c + 1}/{n // chunk} in {time.perf_counter() - t0:.0f} s", flush=True)
        out.append(torch.load(path))
    return torch.cat(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 6, 8, 10, 12, 15, 20, 25, 30, 50])
    p.add_argument("--only", nargs="+", default=None, help="run only these sampler names")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.n % args.chunk:
        raise SystemExit(f"--n ({args.n}) must be a multiple of --chunk ({args.chunk})")
    model, sched, _ = load_pretrained("mnist-unet", args.device)
    classifier, _, _ = load_pretrained("mnist-classifier", args.device)
    x_test, _ = data.load_images("mnist", "test")
    runs = sampler_runs(args.nfe)
    names = args.only or list(runs)
    unknown = set(names) - set(runs)
    if unknown:
        raise SystemExit(f"unknown sampler names {sorted(unknown)}; known: {sorted(runs)}")
    results = {}
    for name in names:
        nfe, fn = runs[name]
        t0 = time.perf_counter()
        x = samples_for(name, fn, model, sched, args.n, args.chunk, args.seed, (1, 28, 28), args.device)
        fid = classifier_fid(classifier.cpu(), x, x_test)
        classifier.to(args.device)
        results[name] = {"nfe": nfe, "fid": round(fid, 3)}
        print(f"{name:>14}  NFE {nfe:5d}  FID {fid:7.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.only:
        return results
    ref = results["ddpm-1000"]["fid"]
    matched = [r["nfe"] for k, r in results.items() if k.startswith("dpm++2m-") and r["fid"] <= 1.1 * ref]
    summary = {
        "settings": f"n={args.n} samples per sampler vs the 10000 MNIST test images, mnist-classifier features, "
        f"x_T from seeds {args.seed}..{args.seed + args.n // args.chunk - 1} (chunks of {args.chunk})",
        "reference": "ddpm-1000",
        "reference_fid": ref,
        "dpm++2m_nfe_within_10pct": min(matched) if matched else None,
        "results": results,
        "hardware": hardware(),
    }
    out = ROOT / "benchmarks" / "results" / f"sampler_fid-{torch.device(args.device).type}.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=1))
    return summary


if __name__ == "__main__":
    main()
