"""What a training run's batches are made of: its training data and each batch's conditioning keywords.

``load_training_data(cfg)`` gives every training example and label of a ``TrainConfig``; ``build_condition``
the keywords a batch's loss takes (``dlib.losses``): labels, captions, masks, edge maps, CLIP embeddings,
or a vocoder's mel spectrograms. Both are called by ``dlib.train``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlib import audio, data
from dlib.conditioning import EmbeddingCondition, SentenceCondition, TextCondition, drop_labels
from dlib.config import TrainConfig
from dlib.controls import edge_map, random_masks

# spoken digits (notebook 09); "fsdd-mel:SPEAKER" trains on the other five speakers (dlib.data.load_fsdd)
AUDIO_DATA = {"fsdd-mel": audio.mel_images, "fsdd-wave": lambda split, speaker: (audio.segments(split), None)}


def build_condition(
    cfg: TrainConfig, x_all: torch.Tensor, device: torch.device, clip: torch.nn.Module | None = None
) -> Callable[..., dict]:
    """``condition(model, x, y, gen) -> dict``: the keywords a batch's loss takes (``dlib.losses``).

    Classifiers get their targets ``y``; a class-conditional U-Net its labels with a share ``p_uncond``
    dropped; a text-conditional one encoded captions (``TextCondition``); the unCLIP stages the frozen ``clip``
    model's embeddings (``EmbeddingCondition``: the image's for the decoder, a caption's for the prior);
    anything else nothing.
    """
    if cfg.embed_of is not None:
        if clip is None:
            raise ValueError(f"{cfg.name}: embed_of={cfg.embed_of!r} needs the contrastive model passed as clip")
        source = "text" if cfg.kind == "prior" else "image"
        return EmbeddingCondition(clip, source, cfg.p_uncond, cfg.dataset, x_all, device)
    if cfg.kind == "contrastive":
        return SentenceCondition(cfg.dataset, x_all, device)
    if cfg.kind == "autoencoder":
        return lambda model, x, y, gen: {}
    if cfg.kind == "vocoder":  # the mel of the waveform window itself
        return lambda model, x, y, gen: {"mel": audio.mel_image(audio.log_mel(x))}
    if cfg.kind != "diffusion":
        return lambda model, x, y, gen: {"y": y}
    if cfg.dataset in data.TOYS:
        return lambda model, x, y, gen: {}
    if cfg.unet.context_dim:
        return TextCondition(cfg.dataset, cfg.p_uncond, x_all, device)
    if cfg.edit == "inpaint":  # the mask from the run's generator; the model hides the pixels it must generate
        return lambda model, x, y, gen: {"mask": random_masks(len(x), x.shape[-1], gen), "known": x}
    if cfg.edit == "control":
        return lambda model, x, y, gen: {"control": edge_map(x)}
    if cfg.unet.num_classes:
        return lambda model, x, y, gen: {"y": drop_labels(y, cfg.p_uncond, cfg.unet.num_classes, gen)}
    return lambda model, x, y, gen: {}


def load_training_data(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """All training examples (N, ...) and labels (N,) on the CPU: images (N, C, H, W), or 2D toy points (N, 2)."""
    if cfg.dataset in data.TOYS:
        x = data.toy_2d(cfg.dataset, cfg.limit or 100_000, seed=cfg.seed)
        return x, torch.zeros(len(x), dtype=torch.long)
    name, _, speaker = cfg.dataset.partition(":")
    if name in AUDIO_DATA:
        x, y = AUDIO_DATA[name]("train", speaker or None)
        x = x[: cfg.limit] if cfg.limit else x
        return x, torch.zeros(len(x), dtype=torch.long) if y is None else y[: len(x)]
    return data.load_images(cfg.dataset, "train", pad_to_32=cfg.pad_to_32, limit=cfg.limit)
