"""A training run's configuration, and what is built from it: the model and the loss (the data and each batch's
conditioning: ``dlib.batches``).

``TrainConfig`` is plain data: a commented dataclass, written into every training state and model
card as JSON (``config_to_dict``) and read back from it (``config_from_dict``), so a checkpoint
rebuilds its own network (``build_model``). The named configurations live in ``dlib.recipes``; the
loop that runs one is ``dlib.train``. Derived in notebook 04.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from dlib import data
from dlib.denoiser import VP, Denoiser, Flow
from dlib.distill import DISTANCES, SOLVERS, WEIGHTINGS_CM, ConsistencyModel, distill_loss
from dlib.forward import PREDICTIONS
from dlib.losses import (
    ONE_PROCESS,
    WEIGHTINGS,
    AutoencoderLoss,
    ClassifierLoss,
    ContrastiveLoss,
    DiffusionLoss,
    FlowMatchingLoss,
    NoisyClassifierLoss,
    Shard,
)
from dlib.nets import (
    Autoencoder,
    AutoencoderConfig,
    Classifier,
    ContrastiveModel,
    ControlNet,
    EmbeddingPrior,
    InpaintingUNet,
    MLPDenoiser,
    NoisyClassifier,
    PriorConfig,
    UNet,
    UNetConfig,
)
from dlib.nets.vocoder import Vocoder, VocoderConfig
from dlib.schedules import Schedule
from dlib.wavegrad import VocoderLoss

KINDS = ("diffusion", "classifier", "noisy-classifier", "autoencoder", "contrastive", "prior", "vocoder")
LR_SCHEDULES = ("constant", "cosine", "linear")
EDITS = ("inpaint", "control")  # notebook 08's models built around a trained U-Net (dlib.nets.editing)
EMA_WARMUPS = ("ramp", "unbiased", "none")  # how the EMA decay starts: dlib.train.loop.ema_decay_at
DISTILLS = ("cd", "ct", "pd")  # notebook 12: consistency distillation and training, progressive distillation


@dataclass
class TrainConfig:
    name: str = "run"  # run folder under out_dir, and the exported model's name
    kind: str = "diffusion"  # one of KINDS: an eps/x_0/v model, a classifier of clean images or of (x_t, t),
    # the autoencoder of latent diffusion, the contrastive image-text model, or the unCLIP prior (notebook 07)
    # "mnist", "fashion-mnist", a 2D toy name from dlib.data.TOYS, or spoken digits (09): "fsdd-mel" (32 x 32 mel
    # images, dlib.audio.mel_images; "fsdd-mel:SPEAKER" without that speaker) or "fsdd-wave" (the vocoder's windows)
    dataset: str = "mnist"
    pad_to_32: bool = False  # pad 28x28 images to 32x32 (needed for 3 downsamplings)
    limit: int | None = None  # use only the first `limit` training examples
    unet: UNetConfig = field(default_factory=UNetConfig)  # ignored for 2D toys (MLPDenoiser) and classifiers
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)  # kind "autoencoder" only
    kl_weight: float = 1e-3  # kind "autoencoder": weight of the KL term (dlib.losses.AutoencoderLoss)
    recon: str = "l1"  # kind "autoencoder": reconstruction error, "l1" or "mse"
    latent_of: str | None = None  # kind "diffusion": train on the scaled latents of this shipped autoencoder (07)
    # unCLIP (07): a shipped contrastive model whose image embedding conditions a U-Net (kind "diffusion": the
    # decoder), or whose image embeddings are the data and text embeddings the condition (kind "prior")
    embed_of: str | None = None
    prior: PriorConfig = field(default_factory=PriorConfig)  # kind "prior" only
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)  # kind "vocoder" (notebook 09) only
    # notebook 08, kind "diffusion": "inpaint" (the U-Net also sees the mask and the masked image) or "control"
    # (a ControlNet on edge maps); both start from the trained U-Net `base_of` (a shipped model or run folder)
    edit: str | None = None
    base_of: str | None = None
    # notebook 11, kind "diffusion" with prediction "flow": reflow (rectified flow) starts from the trained flow model
    # `reflow_of` and trains on `reflow_n` pairs (its sample, the noise it came from) made by its ODE with Heun's
    # method in `reflow_steps` steps (dlib.rectified.reflow_pairs; python -m dlib.train makes and caches them)
    reflow_of: str | None = None
    reflow_n: int = 8192
    reflow_steps: int = 10
    # notebook 12 (dlib.distill): "cd", consistency distillation from `teacher_of` (a shipped model or run folder) on a
    # Karras grid of `teacher_steps` levels; "ct", consistency training (no teacher; the grid grows by ict_levels over
    # ct_levels); "pd", one round of progressive distillation, the student taking teacher_steps / 2 DDIM steps. CD and
    # PD students start from the teacher's weights; the consistency target is the run's EMA (ema_decay: Song's mu)
    distill: str | None = None
    teacher_of: str | None = None
    teacher_steps: int = 18
    cm_solver: str = "heun"  # "cd": the teacher's ODE step between adjacent levels, "euler" (DDIM) or "heun"
    cm_distance: str = "l2"  # "cd" / "ct": "l2" or "pseudo-huber" (Song & Dhariwal 2023)
    cm_weighting: str = "uniform"  # "cd" / "ct": "uniform" or "ict", 1 / (sigma_n - sigma_{n+1})
    ct_levels: tuple[int, int] = (10, 1280)  # "ct": N(k) from s0 to s1
    schedule: str = "linear"
    T: int = 1000
    prediction: str = (
        "eps"  # "eps", "x_0" or "v" (notebook 04) on `schedule`, or "flow": a velocity on the straight path (11)
    )
    weighting: str = "none"  # "none" or "min_snr": per-noise-level loss weights (dlib.losses.min_snr_weight)
    snr_gamma: float = 5.0  # gamma of the min-SNR weighting (Hang et al. 2023 recommend 5)
    steps: int = 10_000  # global batches (optimiser steps), whatever the number of processes
    batch_size: int = 128  # the global batch: under torchrun each of N processes takes batch_size / N
    lr: float = 1e-3
    warmup: int = 200  # linear learning-rate warm-up steps (Adam's early updates are noisy)
    lr_schedule: str = "constant"  # after warm-up: "constant", or "cosine" / "linear" decay to 0 at `decay_steps`
    decay_steps: int | None = None  # where a decay reaches 0 (None: at `steps`); after it the rate stays 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # clip the global gradient norm; diffusion losses have rare huge-gradient batches
    ema_decay: float = 0.999  # EMA of the weights: samples come from the EMA model
    ema_warmup: str = "ramp"  # one of EMA_WARMUPS: "ramp" keeps the decay below 0.999 until step ~9000
    p_uncond: float = 0.1  # class-conditional U-Nets: share of labels replaced by "no label" (classifier-free guidance)
    amp: bool = True  # bfloat16 autocast on CUDA; ignored on the CPU
    amp_cpu: bool = False  # bfloat16 autocast on the CPU (fast with AVX512-BF16 or AMX); weights stay float32
    progressive: tuple[
        tuple[float, int], ...
    ] = ()  # ((0.0, 16), (0.5, 32)): from that fraction of steps on, train at that size
    multiscale: tuple[float, ...] = ()  # e.g. (0.5, 1.0): average the loss over these image scales
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 200
    out_dir: str = "runs"

    def __post_init__(self):
        for name, allowed in (
            ("kind", KINDS),
            ("prediction", (*PREDICTIONS, "flow")),
            ("weighting", WEIGHTINGS),
            ("lr_schedule", LR_SCHEDULES),
            ("ema_warmup", EMA_WARMUPS),
            ("recon", ("l1", "mse")),
            ("cm_solver", SOLVERS),
            ("cm_distance", DISTANCES),
            ("cm_weighting", WEIGHTINGS_CM),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.decay_steps is not None and self.decay_steps <= self.warmup:
            raise ValueError(f"TrainConfig.decay_steps must exceed warmup ({self.warmup}), got {self.decay_steps}")
        if self.latent_of is not None and (self.kind != "diffusion" or self.dataset in data.TOYS):
            raise ValueError(
                f"TrainConfig.latent_of needs kind 'diffusion' on images, got {self.kind!r} on {self.dataset!r}"
            )
        if (self.kind == "prior" and self.embed_of is None) or (
            self.embed_of is not None and self.kind not in ("diffusion", "prior")
        ):
            raise ValueError(
                f"TrainConfig: kind 'prior' needs embed_of (a shipped contrastive model), and embed_of needs kind "
                f"'diffusion' or 'prior'; got kind {self.kind!r}, embed_of {self.embed_of!r}"
            )
        if (self.edit is None) != (self.base_of is None) or (self.edit is not None and self.edit not in EDITS):
            raise ValueError(
                f"TrainConfig: edit must be one of {EDITS} and comes with base_of (the trained U-Net it builds on); "
                f"got edit {self.edit!r}, base_of {self.base_of!r}"
            )
        if self.reflow_of is not None and (self.prediction != "flow" or self.edit is not None or self.reflow_n < 1):
            raise ValueError(
                f"TrainConfig.reflow_of needs prediction 'flow', no edit and reflow_n >= 1; got prediction "
                f"{self.prediction!r}, edit {self.edit!r}, reflow_n {self.reflow_n}"
            )
        if self.distill is not None and (
            self.distill not in DISTILLS
            or (self.kind, self.edit, self.reflow_of) != ("diffusion", None, None)
            or (self.teacher_of is None) != (self.distill == "ct")
            or self.teacher_steps < 2
            or (self.distill == "pd" and self.teacher_steps % 2)
            or not 1 <= self.ct_levels[0] <= self.ct_levels[1]
        ):
            raise ValueError(
                f"TrainConfig.distill must be one of {DISTILLS} on kind 'diffusion' without edit or reflow_of; 'cd' and "
                "'pd' need teacher_of, 'ct' has none; teacher_steps >= 2, even for 'pd'; 1 <= ct_levels[0] <= ct_levels[1]. Got "
                f"distill {self.distill!r}, kind {self.kind!r}, teacher_of {self.teacher_of!r}, teacher_steps {self.teacher_steps}, "
                f"ct_levels {self.ct_levels}"
            )
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1], got {self.ema_decay}")


def config_to_dict(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(d: dict) -> TrainConfig:
    """The inverse of ``config_to_dict``; a field the dict lacks (added after it was written) takes its default."""
    d = dict(d)
    d["unet"] = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["unet"].items()})
    d["autoencoder"] = AutoencoderConfig(**d.get("autoencoder", {}))
    d["prior"] = PriorConfig(**d.get("prior", {}))
    d["vocoder"] = VocoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.get("vocoder", {}).items()})
    d["progressive"] = tuple(tuple(p) for p in d.get("progressive", ()))
    d["multiscale"] = tuple(d.get("multiscale", ()))
    d["ct_levels"] = tuple(d.get("ct_levels", (10, 1280)))
    return TrainConfig(**d)


def build_model(cfg: TrainConfig, image_shape: tuple[int, ...] | None = None) -> torch.nn.Module:
    """The untrained network of a run: a classifier, the 2D toys' MLP, or the U-Net of ``cfg.unet``.

    ``image_shape`` (C, H, W) of the training images sizes the classifiers (the cards record it;
    without it they take their defaults); the U-Net is convolutional and takes channels from ``cfg.unet``.
    """
    size = {} if image_shape is None else {"in_channels": image_shape[0], "image_size": image_shape[-1]}
    if cfg.kind in ("classifier", "noisy-classifier"):
        return (Classifier if cfg.kind == "classifier" else NoisyClassifier)(**size)
    if cfg.kind == "contrastive":
        return ContrastiveModel(**size)
    if cfg.kind == "autoencoder":
        if image_shape is not None and image_shape[0] != cfg.autoencoder.in_channels:
            raise ValueError(
                f"the images have {image_shape[0]} channels, autoencoder.in_channels is {cfg.autoencoder.in_channels}"
            )
        return Autoencoder(cfg.autoencoder)
    if cfg.kind == "prior":
        return EmbeddingPrior(cfg.prior)
    if cfg.kind == "vocoder":
        return Vocoder(cfg.vocoder)
    if cfg.dataset in data.TOYS:
        return MLPDenoiser()
    if cfg.edit == "inpaint":
        return InpaintingUNet(cfg.unet)
    if cfg.edit == "control":
        return ControlNet(cfg.unet)
    return UNet(cfg.unet)


def build_loss(
    cfg: TrainConfig,
    sched: Schedule,
    shard: Shard = ONE_PROCESS,
    *,
    teacher: Denoiser | None = None,
    target: torch.nn.Module | None = None,
) -> Callable:
    """The run's objective, ``loss(model, x_0, generator, **cond)`` (``dlib.losses``), on ``sched``'s device.
    Distillation (``cfg.distill``) also takes the ``teacher`` (a Denoiser) and the consistency ``target`` network."""
    if cfg.distill:
        return distill_loss(
            cfg.distill, lambda net: build_denoiser(dataclasses.replace(cfg, distill=None), net, sched), teacher, target,
            steps=cfg.teacher_steps, total_steps=cfg.steps, ct_levels=cfg.ct_levels, solver=cfg.cm_solver,
            distance=cfg.cm_distance, weighting=cfg.cm_weighting, shard=shard,
        )  # fmt: skip
    if cfg.kind == "classifier":
        return ClassifierLoss()
    if cfg.kind == "noisy-classifier":
        return NoisyClassifierLoss(sched, shard=shard)
    if cfg.kind == "autoencoder":
        return AutoencoderLoss(cfg.kl_weight, cfg.recon, shard=shard)
    if cfg.kind == "contrastive":
        return ContrastiveLoss()
    if cfg.kind == "vocoder":
        return VocoderLoss(sched, shard=shard)
    if cfg.prediction == "flow":
        return FlowMatchingLoss(shard=shard)
    return DiffusionLoss(sched, cfg.prediction, cfg.weighting, cfg.snr_gamma, scales=cfg.multiscale, shard=shard)


def build_denoiser(cfg: TrainConfig, net, sched: Schedule) -> Denoiser:
    """What the samplers consume (``dlib.denoiser``): the network read through its own parameterisation,
    on the straight path for a flow model and on ``sched`` otherwise; for a consistency model (distill "cd" or
    "ct") its consistency function (``dlib.distill.ConsistencyModel``), sampled by ``sample_consistency``."""
    den = Denoiser(net, cfg.prediction, Flow() if cfg.prediction == "flow" else VP(sched))
    return ConsistencyModel(den) if cfg.distill in ("cd", "ct") else den


def card_denoiser(card: dict, net, sched: Schedule) -> Denoiser:
    """``build_denoiser`` with the config a card records (a shipped model's, or a run folder's card.json): ``net``
    read as it was trained to predict. ``denoiser.eps_model`` of it is the same network read as eps_hat(x_t, t)."""
    return build_denoiser(config_from_dict(card["config"]), net, sched)
