"""Scores of samples alone (no reference set): Inception Score and CLIP score. Notebook 10.

Inception Score (Salimans et al. 2016): with p(y|x) a classifier's class probabilities and p(y)
their mean over the samples,

    IS = exp( E_x KL( p(y|x) || p(y) ) ),

between 1 (every prediction the same, or every prediction uniform) and K, the number of classes
(confident predictions, spread evenly over the classes). As in Salimans et al.'s code, the samples
are cut into ``splits`` equal parts (the remainder dropped) and the mean and standard deviation
of the parts' scores are reported. The shipped Inception-v3 has no classification head, so here IS
takes any classifier's probabilities: the MNIST classifier gives a digit IS, at most 10 (the
SC09 "IS with a digit classifier" of Goel et al. 2022 is computed the same way).

CLIP score (Hessel et al. 2021, as torchmetrics scales it): 100 max(cos(image, text), 0) per
image-caption pair, averaged, from the embeddings of a contrastive image-text encoder (notebook 07).
"""

from __future__ import annotations

import torch

from dlib.metrics.checks import check_features

PROBABILITY_TOLERANCE = 1e-3  # rows must sum to 1 within this (float32 softmax round-off passes)


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(mean, std over splits) of exp(E_x KL(p(y|x) || p(y))), from class probabilities (N, K)."""
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    check_features(probs, "probs", min_n=splits)
    p = probs.double()
    if bool((p < 0).any()) or bool(((p.sum(1) - 1).abs() > PROBABILITY_TOLERANCE).any()):
        raise ValueError(
            f"probs must be class probabilities (N, K): non-negative rows that sum to 1, got row sums in "
            f"[{p.sum(1).min():.4g}, {p.sum(1).max():.4g}] and minimum {p.min():.4g}; pass logits.softmax(1)"
        )
    part = len(p) // splits
    scores = []
    for s in range(splits):
        p_yx = p[s * part : (s + 1) * part]  # (part, K)
        p_y = p_yx.mean(0, keepdim=True)  # (1, K)
        kl = (torch.xlogy(p_yx, p_yx) - torch.xlogy(p_yx, p_y)).sum(1)  # (part,), 0 log 0 = 0
        scores.append(kl.mean().exp())
    v = torch.stack(scores)
    return float(v.mean()), float(v.std(correction=0))


def clip_score(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> float:
    """Mean over pairs of 100 max(cos(image_i, text_i), 0), from embeddings (N, D) of matching pairs."""
    check_features(image_embeddings, "image_embeddings")
    check_features(text_embeddings, "text_embeddings")
    if image_embeddings.shape != text_embeddings.shape:
        raise ValueError(
            f"image_embeddings {tuple(image_embeddings.shape)} and text_embeddings {tuple(text_embeddings.shape)} "
            "must have the same shape (N, D): one caption per image, from one encoder"
        )
    norms = torch.stack([image_embeddings.norm(dim=1), text_embeddings.norm(dim=1)])  # (2, N)
    if bool((norms == 0).any()):
        raise ValueError("an embedding is all zeros: its cosine similarity is undefined")
    image_embeddings, text_embeddings = image_embeddings.detach().double(), text_embeddings.detach().double()
    cos = torch.nn.functional.cosine_similarity(image_embeddings, text_embeddings, dim=1)  # (N,)
    return float((100 * cos.clamp(min=0)).mean())
