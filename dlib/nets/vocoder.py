"""The diffusion vocoder of notebook 09: mel spectrogram -> waveform, DiffWave's network with WaveGrad's
noise-level conditioning.

Contract: ``Vocoder(cfg)(x_t (B, 1, L), level (B,), mel (B, n_mels, F)) -> eps_hat (B, 1, L)`` with
L = F * hop. ``level`` is sqrt(alpha_bar), the signal's share of x_t = level * x_0 + sqrt(1 - level^2) eps,
a real number in (0, 1], not a step index: the network never learns which schedule made it, so the
number of sampling steps can change after training (Chen et al. 2021, WaveGrad, sec. 3).

Architecture (Kong et al. 2021, DiffWave, sec. 3 and fig. 2, at a CPU-sized width): the mel is
upsampled to the sample rate by 2-D transposed convolutions (one per factor of the hop); a stack of
residual layers, each a dilated convolution (dilation 2^(i mod cycle)) plus the layer's projection of
the upsampled mel, a tanh * sigmoid gate, and a 1x1 convolution split into a residual and a skip part;
the skips summed into the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlib.nets.blocks import timestep_embedding, zero_init


@dataclass
class VocoderConfig:
    n_mels: int = 32
    upsample: tuple[int, ...] = (16, 12)  # the hop (192 samples per mel frame) as a product of factors
    channels: int = 32  # residual channels (DiffWave's base model: 64)
    layers: int = 12  # residual layers (DiffWave: 30)
    cycle: int = 6  # dilations 1, 2, ..., 2^(cycle - 1), repeated
    level_scale: float = 5000.0  # WaveGrad embeds 5000 * sqrt(alpha_bar) sinusoidally
    embed_dim: int = 128

    def __post_init__(self):
        if not self.upsample or any(s < 2 or s % 2 for s in self.upsample):
            raise ValueError(
                f"VocoderConfig.upsample must be even factors >= 2 (a transposed convolution with kernel 2s, stride s and "
                f"padding s/2 multiplies the length by exactly s only for even s), got {self.upsample}"
            )

    @property
    def hop(self) -> int:
        return math.prod(self.upsample)


class Upsampler(nn.Module):
    """(B, n_mels, F) -> (B, n_mels, F * hop): a transposed convolution per factor, over time only."""

    def __init__(self, factors: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.ConvTranspose2d(1, 1, (3, 2 * s), stride=(1, s), padding=(1, s // 2)) for s in factors
        )
        for conv in self.convs:  # start as a smooth interpolation: each output averages 2 frames x 3 bands
            nn.init.constant_(conv.weight, 1 / 6)
            nn.init.zeros_(conv.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = mel.unsqueeze(1)
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.4)
        return h.squeeze(1)


class ResidualLayer(nn.Module):
    def __init__(self, channels: int, n_mels: int, dilation: int, embed_dim: int):
        super().__init__()
        self.level = nn.Linear(embed_dim, channels)
        self.dilated = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.cond = nn.Conv1d(n_mels, 2 * channels, 1)
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.dilated(x + self.level(emb)[:, :, None]) + self.cond(cond)
        gate, filt = h.chunk(2, dim=1)
        residual, skip = self.out(torch.sigmoid(gate) * torch.tanh(filt)).chunk(2, dim=1)
        return (x + residual) / math.sqrt(2), skip


class Vocoder(nn.Module):
    def __init__(self, cfg: VocoderConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or VocoderConfig()
        self.upsampler = Upsampler(cfg.upsample)
        self.embed = nn.Sequential(
            nn.Linear(cfg.embed_dim, 4 * cfg.embed_dim),
            nn.SiLU(),
            nn.Linear(4 * cfg.embed_dim, cfg.embed_dim),
            nn.SiLU(),
        )
        self.inp = nn.Conv1d(1, cfg.channels, 1)
        self.layers = nn.ModuleList(
            ResidualLayer(cfg.channels, cfg.n_mels, 2 ** (i % cfg.cycle), cfg.embed_dim) for i in range(cfg.layers)
        )
        self.skip = nn.Conv1d(cfg.channels, cfg.channels, 1)
        self.head = zero_init(nn.Conv1d(cfg.channels, 1, 1))  # eps_hat = 0 at initialisation

    def forward(self, x_t: torch.Tensor, level: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if mel.ndim != 3 or mel.shape[1] != cfg.n_mels:
            raise ValueError(f"Vocoder: mel must have shape (B, {cfg.n_mels}, frames), got {tuple(mel.shape)}")
        if x_t.ndim != 3 or x_t.shape[1] != 1 or x_t.shape[-1] != mel.shape[-1] * cfg.hop:
            raise ValueError(
                f"Vocoder: x_t must have shape (B, 1, frames * {cfg.hop}) = (B, 1, {mel.shape[-1] * cfg.hop}) for "
                f"{mel.shape[-1]} mel frames, got {tuple(x_t.shape)}"
            )
        if level.shape != (len(x_t),):
            raise ValueError(
                f"Vocoder: level (sqrt(alpha_bar)) must have shape ({len(x_t)},), got {tuple(level.shape)}"
            )
        emb = self.embed(timestep_embedding(cfg.level_scale * level, cfg.embed_dim))
        cond = self.upsampler((mel + 1) / 2)  # [0, 1], DiffWave's mel range: the leaky ReLUs start as the identity
        h = F.relu(self.inp(x_t))
        skips = 0
        for layer in self.layers:
            h, skip = layer(h, emb, cond)
            skips = skips + skip
        return self.head(F.relu(self.skip(skips / math.sqrt(len(self.layers)))))
