"""The named training configurations: every shipped model and every test run comes from one.

    python -m dlib.train --recipe NAME [--steps N] [--export] [key=value ...]

A shipped model's card records its recipe's config, and a test checks that the two still agree, so
``RECIPES[name]`` retrains exactly the shipped weights' setup. ``TrainConfig`` and ``build_model``
live lower down, in ``dlib.config``, so that ``dlib.checkpoint`` can rebuild a network from a card.
"""

from __future__ import annotations

from dlib.config import TrainConfig, build_model
from dlib.nets import AutoencoderConfig, PriorConfig, UNetConfig
from dlib.nets.vocoder import VocoderConfig

__all__ = ["RECIPES", "TrainConfig", "build_model"]


def _unet(**kw) -> UNetConfig:
    return UNetConfig(**kw)


RECIPES: dict[str, TrainConfig] = {
    # The shipped unconditional MNIST model, the recipe the study (docs/RECIPE_STUDY.md) picked: a 16/32/32
    # U-Net of 299,937 parameters (one residual block per level, attention only at 7x7 and in the middle,
    # where it is cheap), v-prediction with min-SNR-5 loss weighting, bf16 autocast on the CPU, 40,000 steps
    # at batch 128 (85 epochs), 20,764 s (5.8 h) on one thread of an AMD EPYC host (the first stretch without
    # bf16; the card lists both). The learning rate is constant after warm-up, so steps=N simply continues the
    # run from its checkpoint.
    "mnist-unet": TrainConfig(
        name="mnist-unet", steps=40_000, batch_size=128, lr=1e-3, warmup=200, ckpt_every=100,
        prediction="v", weighting="min_snr", snr_gamma=5.0, amp_cpu=True,
        unet=_unet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    # Notebook 06 (conditioning): mnist-unet's recipe (16/32/32 U-Net, v-prediction, min-SNR-5, bf16 autocast on the
    # CPU) with a label embedding (null label 10, dropped 10% of the time for classifier-free guidance): 300,641
    # parameters; 26,800 steps at batch 128 (57 epochs), 14,420 s (4.0 h) on one thread of an AMD EPYC host.
    # fashion-cond-unet is the same recipe at twice the width (32/64/64, 1,192,641 parameters): at width 16 it
    # stopped at 91.2% of unguided samples as requested (target 92%) after 30,700 steps; at width 32, 19,200 steps
    # (41 epochs), 8,369 s (2.3 h) on one and then two threads. Each stopped where its unguided share as requested
    # was measured (training/README.md). The learning rate is constant after warm-up, so steps=N continues a run.
    # (Classifier guidance uses mnist-noisy-classifier, below.)
    "mnist-cond-unet": TrainConfig(
        name="mnist-cond-unet", steps=26_800, batch_size=128, lr=1e-3, warmup=200, ckpt_every=100,
        prediction="v", weighting="min_snr", snr_gamma=5.0, amp_cpu=True,
        unet=_unet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), num_classes=10),
    ),
    "fashion-cond-unet": TrainConfig(
        name="fashion-cond-unet", dataset="fashion-mnist", steps=19_200, batch_size=128, lr=1e-3, warmup=200, ckpt_every=100,
        prediction="v", weighting="min_snr", snr_gamma=5.0, amp_cpu=True,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), num_classes=10),
    ),
    # The text-conditional U-Net: the same recipe, with cross-attention from the 7x7 and middle attention blocks to
    # the caption's MiniLM token embeddings (dlib.text), 10% null prompts: 407,201 parameters. 40,000 steps at batch
    # 128 (85 epochs), 16,169 s (4.5 h) on one thread of AMD EPYC hosts (bf16 autocast), over three sittings, beside
    # other work on the second core (training/README.md). The learning rate is constant after warm-up.
    "mnist-text-unet": TrainConfig(
        name="mnist-text-unet", steps=40_000, batch_size=128, lr=1e-3, warmup=200, ckpt_every=100,
        prediction="v", weighting="min_snr", snr_gamma=5.0, amp_cpu=True,
        unet=_unet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), context_dim=384),
    ),
    "mnist-noisy-classifier": TrainConfig(
        name="mnist-noisy-classifier", kind="noisy-classifier", steps=3000, batch_size=128, lr=2e-3, warmup=100, ema_decay=0.99
    ),
    # Classifiers for FID features, scores and guidance (clean images, no noise).
    "mnist-classifier": TrainConfig(name="mnist-classifier", kind="classifier", steps=1200, batch_size=128, lr=2e-3, warmup=100, ema_decay=0.99),
    "fashion-classifier": TrainConfig(
        name="fashion-classifier", kind="classifier", dataset="fashion-mnist", steps=1500, batch_size=128, lr=2e-3, warmup=100, ema_decay=0.99
    ),
    # Notebook 09 (audio), on the Free Spoken Digit Dataset's training split (dlib.audio): the referee, a
    # classifier of 32 x 32 mel images; the label -> mel model, a class-conditional 32/64/64 U-Net (notebook 06's kind) on the same
    # images; the vocoder (DiffWave's network at a CPU-sized width, WaveGrad's continuous noise level, L1) on
    # 2304-sample windows (12 mel frames), its levels drawn between those of DDPM's linear betas with T = 150, from 1
    # down to sqrt(alpha_bar) = 0.47 (a vocoder never starts from pure noise: DiffWave trains down to 0.53). Learning
    # rates are constant after warm-up, so steps=N continues a run.
    "fsdd-classifier": TrainConfig(
        name="fsdd-classifier", kind="classifier", dataset="fsdd-mel", steps=800, batch_size=128, lr=2e-3, warmup=100, ema_decay=0.99
    ),
    "fsdd-classifier-theo": TrainConfig(  # the same, never hearing speaker "theo": how well does it meet a new voice?
        name="fsdd-classifier-theo", kind="classifier", dataset="fsdd-mel:theo", steps=800, batch_size=128, lr=2e-3, warmup=100,
        ema_decay=0.99,
    ),
    "fsdd-mel-unet": TrainConfig(
        name="fsdd-mel-unet", dataset="fsdd-mel", steps=2000, batch_size=64, lr=1e-3, warmup=200, ckpt_every=100,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), num_classes=10),
    ),
    "fsdd-vocoder": TrainConfig(
        name="fsdd-vocoder", kind="vocoder", dataset="fsdd-wave", T=150, steps=6000, batch_size=8, lr=1e-3, warmup=200,
        ckpt_every=200,
    ),
    # Seconds-scale recipes for tests and the smoke budget.
    "toy-2d": TrainConfig(name="toy-2d", dataset="swiss_roll", schedule="cosine", T=100, steps=2000, batch_size=512, lr=3e-3, warmup=50, ema_decay=0.99, log_every=100, ckpt_every=500),
    "noisy-classifier-tiny": TrainConfig(name="noisy-classifier-tiny", kind="noisy-classifier", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5),
    "vocoder-tiny": TrainConfig(
        name="vocoder-tiny", kind="vocoder", dataset="fsdd-wave", steps=4, batch_size=4, limit=64, warmup=2, ckpt_every=2, log_every=2,
        vocoder=VocoderConfig(channels=8, layers=4, cycle=2, embed_dim=16),
    ),
    "mnist-cond-tiny": TrainConfig(
        name="mnist-cond-tiny", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), num_classes=10),
    ),
    "mnist-text-tiny": TrainConfig(
        name="mnist-text-tiny", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), context_dim=384),
    ),
    "mnist-tiny": TrainConfig(
        name="mnist-tiny", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,)),
    ),
    "mnist-v-tiny": TrainConfig(
        name="mnist-v-tiny", prediction="v", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,)),
    ),
    "mnist-x0-tiny": TrainConfig(
        name="mnist-x0-tiny", prediction="x_0", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,)),
    ),
    # The same data and network with another target (notebook 04's comparison of parameterisations):
    # a 16-channel U-Net, 400 steps of batch 64 with a cosine learning-rate decay, a few minutes on a
    # 2-core CPU. `--sample-every 100` shows the EMA samples of either as they form.
    "mnist-v-small": TrainConfig(
        name="mnist-v-small", prediction="v", steps=400, batch_size=64, lr=2e-3, warmup=50, lr_schedule="cosine",
        log_every=25, ckpt_every=100,
        unet=_unet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    "mnist-x0-small": TrainConfig(
        name="mnist-x0-small", prediction="x_0", steps=400, batch_size=64, lr=2e-3, warmup=50, lr_schedule="cosine",
        log_every=25, ckpt_every=100,
        unet=_unet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    # Flow matching on the straight path (dlib.losses.FlowMatchingLoss; notebook 11): the same network
    # regresses the velocity eps - x_0 at t ~ U[0, 1); `schedule` and `T` are unused.
    "mnist-flow-tiny": TrainConfig(
        name="mnist-flow-tiny", prediction="flow", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,)),
    ),
    # The shipped MNIST flow-matching model (notebook 11): the course's 32/64/64 U-Net (notebook 03's, no labels), MNIST, independent (noise, data)
    # pairs, batch 64 with a cosine decay: 2400 steps took 56 minutes on one CPU thread. Its reflowed version
    # (rectified flow) starts from it and trains on 8192 (sample, noise) pairs made by its ODE (Heun, 10 steps).
    "mnist-flow-unet": TrainConfig(
        name="mnist-flow-unet", prediction="flow", steps=2400, batch_size=64, lr=1e-3, warmup=100, lr_schedule="cosine",
        ema_decay=0.999, ema_warmup="unbiased", log_every=50, ckpt_every=100,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    # Rectified flow: 8192 pairs (18 minutes of Heun solves), then 1200 steps from mnist-flow-unet (24 minutes), one thread.
    "mnist-reflow-unet": TrainConfig(
        name="mnist-reflow-unet", prediction="flow", reflow_of="mnist-flow-unet", reflow_n=8192, reflow_steps=10,
        steps=1200, batch_size=64, lr=3e-4, warmup=50, lr_schedule="cosine", ema_decay=0.995, ema_warmup="unbiased",
        log_every=25, ckpt_every=50,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    "reflow-tiny": TrainConfig(
        name="reflow-tiny", prediction="flow", reflow_of="mnist-flow-unet", reflow_n=16, reflow_steps=2, steps=4,
        batch_size=8, warmup=2, ckpt_every=2, log_every=2,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    # Notebook 12 (dlib.distill), all from mnist-flow-unet's U-Net and read as flow velocities, one thread each.
    # Consistency distillation: the teacher's Heun step between adjacent levels of an 18-level Karras grid,
    # pseudo-Huber distance, target EMA mu = 0.95.
    "mnist-cd-unet": TrainConfig(
        name="mnist-cd-unet", prediction="flow", distill="cd", teacher_of="mnist-flow-unet", teacher_steps=18,
        cm_solver="heun", cm_distance="pseudo-huber", steps=1500, batch_size=64, lr=2e-4, warmup=50,
        lr_schedule="constant", ema_decay=0.95, ema_warmup="none", log_every=25, ckpt_every=50,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    # Consistency training from scratch (iCT: pseudo-Huber, 1 / (sigma_n - sigma_{n+1}) weights, N(k) from 10 to 1280
    # levels); the target is the EMA with mu = 0.95 (iCT uses mu = 0 with a separate sampling EMA).
    "mnist-ct-unet": TrainConfig(
        name="mnist-ct-unet", prediction="flow", distill="ct", cm_distance="pseudo-huber", cm_weighting="ict",
        ct_levels=(10, 1280), steps=1200, batch_size=64, lr=4e-4, warmup=100, lr_schedule="constant",
        ema_decay=0.95, ema_warmup="none", log_every=25, ckpt_every=50,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    **{
        f"mnist-pd-{n}": TrainConfig(  # progressive distillation, one round: n steps where the teacher took 2n
            name=f"mnist-pd-{n}", prediction="flow", distill="pd", teacher_steps=2 * n,
            teacher_of="mnist-flow-unet" if n == 32 else f"runs/mnist-pd-{2 * n}", steps=300, batch_size=64, lr=2e-4,
            warmup=20, lr_schedule="cosine", ema_decay=0.995, ema_warmup="unbiased", log_every=25, ckpt_every=50,
            unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
        )
        for n in (32, 16, 8, 4, 2, 1)
    },
    **{
        f"{kind}-tiny": TrainConfig(
            name=f"{kind}-tiny", prediction="flow", distill=kind, teacher_of=None if kind == "ct" else "mnist-flow-unet",
            teacher_steps=4, ct_levels=(2, 8), steps=4, batch_size=8, limit=256, warmup=2, ckpt_every=2, log_every=2,
            unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
        )
        for kind in ("cd", "ct", "pd")
    },
    "mnist-flow-small": TrainConfig(
        name="mnist-flow-small", prediction="flow", steps=400, batch_size=64, lr=2e-3, warmup=50, lr_schedule="cosine",
        log_every=25, ckpt_every=100,
        unet=_unet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    # Notebook 07's first stage: a KL-regularised autoencoder, 1 x 28 x 28 -> 4 x 7 x 7 (dlib.nets.autoencoder),
    # and the contrastive image tower against the frozen sentence encoder (dlib.nets.contrastive).
    "fashion-ae": TrainConfig(
        name="fashion-ae", kind="autoencoder", dataset="fashion-mnist", steps=3000, batch_size=64, lr=1e-3, warmup=100,
        lr_schedule="cosine", ema_decay=0.999, ema_warmup="unbiased", kl_weight=1e-3, log_every=50, ckpt_every=100,
        autoencoder=AutoencoderConfig(width=16),
    ),
    "mnist-ae": TrainConfig(
        name="mnist-ae", kind="autoencoder", steps=3000, batch_size=64, lr=1e-3, warmup=100,
        lr_schedule="cosine", ema_decay=0.999, ema_warmup="unbiased", kl_weight=1e-3, log_every=50, ckpt_every=100,
        autoencoder=AutoencoderConfig(width=16),
    ),
    "fashion-clip": TrainConfig(
        name="fashion-clip", kind="contrastive", dataset="fashion-mnist", steps=3000, batch_size=128, lr=1e-3, warmup=100,
        lr_schedule="cosine", ema_decay=0.999, ema_warmup="unbiased", log_every=50, ckpt_every=100,
    ),
    "mnist-clip": TrainConfig(
        name="mnist-clip", kind="contrastive", steps=3000, batch_size=128, lr=1e-3, warmup=100,
        lr_schedule="cosine", ema_decay=0.999, ema_warmup="unbiased", log_every=50, ckpt_every=100,
    ),
    # Latent diffusion (notebook 07): a one-level U-Net (7x7 cannot be halved; 1.4M parameters) on the scaled
    # 4 x 7 x 7 latents of the shipped autoencoder, cross-attending to the caption's MiniLM tokens like
    # mnist-text-unet, 10% null prompts. About 0.9 s per step on one CPU thread, a third of it the text encoder.
    "fashion-latent-unet": TrainConfig(
        name="fashion-latent-unet", dataset="fashion-mnist", latent_of="fashion-ae", steps=3000, batch_size=128, lr=1e-3,
        warmup=200, lr_schedule="cosine", log_every=50, ckpt_every=100,
        unet=_unet(in_channels=4, base_channels=64, channel_mults=(1,), num_res_blocks=2, attention_levels=(0,), context_dim=384),
    ),
    "mnist-latent-unet": TrainConfig(
        name="mnist-latent-unet", latent_of="mnist-ae", steps=3000, batch_size=128, lr=1e-3,
        warmup=200, lr_schedule="cosine", log_every=50, ckpt_every=100,
        unet=_unet(in_channels=4, base_channels=64, channel_mults=(1,), num_res_blocks=2, attention_levels=(0,), context_dim=384),
    ),
    # unCLIP (DALL-E 2) in miniature, in fashion-clip's 128-d embedding space: the prior (text embedding -> image
    # embedding, an MLP that predicts x_0 as DALL-E 2's does) and the decoder (image embedding -> 4 x 7 x 7 latent of
    # fashion-ae: the latent U-Net above with the embedding as its one context token), both with 10% dropped
    # conditions for classifier-free guidance.
    "fashion-unclip-prior": TrainConfig(
        name="fashion-unclip-prior", kind="prior", dataset="fashion-mnist", embed_of="fashion-clip", prediction="x_0",
        schedule="cosine", steps=3000, batch_size=128, lr=5e-4, warmup=200, lr_schedule="cosine", log_every=50, ckpt_every=100,
        prior=PriorConfig(width=256),
    ),
    "fashion-unclip-decoder": TrainConfig(
        name="fashion-unclip-decoder", dataset="fashion-mnist", latent_of="fashion-ae", embed_of="fashion-clip", steps=3000,
        batch_size=128, lr=1e-3, warmup=200, lr_schedule="cosine", log_every=50, ckpt_every=100,
        unet=_unet(in_channels=4, base_channels=64, channel_mults=(1,), num_res_blocks=2, attention_levels=(0,), context_dim=128),
    ),
    # Notebook 08 (editing and control), both built on the shipped mnist-unet (so they share its width, its
    # v-prediction and, as recommended, its min-SNR-5 weighting; training refuses a prediction, schedule or T
    # that differs from the base's card) and trained on one CPU thread with bf16 autocast: the
    # inpainting model fine-tunes all of it with two extra input channels (mask, masked image; dlib.controls.random_masks,
    # 10% fully masked); the ControlNet trains an encoder copy steering the frozen U-Net through zero convolutions,
    # on Sobel edge maps (dlib.controls.edge_map).
    "mnist-inpaint-unet": TrainConfig(
        name="mnist-inpaint-unet", edit="inpaint", base_of="mnist-unet", steps=1000, batch_size=64, lr=3e-4, warmup=50,
        lr_schedule="cosine", ema_decay=0.995, ema_warmup="unbiased", log_every=25, ckpt_every=50,
        prediction="v", weighting="min_snr", snr_gamma=5.0, amp_cpu=True,
        unet=_unet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    "mnist-controlnet": TrainConfig(
        name="mnist-controlnet", edit="control", base_of="mnist-unet", steps=1500, batch_size=64, lr=3e-4, warmup=50,
        lr_schedule="cosine", ema_decay=0.995, ema_warmup="unbiased", log_every=25, ckpt_every=50,
        prediction="v", weighting="min_snr", snr_gamma=5.0, amp_cpu=True,
        unet=_unet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    "inpaint-tiny": TrainConfig(
        name="inpaint-tiny", edit="inpaint", base_of="mnist-unet", steps=4, batch_size=8, limit=256, warmup=2,
        ckpt_every=2, log_every=2,
        prediction="v", weighting="min_snr", snr_gamma=5.0,
        unet=_unet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    "control-tiny": TrainConfig(
        name="control-tiny", edit="control", base_of="mnist-unet", steps=4, batch_size=8, limit=256, warmup=2,
        ckpt_every=2, log_every=2,
        prediction="v", weighting="min_snr", snr_gamma=5.0,
        unet=_unet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    "ae-tiny": TrainConfig(
        name="ae-tiny", kind="autoencoder", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        autoencoder=AutoencoderConfig(width=8),
    ),
    "clip-tiny": TrainConfig(
        name="clip-tiny", kind="contrastive", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
    ),
    "latent-tiny": TrainConfig(
        name="latent-tiny", latent_of="mnist-ae", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(in_channels=4, base_channels=8, channel_mults=(1,), num_res_blocks=1, attention_levels=(0,), context_dim=384),
    ),
    "prior-tiny": TrainConfig(
        name="prior-tiny", kind="prior", embed_of="mnist-clip", prediction="x_0", steps=20, batch_size=16, limit=512,
        warmup=5, ckpt_every=5, log_every=5, prior=PriorConfig(width=32, depth=1),
    ),
    "unclip-decoder-tiny": TrainConfig(
        name="unclip-decoder-tiny", latent_of="mnist-ae", embed_of="mnist-clip", steps=20, batch_size=16, limit=512,
        warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(in_channels=4, base_channels=8, channel_mults=(1,), num_res_blocks=1, attention_levels=(0,), context_dim=128),
    ),
}  # fmt: skip
