"""Text-to-image in miniature, both ways (notebook 07): Stable Diffusion's latent pipeline and DALL-E 2's unCLIP;
and text-to-speech in miniature (notebook 09, ``speak``): a digit label -> a mel image -> a waveform.

    latent:  prompt -> sentence encoder's tokens -> guided sampling of a 4 x 7 x 7 latent -> autoencoder's decoder
    unCLIP:  prompt -> pooled sentence vector -> contrastive text embedding
                    -> prior: guided sampling of an image embedding -> decoder: guided sampling of a latent
                    -> autoencoder's decoder

Each pipeline is one object holding its frozen parts, loaded from the shipped models by name and called
with a list of prompts: ``LatentPipeline.load("fashion-latent-unet")(prompts, w=3.0, steps=50)``. Any
sampler of notebook 05 runs the reverse process (``dlib.samplers.SAMPLERS``), with classifier-free
guidance in the "cond" convention (w = 0: the plain conditional model; ``dlib.guidance``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlib import audio, checkpoint
from dlib.guidance import sample_guided
from dlib.samplers.vocoder import vocode
from dlib.schedules import Schedule
from dlib.text import TextEncoder


@torch.no_grad()
def decode_latents(ae, z: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] from *scaled* latents (what the U-Net samples): decode(z / scaling_factor), clamped."""
    shape = (ae.cfg.latent_channels,)
    if z.ndim != 4 or z.shape[1:2] != shape:
        raise ValueError(f"latents must have shape (N, {shape[0]}, h, w), got {tuple(z.shape)}")
    return ae.decode(z / ae.scaling_factor).clamp(-1, 1)


@dataclass
class LatentPipeline:
    """Stable Diffusion in miniature: a text-conditional U-Net on the scaled latents of a frozen autoencoder."""

    unet: torch.nn.Module
    sched: Schedule
    ae: torch.nn.Module
    encoder: TextEncoder
    image_size: int = 28
    prediction: str = "eps"

    @classmethod
    def load(cls, name: str, device: torch.device | str = "cpu") -> LatentPipeline:
        """The shipped latent U-Net ``name`` with the autoencoder it was trained on (its card's ``latent_of``)."""
        unet, sched, card = checkpoint.load_any(name, device)
        cfg = card["config"]
        if not cfg.get("latent_of") or cfg["unet"].get("context_dim") != TextEncoder.dim or cfg.get("embed_of"):
            raise ValueError(
                f"{name} is not a text-conditional latent U-Net: its card needs latent_of, no embed_of (an unCLIP "
                f"decoder) and unet.context_dim = {TextEncoder.dim} (the sentence encoder's token width)"
            )
        ae, _, ae_card = checkpoint.load_any(cfg["latent_of"], device)
        size = ae_card["image_shape"][-1]
        return cls(unet, sched, ae, TextEncoder(device), size, cfg["prediction"])

    @torch.no_grad()
    def latents(self, prompts: list[str], *, w: float = 3.0, steps: int = 50, sampler: str = "ddim", generator=None):
        """The scaled latents (N, C_z, h, w) for ``prompts``, before decoding."""
        context, mask = self.encoder(prompts)
        cond = {"context": context, "context_mask": mask}
        shape = self.ae.cfg.latent_shape(self.image_size)
        return sample_guided(
            self.unet, self.sched, shape, cond, w=w, steps=steps, sampler=sampler, prediction=self.prediction,
            generator=generator,
        )  # fmt: skip

    def __call__(self, prompts: list[str], *, w: float = 3.0, steps: int = 50, sampler: str = "ddim", generator=None):
        """Images (N, C, H, W) in [-1, 1], one per prompt: text -> encoder -> guided latent sampling -> decoder."""
        return decode_latents(self.ae, self.latents(prompts, w=w, steps=steps, sampler=sampler, generator=generator))


@dataclass
class UnCLIPPipeline:
    """DALL-E 2 in miniature: a prior from text embeddings to image embeddings of a contrastive model, and a
    decoder from image embeddings to the latents of a frozen autoencoder."""

    prior: torch.nn.Module
    prior_sched: Schedule
    decoder: torch.nn.Module
    decoder_sched: Schedule
    clip: torch.nn.Module
    ae: torch.nn.Module
    encoder: TextEncoder
    image_size: int = 28
    prior_prediction: str = "x_0"
    decoder_prediction: str = "eps"

    @classmethod
    def load(cls, prior: str, decoder: str, device: torch.device | str = "cpu") -> UnCLIPPipeline:
        """The shipped prior and decoder, with the contrastive model and autoencoder their cards name."""
        p, p_sched, p_card = checkpoint.load_any(prior, device)
        d, d_sched, d_card = checkpoint.load_any(decoder, device)
        pc, dc = p_card["config"], d_card["config"]
        if pc["kind"] != "prior" or not dc.get("latent_of") or not dc.get("embed_of"):
            raise ValueError(f"expected a prior and a latent decoder conditioned on embeddings, got {prior}, {decoder}")
        if pc["embed_of"] != dc["embed_of"]:
            raise ValueError(f"{prior} and {decoder} use different embeddings: {pc['embed_of']} vs {dc['embed_of']}")
        clip = checkpoint.load_any(pc["embed_of"], device)[0]
        ae, _, ae_card = checkpoint.load_any(dc["latent_of"], device)
        size = ae_card["image_shape"][-1]
        return cls(p, p_sched, d, d_sched, clip, ae, TextEncoder(device), size, pc["prediction"], dc["prediction"])

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        """The contrastive model's unit text embeddings (N, D) of the prompts."""
        return self.clip.text_embedding(self.encoder.sentences(prompts))

    @torch.no_grad()
    def image_embeddings(
        self, prompts: list[str], *, w: float = 1.0, steps: int = 50, sampler: str = "ddim", generator=None
    ):
        """The prior: unit image embeddings (N, D) sampled given the prompts' text embeddings."""
        text = self.text_embeddings(prompts)[:, None]
        cond = {"context": text, "context_mask": torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)}
        e = sample_guided(
            self.prior, self.prior_sched, (text.shape[-1],), cond, w=w, steps=steps, sampler=sampler,
            prediction=self.prior_prediction, generator=generator,
        )  # fmt: skip
        return F.normalize(e, dim=-1)

    @torch.no_grad()
    def decode(
        self,
        embeddings: torch.Tensor,
        *,
        w: float = 3.0,
        steps: int = 50,
        sampler: str = "ddim",
        generator=None,
        x_T=None,
    ):
        """The decoder: images (N, C, H, W) in [-1, 1] from image embeddings (N, D), e.g. for variations of one image;
        ``x_T`` (N, C_z, h, w) fixes the starting noise (e.g. one noise along an interpolation)."""
        D = self.clip.embed_dim
        if embeddings.ndim != 2 or embeddings.shape[1] != D:
            raise ValueError(f"image embeddings must have shape (N, {D}), got {tuple(embeddings.shape)}")
        e = F.normalize(embeddings, dim=-1)[:, None]
        cond = {"context": e, "context_mask": torch.ones(e.shape[:2], dtype=torch.bool, device=e.device)}
        z = sample_guided(
            self.decoder, self.decoder_sched, self.ae.cfg.latent_shape(self.image_size), cond, w=w, steps=steps,
            sampler=sampler, prediction=self.decoder_prediction, generator=generator, x_T=x_T,
        )  # fmt: skip
        return decode_latents(self.ae, z)

    def __call__(
        self,
        prompts: list[str],
        *,
        w_prior: float = 1.0,
        w: float = 3.0,
        steps: int = 50,
        sampler: str = "ddim",
        generator=None,
    ) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1], one per prompt: text -> text embedding -> prior -> decoder -> autoencoder."""
        e = self.image_embeddings(prompts, w=w_prior, steps=steps, sampler=sampler, generator=generator)
        return self.decode(e, w=w, steps=steps, sampler=sampler, generator=generator)


@torch.no_grad()
def speak(
    mel_unet, sched: Schedule, vocoder, digits: torch.Tensor, *, w: float, steps: int, betas, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spoken digits from labels (notebook 09): classifier-free-guided DDIM (``steps``, scale ``w`` in the "cond"
    convention) of the class-conditional ``mel_unet`` gives mel images (N, 1, 32, 32); the ``vocoder`` renders them
    with the noise schedule ``betas``. Returns (mel images, waveforms (N, 6144) on the CPU)."""
    shape = (1, audio.N_MELS, audio.CLIP // audio.HOP)
    mels = sample_guided(mel_unet, sched, shape, {"y": digits}, w=w, steps=steps, generator=generator).clamp(-1, 1)
    return mels, vocode(vocoder, mels, betas, generator=generator).cpu()
