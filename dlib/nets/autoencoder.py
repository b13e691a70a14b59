"""A small KL-regularised autoencoder: the first stage of latent diffusion (notebook 07).

Stable Diffusion's ``AutoencoderKL`` (Rombach et al. 2022) in miniature. The encoder maps an image
(B, C, S, S) to a diagonal Gaussian over latents (B, latent_channels, S / 2^d, S / 2^d) with d
downsamplings; the decoder maps a latent back to an image. Training (``dlib.losses.AutoencoderLoss``)
minimises reconstruction error plus a small weight times KL(q(z | x) || N(0, I)), which keeps the
latent space smooth and of bounded scale without forcing it to be a unit Gaussian. A diffusion model
then works on ``scaling_factor * z``: the factor (a buffer, fitted on training latents by
``fit_scaling_factor``) gives the latents unit variance, as the schedules assume.

    ae = Autoencoder(AutoencoderConfig())          # 1 x 28 x 28 (784 numbers) -> 4 x 7 x 7 (196): 4x fewer
    posterior = ae.encode(x)                        # DiagonalGaussian: .mean, .logvar, .sample(generator), .kl()
    x_rec = ae.decode(posterior.mode())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dlib.nets.blocks import Downsample, Upsample, group_norm


@dataclass(frozen=True)
class AutoencoderConfig:
    in_channels: int = 1
    latent_channels: int = 4  # channels of the latent grid (Stable Diffusion: 4)
    width: int = 32  # channels at full resolution; each downsampling doubles them
    downsamplings: int = 2  # 28 -> 14 -> 7

    def __post_init__(self):
        if min(self.in_channels, self.latent_channels, self.width) < 1 or self.downsamplings < 0:
            raise ValueError(f"AutoencoderConfig needs positive channels and downsamplings >= 0, got {self}")

    def latent_shape(self, image_size: int) -> tuple[int, int, int]:
        """(latent_channels, side, side) for square images of ``image_size`` pixels."""
        factor = 2**self.downsamplings
        if image_size % factor:
            raise ValueError(f"image_size {image_size} is not divisible by 2^downsamplings = {factor}")
        return (self.latent_channels, image_size // factor, image_size // factor)


class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(logvar))), per latent element. logvar is clamped to [-30, 20]."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean, self.logvar = mean, logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return (0.5 * self.logvar).exp()

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mean + std * eps: the reparameterisation, so gradients reach the encoder through z."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q(z | x) || N(0, I)) per example, summed over the latent elements: shape (B,)."""
        return 0.5 * (self.mean**2 + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


class _Residual(nn.Module):
    """GroupNorm-SiLU-conv twice, plus a (1x1-projected) skip: a ResBlock without a time input."""

    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(ch_in), nn.SiLU(), nn.Conv2d(ch_in, ch_out, 3, padding=1),
            group_norm(ch_out), nn.SiLU(), nn.Conv2d(ch_out, ch_out, 3, padding=1),
        )  # fmt: skip
        self.skip = nn.Conv2d(ch_in, ch_out, 1) if ch_in != ch_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Autoencoder(nn.Module):
    """Encoder to a diagonal Gaussian over a latent grid, and a decoder back to images in [-1, 1] (not clamped)."""

    def __init__(self, cfg: AutoencoderConfig = AutoencoderConfig()):
        super().__init__()
        self.cfg = cfg
        widths = [cfg.width * 2**i for i in range(cfg.downsamplings + 1)]
        down: list[nn.Module] = [nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)]
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            down += [_Residual(w_in, w_in), Downsample(w_in), _Residual(w_in, w_out)]
        down += [_Residual(widths[-1], widths[-1]), group_norm(widths[-1]), nn.SiLU()]
        down += [nn.Conv2d(widths[-1], 2 * cfg.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*down)
        up: list[nn.Module] = [
            nn.Conv2d(cfg.latent_channels, widths[-1], 3, padding=1),
            _Residual(widths[-1], widths[-1]),
        ]
        for w_in, w_out in zip(widths[:0:-1], widths[-2::-1], strict=True):
            up += [_Residual(w_in, w_out), Upsample(w_out), _Residual(w_out, w_out)]
        up += [group_norm(widths[0]), nn.SiLU(), nn.Conv2d(widths[0], cfg.in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*up)
        self.register_buffer("scaling_factor", torch.ones(()))  # set by fit_scaling_factor after training

    def _check(self, x: torch.Tensor, channels: int, what: str) -> None:
        factor = 2**self.cfg.downsamplings
        if x.ndim != 4 or x.shape[1] != channels or x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(
                f"{what} must have shape (B, {channels}, H, W) with H and W divisible by {factor}, got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        self._check(x, self.cfg.in_channels, "Autoencoder.encode: images")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.cfg.latent_channels:
            raise ValueError(
                f"Autoencoder.decode: latents must have shape (B, {self.cfg.latent_channels}, h, w), got {tuple(z.shape)}"
            )
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, eps_of: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """(reconstruction, posterior): what the training loss needs. The reconstruction decodes a sampled
        latent z = mean + std * eps_of(mean) (the loss passes its generator's draw, shaped like the mean),
        or the posterior mean when ``eps_of`` is None."""
        posterior = self.encode(x)
        z = posterior.mean if eps_of is None else posterior.mean + posterior.std * eps_of(posterior.mean)
        return self.decode(z), posterior


@torch.no_grad()
def fit_scaling_factor(ae: Autoencoder, images: torch.Tensor, batch_size: int = 512) -> float:
    """Set ``ae.scaling_factor`` to 1 / std of the posterior means over ``images`` (Rombach et al. 2022,
    Appendix G: scaled latents have unit variance, as the noise schedules assume); return it."""
    means = torch.cat([ae.encode(images[i : i + batch_size]).mean for i in range(0, len(images), batch_size)])
    factor = 1.0 / means.float().std().item()
    ae.scaling_factor.fill_(factor)
    return factor
