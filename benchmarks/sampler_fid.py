"""How many network calls does each sampler need to match 1,000-step DDPM?

Draws n samples from the shipped MNIST model with each sampler from the same starting noise
(chunk c of the run uses x_T from seed ``seed + c``), scores each set with the classifier-feature
FID against the 10,000 MNIST test images, and reports FID against the number of network calls
(NFE). The reference is ancestral DDPM with all T = 1000 steps. Samples are cached per chunk in
build/sampler_fid/ so that a killed run resumes where it stopped.

    python benchmarks/sampler_fid.py                      # n = 500, the headline numbers
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
from dlib.checkpoint import hardware, load_pretrained
from dlib.metrics import extract_features, fid_with_spread

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "sampler_fid"


# family -> (network calls for a given number of steps, the call). Steps are chosen per family so
# that the families meet at about 10, 20 and 50 network calls.
FAMILIES = {
    "ddpm": (lambda n: n, lambda m, x, s, n, g: samplers.sample_ddpm(m, x, s, n, generator=g)),
    "ddim": (lambda n: n, lambda m, x, s, n, g: samplers.sample_ddim(m, x, s, n, generator=g)),
    "euler": (lambda n: n, lambda m, x, s, n, g: samplers.sample_euler(m, x, s, n, generator=g)),
    "euler-churn10": (lambda n: n, lambda m, x, s, n, g: samplers.sample_euler(m, x, s, n, s_churn=10.0, generator=g)),
    "heun": (lambda n: 2 * n - 1, lambda m, x, s, n, g: samplers.sample_heun(m, x, s, n, generator=g)),
    "dpm2": (lambda n: 2 * n - 1, lambda m, x, s, n, g: samplers.sample_dpm_solver(m, x, s, n, order=2, plus=False)),
    "dpm++2m": (lambda n: n, lambda m, x, s, n, g: samplers.sample_dpm_solver(m, x, s, n, order=2)),
    "dpm++3m": (lambda n: n, lambda m, x, s, n, g: samplers.sample_dpm_solver(m, x, s, n, order=3)),
}
STEPS = {
    "ddpm": [10, 20, 50],
    "ddim": [10, 20, 50],
    "euler": [10, 20],
    "euler-churn10": [20, 50],
    "heun": [5, 10],
    "dpm2": [5, 10],
    "dpm++2m": [5, 6, 8, 10, 12, 15, 20, 25, 30, 50],
    "dpm++3m": [10, 20],
}


def sampler_runs() -> dict[str, tuple[int, object]]:
    """name -> (network calls per sample, fn(model, x_T, sched, generator) -> x_0)."""
    runs = {"ddpm-1000": (1000, lambda m, x, s, g: samplers.sample_ddpm(m, x, s, None, generator=g))}
    for family, (nfe, call) in FAMILIES.items():
        for n in STEPS[family]:
            runs[f"{family}-{n}"] = (nfe(n), lambda m, x, s, g, n=n, call=call: call(m, x, s, n, g))
    runs["pf_ode-rk45"] = (None, lambda m, x, s, g: samplers.sample_pf_ode(m, x, s, rtol=1e-4, atol=1e-4))
    return runs


def samples_for(name, fn, model, sched, n, chunk, seed, shape, device) -> tuple[torch.Tensor, float]:
    """(n samples, network calls per sample), cached per chunk under build/sampler_fid/<name>/."""
    out, calls = [], []
    for c in range(0, n // chunk):
        path = CACHE / name / f"seed{seed + c}-chunk{chunk}.pt"
        if not path.exists():
            gen = torch.Generator().manual_seed(seed + c)
            x_T = torch.randn((chunk, *shape), generator=gen).to(device)
            count = [0]

            def counted(x, t, count=count):
                count[0] += 1
                return model(x, t)

            t0 = time.perf_counter()
            x_0 = fn(counted, x_T, sched, gen).clamp(-1, 1).cpu()
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"x_0": x_0, "calls": count[0]}, path.with_suffix(".tmp"))
            path.with_suffix(".tmp").rename(path)
            print(f"{name}: chunk {c + 1}/{n // chunk} in {time.perf_counter() - t0:.0f} s", flush=True)
        saved = torch.load(path)
        if isinstance(saved, torch.Tensor):  # chunks written before call counting: all T steps of DDPM
            saved = {"x_0": saved, "calls": 1000}
        out.append(saved["x_0"])
        calls.append(saved["calls"])
    return torch.cat(out), sum(calls) / len(calls)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", default=None, help="run only these sampler names")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.n % args.chunk:
        raise SystemExit(f"--n ({args.n}) must be a multiple of --chunk ({args.chunk})")
    model, sched, _ = load_pretrained("mnist-unet", args.device)
    classifier, _, _ = load_pretrained("mnist-classifier", args.device)
    x_test, _ = data.load_images("mnist", "test")
    f_test = extract_features(classifier, x_test.to(args.device)).cpu()
    runs = sampler_runs()
    names = args.only or list(runs)
    unknown = set(names) - set(runs)
    if unknown:
        raise SystemExit(f"unknown sampler names {sorted(unknown)}; known: {sorted(runs)}")
    results = {}
    for name in names:
        nfe, fn = runs[name]
        t0 = time.perf_counter()
        x, calls = samples_for(name, fn, model, sched, args.n, args.chunk, args.seed, (1, 28, 28), args.device)
        if nfe is not None and calls != nfe:
            raise RuntimeError(f"{name}: expected {nfe} network calls per sample, counted {calls}")
        f_gen = extract_features(classifier, x.to(args.device)).cpu()
        fid, spread = fid_with_spread(f_gen, f_test, generator=torch.Generator().manual_seed(0))
        results[name] = {"nfe": round(calls, 1), "fid": round(fid, 3), "fid_bootstrap_std": round(spread, 3)}
        print(
            f"{name:>14}  NFE {calls:6.1f}  FID {fid:7.3f} +- {spread:.3f}  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    if args.only:
        return results
    ref = results["ddpm-1000"]["fid"]
    within = {}  # family -> the fewest network calls at which it comes within 10% of the reference
    for key, r in results.items():
        family = key.rsplit("-", 1)[0]
        if key != "ddpm-1000" and r["fid"] <= 1.1 * ref:
            within[family] = min(within.get(family, r["nfe"]), r["nfe"])
    summary = {
        "settings": f"n={args.n} samples per sampler vs the 10000 MNIST test images, mnist-classifier features, "
        f"x_T from seeds {args.seed}..{args.seed + args.n // args.chunk - 1} (chunks of {args.chunk})",
        "n": args.n,
        "reference": "ddpm-1000",
        "reference_fid": ref,
        "dpm++2m_nfe_within_10pct": within.get("dpm++2m"),
        "nfe_within_10pct": within,
        "results": results,
        "hardware": hardware(),
    }
    out = ROOT / "benchmarks" / "results" / f"sampler_fid-{torch.device(args.device).type}.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=1))
    return summary


if __name__ == "__main__":
    main()
