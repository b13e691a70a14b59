"""Measure a shipped model and record the numbers in its card.

    python -m dlib.evaluate mnist-classifier          # accuracy on the test images and on the training images
    python -m dlib.evaluate mnist-noisy-classifier    # test accuracy on x_t at several noise levels t
    python -m dlib.evaluate mnist-unet --n 1000 --steps 200   # classifier-feature FID of DDPM samples (200
                                                      # respaced steps; no --steps: all 1000) vs the test set,
                                                      # next to the real-vs-real floor measured the same way
                                                      # (mean and sd of 10 draws of n training images);
                                                      # the confident share (and the test images'), class shares
    python -m dlib.evaluate training/mnist-unet       # a run in progress, at its last checkpoint (any kind above
                                                      # that samples): kept in training/mnist-unet/evaluations.json
    python -m dlib.evaluate mnist-cond-unet           # classifier-free guidance sweep over w: share of samples
                                                      # classified as the requested class, and FID
    python -m dlib.evaluate mnist-text-unet           # held-out paraphrase prompts, scored by the classifier
    python -m dlib.evaluate fashion-ae                # reconstruction error, classifier accuracy on reconstructions
    python -m dlib.evaluate fashion-clip              # zero-shot accuracy and retrieval from class prompts
    python -m dlib.evaluate fashion-latent-unet       # class prompts through the latent pipeline, scored
    python -m dlib.evaluate fashion-unclip-decoder    # class prompts through prior + decoder, scored
    python -m dlib.evaluate mnist-inpaint-unet        # inpainting on the preset masks, beside replacement (08)
    python -m dlib.evaluate mnist-controlnet          # edge IoU with the control, with and without it (08)
    python -m dlib.evaluate mnist-cd-unet --steps 2   # a consistency model: FID of its 2-step samples (12)
    python -m dlib.evaluate fsdd-vocoder --n 100      # spectral distances, accuracy, real-time factor per schedule (09)
    python -m dlib.evaluate fsdd-mel-unet             # label -> speech: guidance sweep through the vocoder (09)

Every number in a card comes from this command; the card records the command's settings,
wall time and hardware. A training run folder (``python -m dlib.train --out-dir DIR``) is measured the
same way, without touching ``data/models``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from dlib import checkpoint, data
from dlib.config import card_denoiser
from dlib.controls import PRESETS, edge_map, iou, preset_mask
from dlib.editing import sample_inpaint, seam
from dlib.evaluate_audio import evaluate_audio_classifier, evaluate_speech, evaluate_vocoder
from dlib.evaluate_guidance import GUIDANCE_WS, guidance_sweep, text_prompt_scores
from dlib.evaluate_latent import evaluate_autoencoder, evaluate_contrastive, evaluate_pipeline
from dlib.generate import image_shape
from dlib.metrics import (
    CONFIDENT,
    class_shares,
    confident_share,
    extract_features,
    fid_floor,
    fid_with_spread,
    noisy_test_accuracy,
    share_as_requested,
    test_accuracy,
)
from dlib.plotting import image_grid
from dlib.samplers import sample_consistency, sample_ddpm, sample_default, sample_euler

FLOW_STEPS = 50  # Euler steps for a flow model's FID (python -m dlib.evaluate --steps overrides)
FLOOR_DRAWS = 10  # draws of real images for the real-vs-real floor: one draw alone varies too much at n = 1000


def evaluate_diffusion(name: str, classifier_name: str, n: int, steps: int, batch: int, seed: int) -> dict:
    model, sched, card = checkpoint.load_any(name)
    classifier, _, _ = checkpoint.load_any(classifier_name)
    cfg = card["config"]
    gen = torch.Generator().manual_seed(seed)
    den, shape = card_denoiser(card, model, sched), image_shape(card)
    distill, flow = cfg.get("distill"), cfg["prediction"] == "flow"
    if distill in ("cd", "ct"):  # notebook 12: a consistency model, in `steps` jumps from sigma_max (default one)
        steps = steps or 1
        how = f"multistep consistency sampling, {steps} network call(s) from sigma_max = {den.process.sigma_max}"
        sample = lambda x_T: sample_consistency(den, den.process.sigma_max * x_T, steps=steps, generator=gen)  # noqa: E731
    elif flow:  # a flow model (11) or a progressive-distillation student (12, its own number of steps) by its ODE
        steps = steps or (cfg["teacher_steps"] // 2 if distill == "pd" else FLOW_STEPS)
        how = f"Euler on the flow's ODE, {steps} step{'s' if steps > 1 else ''} uniform in t"
        sample = lambda x_T: sample_euler(den, x_T, steps=steps)  # noqa: E731
    else:  # a diffusion model by DDPM
        steps = steps or sched.T
        how = f"DDPM ancestral, {steps} steps (linspace spacing), fixed_small variance"
        sample = lambda x_T: sample_default(den, x_T, steps=steps, generator=gen)  # noqa: E731
    samples = []
    for i in range(0, n, batch):
        x_T = torch.randn((min(batch, n - i), *shape), generator=gen)
        x = sample(x_T)
        samples.append(x.clamp(-1, 1))
        print(f"sampled {i + len(samples[-1])}/{n}", flush=True)
    x_gen = torch.cat(samples)
    if cfg["pad_to_32"]:
        x_gen = x_gen[:, :, 2:30, 2:30]
    x_test, _ = data.load_images(cfg["dataset"], "test")
    x_train, _ = data.load_images(cfg["dataset"], "train")
    grid = image_grid(x_gen[:64], nrow=8)
    import matplotlib.pyplot as plt

    if checkpoint.is_run_folder(name):  # a run in progress: its grid beside its checkpoints, at its step
        plt.imsave(Path(name) / f"evaluated-{card['step']:07d}.png", grid.numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        plt.imsave(data.data_dir() / "models" / f"{name}-samples.png", grid.numpy(), cmap="gray", vmin=0, vmax=1)
        checkpoint.relist(data.data_dir(), [f"models/{name}-samples.png"])
    real = torch.Generator().manual_seed(seed)  # the real images' draws do not depend on what the sampler consumed
    f_test = extract_features(classifier, x_test)
    fid, fid_sd = fid_with_spread(extract_features(classifier, x_gen), f_test, n_boot=20, generator=real)
    floor, floor_sd = fid_floor(extract_features(classifier, x_train), f_test, n, FLOOR_DRAWS, generator=real)
    test_idx = torch.randperm(len(x_test), generator=real)[:n]
    return {
        "fid_classifier": fid,
        "fid_classifier_bootstrap_sd": round(fid_sd, 4),
        "fid_floor_train_vs_test": floor,
        "fid_floor_sd": round(floor_sd, 4),
        "confident_share": round(confident_share(classifier, x_gen), 4),
        "confident_share_test": round(confident_share(classifier, x_test[test_idx]), 4),
        "class_shares": [round(c, 4) for c in class_shares(classifier, x_gen)],
        "fid_settings": (
            f"{n} samples vs the {len(x_test)} {cfg['dataset']} test images, features: {classifier_name} penultimate layer "
            f"(its sd: 20 bootstrap resamples of the samples); floor: {n} random training images vs the same "
            f"test images, mean and sd over {FLOOR_DRAWS} independent draws; sampler: {how}, seed {seed}; "
            f"confident: the classifier's top probability >= {CONFIDENT} (of the samples, and of {n} random test "
            f"images); class shares: the samples' predicted classes 0..9"
        ),
    }


@torch.no_grad()
def evaluate_editing(name: str, classifier_name: str, n: int, steps: int, seed: int) -> dict:
    """Notebook 08's models on the first n test images, DDPM with ``steps`` steps, the same noise for each method.
    Inpainting, per preset mask: the classifier's agreement with the original digit, the excess seam (seam of the
    output minus the original's) and the mean |error| on the known pixels, beside replacement with the base model.
    ControlNet: the IoU of each sample's edge map with its control, with the control and without it (the base)."""
    model, sched, card = checkpoint.load_any(name)
    den = card_denoiser(card, model, sched)  # read as its card's prediction says
    classifier = checkpoint.load_any(classifier_name)[0]
    x, y = data.load_images(card["config"]["dataset"], "test", limit=n)

    def scores(out, mask=None) -> dict:
        agree = (classifier(out).argmax(1) == y).float().mean().item()
        if mask is None:
            return {"agreement": round(agree, 4), "edge_iou": round(iou(edge_map(out), edge_map(x)).mean().item(), 4)}
        known = ((out - x).abs() * (1 - mask)).sum().item() / ((1 - mask).sum().item() * len(x))
        excess = (seam(out, mask) - seam(x, mask)).mean().item()
        return {"agreement": round(agree, 4), "seam": round(excess, 4), "known_abs_error": round(known, 5)}

    def noise() -> torch.Tensor:
        return torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(seed + 1)

    base, _, base_card = checkpoint.load_any(card["config"]["base_of"])  # the U-Net it was fine-tuned from / steers
    if card["config"]["edit"] == "inpaint":
        out, base_den = {}, card_denoiser(base_card, base, sched)
        for kind in PRESETS:
            m = preset_mask(kind)
            out[kind] = {
                "trained": scores(sample_ddpm(den, noise(), None, steps, generator=gen(), mask=m, known=x), m),
                "replacement": scores(sample_inpaint(base_den, x, m, None, steps, generator=gen()), m),
            }
    else:  # the ControlNet's own frozen copy of the base, read as the base's card says
        frozen = card_denoiser(base_card, model.base, sched)
        out = {
            "with_control": scores(sample_ddpm(den, noise(), None, steps, generator=gen(), control=edge_map(x))),
            "without_control": scores(sample_ddpm(frozen, noise(), None, steps, generator=gen())),
        }
    return {"editing": out, "editing_settings": f"the first {n} test images, DDPM {steps} steps, seed {seed}"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument(
        "--classifier",
        default=None,
        help="the classifier that judges and gives FID features: a shipped name or a run folder (default: the dataset's)",
    )
    parser.add_argument("--n", type=int, default=1000, help="number of generated samples for FID")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampler steps (default: all T of DDPM; 50 Euler steps for a flow; a distilled model's own)",
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ws", default=",".join(map(str, GUIDANCE_WS)), help="guidance scales for the sweep")
    parser.add_argument("--n-per-class", type=int, default=50, help="guided samples per class (sweep)")
    parser.add_argument("--w", type=float, default=3.0, help="guidance scale for text prompts")
    parser.add_argument("--n-per-prompt", type=int, default=20, help="samples per text prompt")
    parser.add_argument("--prior", default=None, help="the unCLIP prior to sample a decoder with (default: its name)")
    parser.add_argument(
        "--class-prompts",
        action="store_true",
        help="a pixel-space text U-Net: score class prompts as the pipelines are",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    card = checkpoint.read_any_card(args.name)
    cfg = card["config"]
    if cfg["dataset"].startswith("fsdd"):  # notebook 09's spoken digits
        clf, ws = args.classifier or "fsdd-classifier", [float(w) for w in args.ws.split(",")]
        if cfg["kind"] == "classifier":
            metrics = evaluate_audio_classifier(args.name)
        elif cfg["kind"] == "vocoder":
            metrics = evaluate_vocoder(args.name, clf, min(args.n, 300), args.seed)
        else:
            metrics = evaluate_speech(args.name, "fsdd-vocoder", clf, ws, args.n_per_class, args.steps or 25, args.seed)
    elif cfg["kind"] == "classifier":
        model, _, _ = checkpoint.load_any(args.name)
        metrics = {
            "test_accuracy": test_accuracy(model, cfg["dataset"], cfg["pad_to_32"]),
            # the ceiling of "share as requested" for a model that samples the training data perfectly
            "train_accuracy": share_as_requested(
                model, *data.load_images(cfg["dataset"], "train", pad_to_32=cfg["pad_to_32"])
            ),
        }
    elif cfg["kind"] == "noisy-classifier":
        model, sched, _ = checkpoint.load_any(args.name)
        metrics = {
            "test_accuracy_at_t": noisy_test_accuracy(model, sched, cfg["dataset"], seed=args.seed),
            "accuracy_settings": f"the {cfg['dataset']} test set noised by q_sample at each t, one noise draw (seed {args.seed})",
        }
    elif cfg["kind"] == "contrastive":
        metrics = evaluate_contrastive(args.name)
    elif cfg["kind"] == "prior":
        raise SystemExit(f"{args.name} is an unCLIP prior: evaluate its decoder with --prior {args.name}")
    else:
        clf = args.classifier or {"mnist": "mnist-classifier", "fashion-mnist": "fashion-classifier"}[cfg["dataset"]]
        if cfg["kind"] == "autoencoder":
            metrics = evaluate_autoencoder(args.name, clf)
        elif cfg.get("edit"):
            metrics = evaluate_editing(args.name, clf, min(args.n, 200), args.steps or 50, args.seed)
        elif cfg.get("latent_of") or args.class_prompts:
            metrics = evaluate_pipeline(
                args.name, clf, args.w, args.n_per_prompt, args.steps or 50, args.seed, args.prior
            )
        elif cfg["unet"].get("num_classes"):
            ws = [float(w) for w in args.ws.split(",")]
            metrics = guidance_sweep(args.name, clf, ws, args.n_per_class, args.steps or 50, args.seed)
        elif cfg["unet"].get("context_dim"):
            metrics = text_prompt_scores(args.name, clf, args.w, args.n_per_prompt, args.steps or 50, args.seed)
        else:
            metrics = evaluate_diffusion(args.name, clf, args.n, args.steps, args.batch, args.seed)
    metrics |= {"eval_wall_time_s": round(time.perf_counter() - start, 1), "eval_hardware": checkpoint.hardware()}
    if checkpoint.is_run_folder(args.name):  # a run in progress: kept beside it, one entry per evaluation
        path = Path(args.name) / "evaluations.json"
        done = json.loads(path.read_text()) if path.exists() else []
        entry = {
            "step": card["step"],
            "state_sha256": card["state_sha256"],
            "command": " ".join(["python -m dlib.evaluate", *(sys.argv[1:] if argv is None else argv)]),
        }
        checkpoint.atomic_save_json(done + [entry | metrics], path)
    else:
        checkpoint.update_card(args.name, {"metrics": card.get("metrics", {}) | metrics})
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
