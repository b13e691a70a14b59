"""Measurements of notebook 07's models, recorded in their cards by ``python -m dlib.evaluate NAME``.

autoencoder      reconstruction error and the classifier's accuracy on reconstructions of the test set
contrastive      zero-shot accuracy and retrieval from one prompt per class
text-to-image    class prompts through a latent pipeline, unCLIP, or a pixel-space text U-Net, all sampled
                 alike: share classified as requested, and classifier-feature FID
"""

from __future__ import annotations

import torch

from dlib import checkpoint, data
from dlib.generate import class_prompts, generate
from dlib.metrics import classifier_fid, predictions, share_as_requested


@torch.no_grad()
def evaluate_autoencoder(name: str, classifier_name: str) -> dict:
    """Reconstructions of the whole test set (posterior means decoded): L1 error, the classifier's accuracy on
    originals and reconstructions, the compression, and the latents' scale."""
    ae, _, card = checkpoint.load_any(name)
    classifier, _, _ = checkpoint.load_any(classifier_name)
    x, y = data.load_images(card["config"]["dataset"], "test")
    means = torch.cat([ae.encode(x[i : i + 500]).mean for i in range(0, len(x), 500)])
    rec = torch.cat([ae.decode(means[i : i + 500]).clamp(-1, 1) for i in range(0, len(x), 500)])
    return {
        "test_l1": round((rec - x).abs().mean().item(), 4),
        "accuracy_originals": round(share_as_requested(classifier, x, y), 4),
        "accuracy_reconstructions": round(share_as_requested(classifier, rec, y), 4),
        "compression": f"{tuple(x.shape[1:])} -> {tuple(means.shape[1:])}: {x[0].numel() / means[0].numel():g}x fewer numbers",
        "latent_std_test": round(means.std().item(), 4),
        "eval_settings": f"the {len(x)} test images, posterior means decoded; classifier {classifier_name}",
    }


@torch.no_grad()
def evaluate_contrastive(name: str) -> dict:
    """Zero-shot accuracy on the test set from one class prompt per class, and retrieval: the share of the 10
    test images nearest to each class prompt that are of that class."""
    from dlib.text import TextEncoder

    clip, _, card = checkpoint.load_any(name)
    x, y = data.load_images(card["config"]["dataset"], "test")
    prompts = class_prompts(card["config"]["dataset"])
    images = torch.cat([clip.image_embedding(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    sim = images @ clip.text_embedding(TextEncoder().sentences(prompts)).T
    top = sim.topk(10, dim=0).indices
    return {
        "zero_shot_accuracy": round((sim.argmax(1) == y).float().mean().item(), 4),
        "retrieval_precision_at_10": round((y[top] == torch.arange(10)).float().mean().item(), 4),
        "eval_settings": f"the {len(x)} test images; prompts {prompts[0]!r}, ...",
    }


def evaluate_pipeline(
    name: str, classifier_name: str, w: float, n_per_prompt: int, steps: int, seed: int, prior: str | None
):
    """Share of samples classified as the class its prompt names (one training wording per class) and their
    classifier-feature FID against the test set, for a latent text U-Net (``LatentPipeline``), an unCLIP decoder
    with its prior (``UnCLIPPipeline``) or a pixel-space text U-Net, all sampled alike (DDIM, guided)."""
    card = checkpoint.read_any_card(name)
    classifier, _, _ = checkpoint.load_any(classifier_name)
    prompts = class_prompts(card["config"]["dataset"])
    # batch k holds the n_per_prompt samples of class k, drawn with a generator seeded seed + k
    g = generate(name, 10 * n_per_prompt, sampler="ddim", steps=steps, w=w, seed=seed, batch=n_per_prompt, prior=prior)
    x, labels = g.images, g.labels
    per_class = (predictions(classifier, x) == labels).float().reshape(10, n_per_prompt).mean(1)
    x_test = data.load_images(card["config"]["dataset"], "test")[0]
    return {
        "class_prompts_share_as_requested": round(per_class.mean().item(), 4),
        "class_prompts_fid": round(classifier_fid(classifier, x, x_test), 2),
        "per_class": [round(v, 3) for v in per_class.tolist()],
        "pipeline_settings": (
            f"{n_per_prompt} samples per class prompt ({prompts[0]!r}, ...), DDIM {steps} steps, w={w} ('cond' "
            f"convention){', prior ' + (prior or name.replace('decoder', 'prior')) + ' at w=1' if card['config'].get('embed_of') else ''}, seeds {seed}+class; "
            f"scored by {classifier_name}; FID of all {10 * n_per_prompt} samples against the {len(x_test)} test images"
        ),
    }
