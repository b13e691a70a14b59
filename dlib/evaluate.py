"""Measure a shipped model and record the numbers in its card.

    python -m dlib.evaluate mnist-classifier          # test accuracy
    python -m dlib.evaluate mnist-noisy-classifier    # test accuracy on x_t at several noise levels t
    python -m dlib.evaluate mnist-unet --n 1000       # classifier-feature FID of DDPM samples vs the test set,
                                                      # next to the real-vs-real floor measured the same way

Every number in a card comes from this command; the card records the command's settings,
wall time and hardware.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from dlib import checkpoint, data
from dlib.forward import q_sample
from dlib.metrics import classifier_fid
from dlib.plotting import image_grid
from dlib.samplers import sample_ddpm
from dlib.train import load_pretrained


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, dataset: str, pad_to_32: bool = False) -> float:
    x, y = data.load_images(dataset, "test", pad_to_32=pad_to_32)
    logits = torch.cat([model(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    return (logits.argmax(1) == y).float().mean().item()


NOISY_ACCURACY_TS = (0, 100, 250, 500, 750, 999)


@torch.no_grad()
def noisy_test_accuracy(model: torch.nn.Module, sched, dataset: str, ts=NOISY_ACCURACY_TS, seed: int = 0) -> dict:
    """Accuracy of p(y | x_t, t) on the test set noised to each t (the same noise for every t)."""
    x, y = data.load_images(dataset, "test")
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    accuracy = {}
    for t in ts:
        t_batch = torch.full((len(x),), t)
        x_t = q_sample(x, t_batch, sched, eps)
        logits = torch.cat([model(x_t[i : i + 1000], t_batch[i : i + 1000]) for i in range(0, len(x), 1000)])
        accuracy[str(t)] = round((logits.argmax(1) == y).float().mean().item(), 4)
    return accuracy


def evaluate_diffusion(name: str, classifier_name: str, n: int, steps: int, batch: int, seed: int) -> dict:
    model, sched, card = load_pretrained(name)
    classifier, _, _ = load_pretrained(classifier_name)
    cfg = card["config"]
    gen = torch.Generator().manual_seed(seed)
    shape = (1, 32, 32) if cfg["pad_to_32"] else (1, 28, 28)
    samples = []
    for i in range(0, n, batch):
        x_T = torch.randn((min(batch, n - i), *shape), generator=gen)
        samples.append(sample_ddpm(model, x_T, sched, steps, spacing="linspace", generator=gen).clamp(-1, 1))
        print(f"sampled {i + len(samples[-1])}/{n}", flush=True)
    x_gen = torch.cat(samples)
    if cfg["pad_to_32"]:
        x_gen = x_gen[:, :, 2:30, 2:30]
    x_test, _ = data.load_images(cfg["dataset"], "test")
    x_train, _ = data.load_images(cfg["dataset"], "train")
    floor_idx = torch.randperm(len(x_train), generator=gen)[:n]
    grid = image_grid(x_gen[:64], nrow=8)
    import matplotlib.pyplot as plt

    plt.imsave(data.data_dir() / "models" / f"{name}-samples.png", grid.numpy(), cmap="gray", vmin=0, vmax=1)
    checkpoint.relist(data.data_dir(), [f"models/{name}-samples.png"])
    return {
        "fid_classifier": classifier_fid(classifier, x_gen, x_test),
        "fid_floor_train_vs_test": classifier_fid(classifier, x_train[floor_idx], x_test),
        "fid_settings": (
            f"{n} samples vs the {len(x_test)} {cfg['dataset']} test images, features: {classifier_name} penultimate layer; "
            f"floor: {n} random training images vs the same test images; sampler: DDPM ancestral, "
            f"{steps or sched.T} steps (linspace spacing), fixed_small variance, seed {seed}"
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument(
        "--classifier", default=None, help="feature network for FID (default: the dataset's classifier)"
    )
    parser.add_argument("--n", type=int, default=1000, help="number of generated samples for FID")
    parser.add_argument("--steps", type=int, default=None, help="DDPM steps (default: all T)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    card = checkpoint.read_card(args.name)
    cfg = card["config"]
    if cfg["kind"] == "classifier":
        model, _, _ = load_pretrained(args.name)
        metrics = {"test_accuracy": test_accuracy(model, cfg["dataset"], cfg["pad_to_32"])}
    elif cfg["kind"] == "noisy-classifier":
        model, sched, _ = load_pretrained(args.name)
        metrics = {
            "test_accuracy_at_t": noisy_test_accuracy(model, sched, cfg["dataset"], seed=args.seed),
            "accuracy_settings": f"the {cfg['dataset']} test set noised by q_sample at each t, one noise draw (seed {args.seed})",
        }
    else:
        default = {"mnist": "mnist-classifier", "fashion-mnist": "fashion-classifier"}[cfg["dataset"]]
        metrics = evaluate_diffusion(args.name, args.classifier or default, args.n, args.steps, args.batch, args.seed)
    metrics |= {"eval_wall_time_s": round(time.perf_counter() - start, 1), "eval_hardware": checkpoint.hardware()}
    checkpoint.update_card(args.name, {"metrics": card.get("metrics", {}) | metrics})
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
