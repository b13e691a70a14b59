"""How many network calls does each sampler need to match 1,000-step DDPM?

Draws n samples from the shipped MNIST model with each sampler from the same starting noise
(chunk c of the run uses x_T from seed ``seed + c``), scores each set with the classifier-feature
FID against the 10,000 MNIST test images, and reports FID against the number of network calls
(NFE). The reference is ancestral DDPM with all T = 1000 steps. The network is read through the
parameterisation its card names (eps, x_0 or v: ``config.build_denoiser``). Samples are cached per chunk
in build/sampler_fid/<first 12 hex digits of the weights' sha256>/ so that a killed run resumes where it
stopped, and a retrained model never reads the samples of the one before.

    python benchmarks/sampler_fid.py                      # n = 1000, the headline numbers
    python benchmarks/sampler_fid.py --n 200 --chunk 100  # a quicker, noisier look

Writes benchmarks/results/sampler_fid-<device>.json. The headline: the smallest NFE at which
DPM-Solver++(2M) comes within 10% of the reference FID. Every sampler's FID also comes as its difference from the
reference's and from the probability-flow ODE's (RK45), each with its paired bootstrap spread
(``fid_difference_with_spread``: both sets resampled with the same indices, which pairs the samples started from the
same noise). Between two deterministic samplers the pairing resolves differences far finer than either FID's own
spread; against DDPM, whose path draws fresh noise, it does not.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dlib import data, samplers
from dlib.checkpoint import hardware, load_pretrained
from dlib.config import build_denoiser, config_from_dict
from dlib.metrics import extract_features, fid_difference_with_spread, fid_with_spread
from dlib.utils import CountCalls

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "sampler_fid"


# family -> (network calls for a given number of steps, the call on a Denoiser, which knows its
# process: no schedule). Steps are chosen per family so that the families meet at about 10, 20 and 50
# network calls.
FAMILIES = {
    "ddpm": (lambda n: n, lambda d, x, n, g: samplers.sample_ddpm(d, x, None, n, generator=g)),
    "ddim": (lambda n: n, lambda d, x, n, g: samplers.sample_ddim(d, x, None, n, generator=g)),
    "euler": (lambda n: n, lambda d, x, n, g: samplers.sample_euler(d, x, None, n, generator=g)),
    "euler-churn10": (lambda n: n, lambda d, x, n, g: samplers.sample_euler(d, x, None, n, s_churn=10.0, generator=g)),
    "heun": (lambda n: 2 * n - 1, lambda d, x, n, g: samplers.sample_heun(d, x, None, n, generator=g)),
    "dpm2": (lambda n: 2 * n - 1, lambda d, x, n, g: samplers.sample_dpm_solver(d, x, None, n, order=2, plus=False)),
    "dpm++2m": (lambda n: n, lambda d, x, n, g: samplers.sample_dpm_solver(d, x, None, n, order=2)),
    "dpm++3m": (lambda n: n, lambda d, x, n, g: samplers.sample_dpm_solver(d, x, None, n, order=3)),
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
    """name -> (network calls per sample, fn(denoiser, x_T, generator) -> x_0)."""
    runs = {"ddpm-1000": (1000, lambda d, x, g: samplers.sample_ddpm(d, x, None, None, generator=g))}
    for family, (nfe, call) in FAMILIES.items():
        for n in STEPS[family]:
            runs[f"{family}-{n}"] = (nfe(n), lambda d, x, g, n=n, call=call: call(d, x, n, g))
    runs["pf_ode-rk45"] = (None, lambda d, x, g: samplers.sample_pf_ode(d, x, rtol=1e-4, atol=1e-4))
    return runs


def chunk_path(card: dict, name: str, seed: int, chunk: int) -> Path:
    """Where one chunk of a sampler's samples is cached: keyed by the model's weights, so that a retrained
    model (a new ``weights_sha256`` in its card) draws its own samples."""
    return CACHE / card["weights_sha256"][:12] / name / f"seed{seed}-chunk{chunk}.pt"


def samples_for(name, fn, model, sched, card, n, chunk, seed, shape, device) -> tuple[torch.Tensor, float]:
    """(n samples, network calls per sample) of the network ``model`` read as its ``card`` says, cached per
    chunk under build/sampler_fid/<weights sha256[:12]>/<name>/."""
    cfg = config_from_dict(card["config"])
    out, calls = [], []
    for c in range(0, n // chunk):
        path = chunk_path(card, name, seed + c, chunk)
        if not path.exists():
            gen = torch.Generator().manual_seed(seed + c)
            x_T = torch.randn((chunk, *shape), generator=gen).to(device)
            counted = CountCalls(model)  # the raw network's calls, whatever it predicts
            t0 = time.perf_counter()
            x_0 = fn(build_denoiser(cfg, counted, sched), x_T, gen).clamp(-1, 1).cpu()
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"x_0": x_0, "calls": counted.calls}, path.with_suffix(".tmp"))
            path.with_suffix(".tmp").rename(path)
            print(f"{name}: chunk {c + 1}/{n // chunk} in {time.perf_counter() - t0:.0f} s", flush=True)
        saved = torch.load(path)
        out.append(saved["x_0"])
        calls.append(saved["calls"])
    return torch.cat(out), sum(calls) / len(calls)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", default=None, help="run only these sampler names")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.n % args.chunk:
        raise SystemExit(f"--n ({args.n}) must be a multiple of --chunk ({args.chunk})")
    model, sched, card = load_pretrained("mnist-unet", args.device)
    classifier, _, _ = load_pretrained("mnist-classifier", args.device)
    x_test, _ = data.load_images("mnist", "test")
    f_test = extract_features(classifier, x_test.to(args.device)).cpu()
    runs = sampler_runs()
    names = args.only or list(runs)
    unknown = set(names) - set(runs)
    if unknown:
        raise SystemExit(f"unknown sampler names {sorted(unknown)}; known: {sorted(runs)}")
    results, features = {}, {}
    for name in names:
        nfe, fn = runs[name]
        t0 = time.perf_counter()
        x, calls = samples_for(name, fn, model, sched, card, args.n, args.chunk, args.seed, (1, 28, 28), args.device)
        if nfe is not None and calls != nfe:
            raise RuntimeError(f"{name}: expected {nfe} network calls per sample, counted {calls}")
        f_gen = features[name] = extract_features(classifier, x.to(args.device)).cpu()
        fid, spread = fid_with_spread(f_gen, f_test, generator=torch.Generator().manual_seed(0))
        results[name] = {"nfe": round(calls, 1), "fid": round(fid, 3), "fid_bootstrap_std": round(spread, 3)}
        print(
            f"{name:>14}  NFE {calls:6.1f}  FID {fid:7.3f} +- {spread:.3f}  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    if args.only:
        return results
    # Differences from the reference and from the ODE solved by RK45, each with its paired bootstrap spread (sample
    # i of every sampler starts from the same x_T): tight between two deterministic samplers, which map the same x_T
    # to nearly the same digit; about the two FIDs' spreads combined against DDPM, whose path draws fresh noise.
    for name in names:
        for other, key in (("ddpm-1000", "reference"), ("pf_ode-rk45", "ode")):
            if name != other:
                gen = torch.Generator().manual_seed(0)
                diff, sd = fid_difference_with_spread(features[name], features[other], f_test, generator=gen)
                results[name] |= {f"fid_minus_{key}": round(diff, 3), f"paired_std_{key}": round(sd, 3)}
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
        "model": "mnist-unet",
        "weights_sha256": card["weights_sha256"],
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
