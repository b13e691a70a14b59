"""Conditioning of a training batch: labels and prompts, some dropped for classifier-free guidance. Notebook 06.

A conditional network learns the unconditional model too when a share ``p`` of each batch's labels
(or prompts) is replaced by a learned "no condition" token (Ho & Salimans 2021, Algorithm 1). Each
function returns the keywords the network takes (``y``, or ``context`` and ``context_mask``). All
draws come from the run's generator, so a resumed run repeats them.
"""

from __future__ import annotations

import torch


def drop_labels(y: torch.Tensor, p: float, null_label: int, gen: torch.Generator) -> torch.Tensor:
    """Replace each label by ``null_label`` with probability p, so one network learns both the
    conditional and the unconditional model (Ho & Salimans 2021, Algorithm 1)."""
    drop = torch.rand(y.shape, generator=gen, device=gen.device).to(y.device) < p
    return torch.where(drop, torch.full_like(y, null_label), y)


def drop_context(model, context: torch.Tensor, context_mask: torch.Tensor, p: float, gen: torch.Generator) -> dict:
    """The text version of ``drop_labels``: each prompt becomes the model's learned null prompt
    (``model.null_text``, a text-conditional ``dlib.nets.UNet``) with probability p.

    context (B, L, D) and context_mask (B, L) -> dict(context=..., context_mask=...) of the same shapes.
    """
    drop = (torch.rand(len(context), generator=gen, device=gen.device) < p).to(context.device)[:, None]  # (B, 1)
    null = model.null_text(len(context), context.shape[1])
    return {
        "context": torch.where(drop[..., None], null["context"], context),
        "context_mask": torch.where(drop, null["context_mask"], context_mask),
    }


class TextCondition:
    """Captions for a batch (``dlib.captions``, drawn with the run's generator), encoded by the frozen
    sentence encoder (``dlib.text``), a share ``p_uncond`` replaced by the null prompt.

    ``TextCondition(dataset, p_uncond, x_all, device)(model, x, y, gen) -> dict(context, context_mask)``;
    ``x_all`` (the training images) fixes the scale of the measured attribute words.
    """

    def __init__(self, dataset: str, p_uncond: float, x_all: torch.Tensor, device: torch.device):
        from dlib.captions import AttributeScale
        from dlib.text import TextEncoder

        self.dataset, self.p_uncond = dataset, p_uncond
        self.encoder, self.scale = TextEncoder(device), AttributeScale.fit(x_all)

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> dict:
        from dlib.captions import captions

        context, mask = self.encoder(captions(y.cpu(), x.cpu(), self.dataset, self.scale, gen))
        return drop_context(model, context, mask, self.p_uncond, gen)


class EmbeddingCondition:
    """unCLIP's conditions (notebook 07), from a frozen contrastive model ``clip`` (``dlib.nets.ContrastiveModel``),
    as a one-token context (B, 1, D), a share ``p_uncond`` replaced by the network's learned null:

    - ``source="image"``: each image's own embedding; the decoder learns p(x | image embedding);
    - ``source="text"``: the embedding of a caption drawn for each image; the prior learns
      p(image embedding | text embedding).
    """

    def __init__(self, clip, source: str, p_uncond: float, dataset: str, x_all: torch.Tensor, device: torch.device):
        if source not in ("image", "text"):
            raise ValueError(f"EmbeddingCondition: source must be 'image' or 'text', got {source!r}")
        self.clip, self.source, self.p_uncond, self.device = clip, source, p_uncond, device
        self.sentences = SentenceCondition(dataset, x_all, device) if source == "text" else None

    @torch.no_grad()
    def embed(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.source == "image":
            return self.clip.image_embedding(x.to(self.device))
        return self.clip.text_embedding(self.sentences(None, x, y, gen)["sentences"].to(self.device))

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> dict:
        e = self.embed(x, y, gen)[:, None]  # (B, 1, D)
        mask = torch.ones(e.shape[:2], dtype=torch.bool, device=e.device)
        return drop_context(model, e, mask, self.p_uncond, gen)


class SentenceCondition:
    """Captions for a batch encoded to the frozen encoder's pooled sentence vectors, for the contrastive
    model (notebook 07): ``(model, x, y, gen) -> dict(sentences=(B, 384), caption_id=(B,))``, where equal
    ``caption_id`` marks equal captions (``dlib.losses.ContrastiveLoss`` counts them all as positives)."""

    def __init__(self, dataset: str, x_all: torch.Tensor, device: torch.device):
        from dlib.captions import AttributeScale
        from dlib.text import TextEncoder

        self.dataset, self.device = dataset, device
        self.encoder, self.scale = TextEncoder(device), AttributeScale.fit(x_all)

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> dict:
        from dlib.captions import captions

        texts = captions(y.cpu(), x.cpu(), self.dataset, self.scale, gen)
        ids = {c: i for i, c in enumerate(dict.fromkeys(texts))}
        return {"sentences": self.encoder.sentences(texts), "caption_id": torch.tensor([ids[c] for c in texts])}
