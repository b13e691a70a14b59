"""Every sampler of notebook 05 and every shipped generative model on every metric of notebook 10.

    python benchmarks/metrics_table.py                 # n = 500 samples per row, the table of notebook 10
    python benchmarks/metrics_table.py --n 100 --only mnist-unet/ddim-20 real/mnist   # a quick look
    python benchmarks/metrics_table.py --update        # re-measure only the rows whose models were retrained

Each row draws n samples with ``dlib.generate.generate`` (batch b from seed b) and scores them:

- in the domain classifier's feature space (mnist-classifier or fashion-classifier, penultimate layer):
  FID against the dataset's 10,000 test images with its bootstrap std, the share of samples the classifier
  labels with confidence >= 0.9, the Inception-Score formula on the classifier's class probabilities
  (10 splits of the shuffled samples), and for conditional rows the share in the requested class;
- in Inception-v3 pool features (``dlib.metrics.inception``; the first ``--n-ref`` test images, cached):
  FID, KID x 10^3 with its standard error, precision/recall (k = 3) and density/coverage (k = 5) against
  the first n of those test images (equal set sizes, as Kynkaanniemi et al. do);
- for rows with a requested class: the CLIP score of each sample with its class prompt, in the shipped
  contrastive model of the dataset (mnist-clip or fashion-clip).

The rows "real/mnist" and "real/fashion" are n training images scored the same way: the floors. Samples and
scores are cached per row in build/metrics_table/ (a killed run resumes), keyed by the first 12 hex digits of
the weights' sha256 of every shipped model the row's samples come from (``row_models``), so that a retrained
model is sampled and scored afresh; the table goes to benchmarks/results/metrics_table-<device>.json with the
settings, wall times and hardware. Each row records the weights it measured (``weights``: model -> the first 12 hex
digits of its sha256) and the day (``measured``); ``--update`` keeps every row of that JSON whose recorded weights are
the shipped ones (the same n, seed and reference), and measures the others.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch

from dlib import data, metrics
from dlib.checkpoint import hardware, load_pretrained, read_card
from dlib.generate import Generated, class_prompts, generate, kind_of
from dlib.text import TextEncoder

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "metrics_table"
CONFIDENT = 0.9

# row name -> (dataset, model or None for real images, generate() keywords)
ROWS: dict[str, tuple[str, str | None, dict]] = {
    "real/mnist": ("mnist", None, {}),
    "mnist-unet/ddpm-100": ("mnist", "mnist-unet", {"sampler": "ddpm", "steps": 100}),
    "mnist-unet/sde-100": ("mnist", "mnist-unet", {"sampler": "sde", "steps": 100}),
    "mnist-unet/ddim-20": ("mnist", "mnist-unet", {"sampler": "ddim", "steps": 20}),
    "mnist-unet/euler-20": ("mnist", "mnist-unet", {"sampler": "euler", "steps": 20}),
    "mnist-unet/heun-10": ("mnist", "mnist-unet", {"sampler": "heun", "steps": 10}),
    "mnist-unet/dpm_solver-10": ("mnist", "mnist-unet", {"sampler": "dpm_solver", "steps": 10}),
    "mnist-unet/dpm_solver-20": ("mnist", "mnist-unet", {"sampler": "dpm_solver", "steps": 20}),
    "mnist-unet/pf_ode-rk45": ("mnist", "mnist-unet", {"sampler": "pf_ode", "steps": None}),
    "mnist-cond-unet/ddim-50": ("mnist", "mnist-cond-unet", {"sampler": "ddim", "steps": 50, "w": 3.0}),
    "mnist-text-unet/ddim-50": ("mnist", "mnist-text-unet", {"sampler": "ddim", "steps": 50, "w": 3.0}),
    "mnist-latent-unet/ddim-50": ("mnist", "mnist-latent-unet", {"sampler": "ddim", "steps": 50, "w": 3.0}),
    "real/fashion": ("fashion-mnist", None, {}),
    "fashion-cond-unet/ddim-50": ("fashion-mnist", "fashion-cond-unet", {"sampler": "ddim", "steps": 50, "w": 3.0}),
    "fashion-latent-unet/ddim-50": ("fashion-mnist", "fashion-latent-unet", {"sampler": "ddim", "steps": 50, "w": 3.0}),
    "fashion-unclip-decoder/ddim-50": (
        "fashion-mnist",
        "fashion-unclip-decoder",
        {"sampler": "ddim", "steps": 50, "w": 3.0},
    ),
}


def row_models(row: str) -> list[str]:
    """The shipped models a row's samples come from: its model, the prior ``generate`` pairs an unCLIP decoder
    with, and the first stages their cards name (``latent_of``, ``embed_of``); none for real images."""
    model = ROWS[row][1]
    if model is None:
        return []
    names = [model]
    if kind_of(read_card(model)) == "unclip":
        names.append(model.replace("decoder", "prior"))  # as generate() picks it
    for name in names:  # grows while it runs: the first stages' own links are followed too
        cfg = read_card(name)["config"]
        names += [cfg[k] for k in ("latent_of", "embed_of") if cfg.get(k) and cfg[k] not in names]
    return names


def row_weights(row: str) -> dict[str, str]:
    """model -> the first 12 hex digits of its weights' sha256, for every shipped model the row's samples come from."""
    return {name: read_card(name)["weights_sha256"][:12] for name in row_models(row)}


def _cached(row: str, n: int, seed: int, suffix: str) -> Path:
    weights = "".join(f"-{sha}" for sha in row_weights(row).values())
    return CACHE / f"{row.replace('/', '--')}{weights}-n{n}-seed{seed}{suffix}"


def kept_rows(previous: dict, n: int, seed: int, n_ref: int) -> dict[str, dict]:
    """The rows of a previous table (its JSON) that still describe the shipped models: measured with the same n,
    seed and reference size, and with the weights that are shipped now."""
    if (previous.get("n"), previous.get("seed"), previous.get("n_ref")) != (n, seed, n_ref):
        return {}
    return {r["row"]: r for r in previous["rows"] if r["row"] in ROWS and r.get("weights") == row_weights(r["row"])}


def samples(row: str, n: int, seed: int) -> Generated:
    """The row's n samples, from build/metrics_table/ if drawn before (same n, seed and weights)."""
    dataset, model, kw = ROWS[row]
    path = _cached(row, n, seed, ".pt")
    if path.exists():
        return Generated(**torch.load(path, weights_only=True))
    if model is None:  # real images: n training images, balanced labels not needed
        x, y = data.load_images(dataset, "train")
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
        g = Generated(x[idx], y[idx], None, 0.0, 0.0, f"{n} random {dataset} training images (seed {seed})")
    else:
        g = generate(model, n, seed=seed, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(vars(g), path.with_suffix(".tmp"))
    path.with_suffix(".tmp").rename(path)
    return g


class Scorer:
    """The reference features of one dataset and the networks that score its samples."""

    def __init__(self, dataset: str, n_ref: int):
        self.dataset = dataset
        prefix = dataset.removesuffix("-mnist")  # the shipped models' prefix: mnist, fashion
        self.classifier = load_pretrained(f"{prefix}-classifier")[0]
        self.clip = load_pretrained(f"{prefix}-clip")[0]
        self.prompts = class_prompts(dataset)
        self.f_test = metrics.dataset_features(metrics.classifier_extractor(self.classifier), dataset, "test")
        self.i_test = metrics.dataset_features(metrics.inception_extractor(), dataset, "test", limit=n_ref)
        self.text = None

    def __call__(self, g: Generated, seed: int) -> dict:
        n, x = len(g.images), g.images
        gen = torch.Generator().manual_seed(seed)
        f = metrics.extract_features(self.classifier, x)
        probs = metrics.class_probabilities(self.classifier, x)
        fid, fid_std = metrics.fid_with_spread(f, self.f_test, generator=gen)
        inc = metrics.inception_features(x)
        real = self.i_test[:n]
        k = metrics.kid(inc, self.i_test, subsets=100, subset_size=min(n, len(self.i_test)), generator=gen)
        precision, recall = metrics.precision_recall(real, inc)
        density, coverage = metrics.density_coverage(real, inc)
        out = {
            "classifier_fid": round(fid, 2),
            "classifier_fid_std": round(fid_std, 2),
            "confident": round((probs.max(1).values >= CONFIDENT).float().mean().item(), 4),
            # the splits must mix the classes: conditional samples come grouped by class
            "digit_is": round(metrics.inception_score(probs[torch.randperm(n, generator=gen)])[0], 3),
            "inception_fid": round(metrics.fid_from_features(inc, self.i_test), 1),
            "kid_x1e3": round(1e3 * k.mean, 2),
            "kid_std_x1e3": round(1e3 * k.std, 2),
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "density": round(density, 3),
            "coverage": round(coverage, 3),
        }
        if g.labels is not None:
            out["share_as_requested"] = round((probs.argmax(1) == g.labels).float().mean().item(), 4)
            if self.text is None:
                self.text = self.clip.text_embedding(TextEncoder().sentences(self.prompts))  # (10, D)
            with torch.no_grad():
                image = torch.cat([self.clip.image_embedding(x[i : i + 500]) for i in range(0, n, 500)])
            out["clip_score"] = round(metrics.clip_score(image, self.text[g.labels]), 2)
        return out


COLUMNS = [
    ("row", "row"),
    ("NFE", "nfe"),
    ("s/sample", "s_per_sample"),
    ("FID (clf)", "classifier_fid"),
    ("conf>=0.9", "confident"),
    ("as asked", "share_as_requested"),
    ("IS (clf)", "digit_is"),
    ("FID (Incep.)", "inception_fid"),
    ("KID x1e3", "kid_x1e3"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("density", "density"),
    ("coverage", "coverage"),
    ("CLIP score", "clip_score"),
]


def render(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(c for c, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = []
        for _, key in COLUMNS:
            v = r.get(key)
            if key == "classifier_fid":
                v = f"{v} +- {r['classifier_fid_std']}"
            elif key == "kid_x1e3":
                v = f"{v} +- {r['kid_std_x1e3']}"
            cells.append("" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500, help="samples per row")
    p.add_argument("--n-ref", type=int, default=2000, help="test images whose Inception features are the reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", default=None, help="these rows only (default: all)")
    p.add_argument("--out", type=Path, default=None, help="the JSON to write (default: benchmarks/results/)")
    p.add_argument("--update", action="store_true", help="keep the rows of --out whose models' weights are unchanged")
    args = p.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.out or ROOT / "benchmarks" / "results" / f"metrics_table-{device}.json"
    kept = kept_rows(json.loads(out.read_text()), args.n, args.seed, args.n_ref) if args.update and out.exists() else {}
    unknown = set(args.only or ()) - set(ROWS)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}; known: {list(ROWS)}")
    names = args.only or list(ROWS)
    scorers, rows = {}, []
    for name in names:
        if name in kept:
            print(f"{name}: kept (measured {kept[name].get('measured')}, same weights)", flush=True)
            rows.append(kept[name])
            continue
        dataset = ROWS[name][0]
        g = samples(name, args.n, args.seed)
        scored = _cached(name, args.n, args.seed, f"-ref{args.n_ref}.json")  # the row's scores, once computed
        if scored.exists():
            rows.append(json.loads(scored.read_text()))
            continue
        if dataset not in scorers:
            scorers[dataset] = Scorer(dataset, args.n_ref)
        t0 = time.perf_counter()
        row = {"row": name, "nfe": round(g.nfe, 1), "s_per_sample": round(g.seconds / len(g.images), 4)}
        row |= scorers[dataset](g, args.seed) | {"settings": g.settings, "sample_s": round(g.seconds)}
        row |= {"score_s": round(time.perf_counter() - t0), "hardware": hardware()}
        row |= {"weights": row_weights(name), "measured": datetime.date.today().isoformat()}
        scored.write_text(json.dumps(row))
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = render(rows)
    result = {
        "command": "python benchmarks/metrics_table.py" + (f" --n {args.n}" if args.n != 500 else ""),
        "n": args.n,
        "seed": args.seed,
        "n_ref": args.n_ref,
        "settings": (
            f"n={args.n} samples per row (batch b from seed {args.seed} + b); classifier features: FID against the "
            f"10000 test images (bootstrap std over 20 resamples), IS over 10 splits; Inception features "
            f"({metrics.INCEPTION_PREPROCESSING}): FID and KID (100 subsets of n) against the first {args.n_ref} "
            f"test images, precision/recall (k=3) and density/coverage (k=5) against the first n of them; CLIP "
            f"score with the dataset's contrastive model and the class prompt of the requested class"
        ),
        "hardware": sorted({r["hardware"] for r in rows}),
        "wall_s": sum(r["sample_s"] + r["score_s"] for r in rows),  # sampling and scoring, summed over the rows
        "rows": rows,
        "table": table,
    }
    if args.only is None or args.out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    print(table)
    return result


if __name__ == "__main__":
    main()
