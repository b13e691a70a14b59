"""Samples of any shipped generative model, by name, ready to score (notebook 10 and ``dlib.evaluate``).

    generate("mnist-unet", 500, sampler="dpm_solver", steps=20)      # unconditional: any sampler of notebook 05
    generate("mnist-cond-unet", 500, w=3.0)                          # class labels 0..9, balanced, guided
    generate("mnist-text-unet", 500)                                 # one class prompt per class, balanced
    generate("fashion-latent-unet", 500)                             # LatentPipeline (notebook 07)
    generate("fashion-unclip-decoder", 500)                          # UnCLIPPipeline with its prior

Conditional models get the classes in equal shares (labels k = 0..9, or the class prompt of k), so that the
samples of every model are scored against the same balanced test set and ``labels`` says what was asked
for. Guidance is classifier-free in the "cond" convention (w = 0: the plain conditional model). Images
come back in [-1, 1] at the dataset's own 28 x 28 (a model trained on padded 32 x 32 images is cropped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from dlib import checkpoint
from dlib.captions import DIGITS, GARMENTS, TRAINING_WORDING
from dlib.config import card_denoiser
from dlib.pipelines import LatentPipeline, UnCLIPPipeline, sample_guided
from dlib.samplers import SAMPLERS
from dlib.text import TextEncoder
from dlib.utils import CountCalls


def image_shape(card: dict) -> tuple[int, int, int]:
    """(C, H, W) of the images a shipped model was trained on (cards before it was recorded: MNIST-sized)."""
    if "image_shape" in card:
        return tuple(card["image_shape"])
    size = 32 if card["config"]["pad_to_32"] else 28
    return (card["config"]["unet"]["in_channels"], size, size)


def class_prompts(dataset: str) -> list[str]:
    """One prompt per class in a training wording of ``dlib.captions``: "the digit N", "a photo of a GARMENT"."""
    if dataset == "mnist":
        return [TRAINING_WORDING.format(name=d) for d in DIGITS]
    return [f"a photo of a {g}" for g in GARMENTS]


def kind_of(card: dict) -> str:
    """ "unconditional", "class", "text" (pixel space), "latent" (LatentPipeline) or "unclip" (decoder + prior)."""
    cfg = card["config"]
    if cfg.get("kind", "diffusion") != "diffusion":
        raise ValueError(f"{card.get('name', 'this model')} is a {cfg['kind']} model, not an image generator")
    if cfg.get("embed_of"):
        return "unclip"
    if cfg.get("latent_of"):
        return "latent"
    unet = cfg["unet"]
    return "class" if unet.get("num_classes") else "text" if unet.get("context_dim") else "unconditional"


@dataclass
class Generated:
    images: torch.Tensor  # (N, C, 28, 28) in [-1, 1]
    labels: torch.Tensor | None  # (N,) the class each sample was asked for; None for an unconditional model
    prompts: list[str] | None  # the prompt of each sample (text, latent and unCLIP models)
    nfe: float  # network calls per sample (a guided call on a doubled batch counts once; unCLIP: prior + decoder)
    seconds: float  # wall time of the sampling
    settings: str  # how the samples were drawn, in words


@torch.no_grad()
def generate(
    name: str,
    n: int,
    *,
    sampler: str = "ddim",
    steps: int | None = 50,
    w: float = 3.0,
    seed: int = 0,
    batch: int = 250,
    device: torch.device | str = "cpu",
    prior: str | None = None,
) -> Generated:
    """``n`` samples of the shipped model ``name``, or of a training run folder's EMA (see the module docstring). ``steps=None`` runs DDPM over
    all T steps; batch b of ``batch`` samples starts from a generator seeded ``seed + b``, so a prefix of a
    larger run is the smaller run."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {sorted(SAMPLERS)}")
    if n < 1 or batch < 1:
        raise ValueError(f"n and batch must be positive, got n={n}, batch={batch}")
    card = checkpoint.read_any_card(name)
    kind, cfg = kind_of(card), card["config"]
    labels = None if kind == "unconditional" else (torch.arange(n) * 10 // n)  # balanced, grouped by class
    prompts = None if kind in ("unconditional", "class") else [class_prompts(cfg["dataset"])[k] for k in labels]
    start = time.perf_counter()
    if kind in ("latent", "unclip"):
        pipe = (
            LatentPipeline.load(name, device)
            if kind == "latent"
            else UnCLIPPipeline.load(prior or name.replace("decoder", "prior"), name, device)
        )
        nets = [pipe.unet] if kind == "latent" else [pipe.prior, pipe.decoder]
        counters = [CountCalls(m) for m in nets]
        if kind == "latent":
            pipe.unet = counters[0]
        else:
            pipe.prior, pipe.decoder = counters
        draw = lambda i, j, gen: pipe(prompts[i:j], w=w, steps=steps, sampler=sampler, generator=gen)  # noqa: E731
    else:
        model, sched, _ = checkpoint.load_any(name, device)
        counters = [CountCalls(model)]
        shape = image_shape(card)
        if kind == "unconditional":
            den = card_denoiser(card, counters[0], sched)

            def draw(i, j, gen):
                x_T = torch.randn((j - i, *shape), generator=gen).to(device)
                return SAMPLERS[sampler](den, x_T, steps=steps, generator=gen)
        else:
            encoder = TextEncoder(device) if kind == "text" else None

            def draw(i, j, gen):
                if kind == "class":
                    cond = {"y": labels[i:j].to(device)}
                else:
                    context, mask = encoder(prompts[i:j])
                    cond = {"context": context, "context_mask": mask}
                return sample_guided(
                    counters[0], sched, shape, cond, w=w, steps=steps, sampler=sampler,
                    prediction=cfg["prediction"], generator=gen,
                )  # fmt: skip

    out = []
    for b, i in enumerate(range(0, n, batch)):
        out.append(draw(i, min(i + batch, n), torch.Generator().manual_seed(seed + b)).clamp(-1, 1).cpu())
    images = torch.cat(out)
    if images.shape[-1] == 32:  # trained on padded images: back to the dataset's 28 x 28
        images = images[..., 2:30, 2:30]
    batches = len(out)
    nfe = sum(c.calls for c in counters) / batches
    how = f"{sampler} {steps if steps is not None else 'all T'} steps"
    if kind != "unconditional":
        how += f", classifier-free guidance w={w} ('cond' convention), classes balanced"
    if kind == "unclip":
        how += f", prior {prior or name.replace('decoder', 'prior')} at w=1"
    settings = f"{n} samples of {name}: {how}, batches of {batch} from seeds {seed}.."
    return Generated(images, labels, prompts, nfe, time.perf_counter() - start, settings)
