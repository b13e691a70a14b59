"""Measurements of the conditional models, recorded in their cards by ``python -m dlib.evaluate NAME``.

guidance sweep   class-conditional U-Nets: for each guidance scale w, the share of samples classified as the
                 requested class and their classifier-feature FID (notebook 06)
text prompts     text-conditional U-Nets: held-out paraphrase prompts (and a training wording), scored by a
                 classifier (notebook 06)
"""

from __future__ import annotations

import torch

from dlib import checkpoint, data
from dlib.generate import image_shape
from dlib.guidance import guided_samples
from dlib.metrics import classifier_fid, predictions, share_as_requested

GUIDANCE_WS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)


def guidance_sweep(name: str, classifier_name: str, ws, n_per_class: int, steps: int, seed: int) -> dict:
    """For each w: share of guided samples the classifier assigns to the requested class, and their
    classifier-feature FID against the test set. Every w starts from the same noise (seed)."""
    model, sched, card = checkpoint.load_any(name)
    classifier, _, _ = checkpoint.load_any(classifier_name)
    x_test, _ = data.load_images(card["config"]["dataset"], "test")
    labels = torch.arange(10).repeat_interleave(n_per_class)
    share, fid, pred = [], [], card["config"]["prediction"]
    for w in ws:
        x = guided_samples(
            model, sched, w, steps, torch.Generator().manual_seed(seed), image_shape(card), prediction=pred, y=labels
        )
        share.append(round(share_as_requested(classifier, x, labels), 4))
        fid.append(round(classifier_fid(classifier, x, x_test), 2))
        print(f"w={w}: share as requested {share[-1]:.4f}, FID {fid[-1]:.2f}", flush=True)
    return {
        "guidance_sweep": {"w": list(ws), "share_as_requested": share, "fid_classifier": fid},
        "guidance_settings": (
            f"classifier-free guidance, 'cond' convention (w=0: conditional model, no guidance); {n_per_class} samples "
            f"per class, DDPM {steps} steps (linspace), the same noise (seed {seed}) at every w; classifier and FID "
            f"features: {classifier_name}; FID against the {len(x_test)} test images"
        ),
    }


def text_prompt_scores(name: str, classifier_name: str, w: float, n_per_prompt: int, steps: int, seed: int) -> dict:
    """Share of samples classified as the intended class, for the held-out paraphrases of
    ``dlib.captions.HELD_OUT`` (never seen in training) and, for comparison, a training wording."""
    from dlib.captions import DIGITS, HELD_OUT, TRAINING_WORDING
    from dlib.text import TextEncoder

    model, sched, card = checkpoint.load_any(name)
    classifier, _, _ = checkpoint.load_any(classifier_name)
    encoder = TextEncoder()
    sets = {"held_out": list(HELD_OUT[card["config"]["dataset"]])}
    if card["config"]["dataset"] == "mnist":
        sets["training_wording"] = [(TRAINING_WORDING.format(name=DIGITS[d]), d) for d in range(10)]
    out = {}
    for kind, prompts in sets.items():
        captions = [c for c, _ in prompts for _ in range(n_per_prompt)]
        labels = torch.tensor([d for _, d in prompts]).repeat_interleave(n_per_prompt)
        context, mask = encoder(captions)
        x = guided_samples(
            model,
            sched,
            w,
            steps,
            torch.Generator().manual_seed(seed),
            image_shape(card),
            prediction=card["config"]["prediction"],
            context=context,
            context_mask=mask,
        )
        per_prompt = (predictions(classifier, x) == labels).float().reshape(len(prompts), n_per_prompt).mean(1)
        out[kind] = {
            "share_as_requested": round(per_prompt.mean().item(), 4),
            "per_prompt": {c: round(v, 3) for (c, _), v in zip(prompts, per_prompt.tolist(), strict=True)},
        }
        print(kind, out[kind]["share_as_requested"], flush=True)
    return {
        "text_prompts": out,
        "text_settings": (
            f"{n_per_prompt} samples per prompt, classifier-free guidance w={w} ('cond' convention), DDPM {steps} steps "
            f"(linspace), seed {seed}; scored by {classifier_name}"
        ),
    }
