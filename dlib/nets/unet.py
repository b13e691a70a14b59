"""The DDPM-style U-Net: the image denoiser of the course.

Derived in notebook 03 (levels, skip connections, where attention goes); its class labels and
text cross-attention for guidance in notebook 06. The blocks live in ``dlib.nets.blocks``.
Contract: ``UNet(cfg)(x_t (B, C, H, W), t (B,), y=None, context=None, context_mask=None)``
-> (B, C_out, H, W), the channels and depth from ``UNetConfig``, any H and W divisible by
2^(levels - 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlib.nets.blocks import (
    CrossAttention,
    Downsample,
    ResBlock,
    SelfAttention,
    Upsample,
    group_norm,
    null_prompt,
    timestep_embedding,
    zero_init,
)


@dataclass
class UNetConfig:
    """The U-Net's architecture; its fields are stored in every checkpoint's card."""

    in_channels: int = 1  # image channels (1 for MNIST, 3 for RGB); any H, W divisible by 2^(levels - 1)
    out_channels: int | None = None  # defaults to in_channels (eps, x_0 or v have the image's shape)
    base_channels: int = 32  # channels at full resolution
    channel_mults: tuple[int, ...] = (1, 2, 2)  # channels per level = base * mult; one downsample between levels
    num_res_blocks: int = 2  # residual blocks per level on the way down (one more on the way up)
    # levels (0 = full resolution) with self-attention; the middle always has it
    attention_levels: tuple[int, ...] = (2,)
    heads: int = 1  # attention heads
    dropout: float = 0.0
    num_classes: int | None = None  # class-conditional: label embedding added to the time embedding
    # text-conditional: cross-attention to (B, L, context_dim) tokens at the attention levels and the middle
    context_dim: int | None = None


class AttnStack(nn.Module):
    """Self-attention, then cross-attention to the context when the U-Net has one."""

    def __init__(self, channels: int, cfg: UNetConfig):
        super().__init__()
        self.self_attn = SelfAttention(channels, cfg.heads)
        self.cross_attn = CrossAttention(channels, cfg.context_dim, cfg.heads) if cfg.context_dim else None

    def forward(
        self, h: torch.Tensor, context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.self_attn(h)
        if self.cross_attn is not None:
            if context is None:
                raise ValueError(
                    "this U-Net has cross-attention (context_dim is set): pass context=(B, L, context_dim)"
                )
            h = self.cross_attn(h, context, context_mask)
        return h


class UNet(nn.Module):
    """A DDPM-style U-Net (Ho et al. 2020; Nichol & Dhariwal 2021): residual blocks with time
    injection, self-attention at chosen levels, and skip connections from the down path to the up path.

    forward(x_t (B, C, H, W), t (B,), y=None (B,) labels, context=None (B, L, D), context_mask=None (B, L))
    -> (B, C_out, H, W). A conditional U-Net called without its condition (y=None, context=None) is the
    unconditional model. C is ``cfg.in_channels``; H and W may be any size divisible by 2^(levels - 1).
    """

    def __init__(self, cfg: UNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or UNetConfig()
        ch = [cfg.base_channels * m for m in cfg.channel_mults]
        emb_dim = 4 * cfg.base_channels
        self.time_embed = nn.Sequential(nn.Linear(cfg.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # label index num_classes is the "no label" token used for classifier-free guidance
        self.label_embed = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        # text models: a learned "no prompt" token, the unconditional context for classifier-free guidance
        self.null_context = nn.Parameter(0.02 * torch.randn(1, 1, cfg.context_dim)) if cfg.context_dim else None
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)

        self.down, skip_ch, c = nn.ModuleList(), [ch[0]], ch[0]
        for level, c_out in enumerate(ch):
            for _ in range(cfg.num_res_blocks):
                self.down.append(self._level_block(c, c_out, emb_dim, level))
                c = c_out
                skip_ch.append(c)
            if level < len(ch) - 1:
                self.down.append(Downsample(c))
                skip_ch.append(c)
        self.skip_channels = tuple(
            skip_ch
        )  # channels of each skip connection, conv_in's first (a ControlNet adds to them)
        self.mid = nn.ModuleList(
            [ResBlock(c, c, emb_dim, cfg.dropout), AttnStack(c, cfg), ResBlock(c, c, emb_dim, cfg.dropout)]
        )
        self.up = nn.ModuleList()
        for level in reversed(range(len(ch))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(self._level_block(c + skip_ch.pop(), ch[level], emb_dim, level))
                c = ch[level]
            if level > 0:
                self.up.append(Upsample(c))
        self.out = nn.Sequential(
            group_norm(c), nn.SiLU(), zero_init(nn.Conv2d(c, cfg.out_channels or cfg.in_channels, 3, padding=1))
        )

    def _level_block(self, c_in: int, c_out: int, emb_dim: int, level: int) -> nn.ModuleList:
        block = [ResBlock(c_in, c_out, emb_dim, self.cfg.dropout)]
        if level in self.cfg.attention_levels:
            block.append(AttnStack(c_out, self.cfg))
        return nn.ModuleList(block)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        residuals: tuple[list[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        factor = 2 ** (len(self.cfg.channel_mults) - 1)
        if x_t.ndim != 4 or x_t.shape[1] != self.cfg.in_channels or x_t.shape[-1] % factor or x_t.shape[-2] % factor:
            raise ValueError(
                f"x_t must be (B, {self.cfg.in_channels}, H, W) with H and W divisible by {factor}, got {tuple(x_t.shape)}"
            )
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"t must have shape (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
        emb = self.embed(t, y)
        if self.null_context is not None and context is None:
            if context_mask is not None:
                raise ValueError("got context_mask without context")
            context, context_mask = self.null_text(x_t.shape[0], 1).values()
        cond = dict(context=context, context_mask=context_mask)
        h, skips = self.encode(self.conv_in(x_t), emb, cond)
        if residuals is not None:  # a ControlNet's zero-convolution outputs, one per skip and one for the middle
            skip_res, mid_res = residuals
            skips = [s + r for s, r in zip(skips, skip_res, strict=True)]
            h = h + mid_res
        return self.decode(h, skips, emb, cond)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The time embedding (B, emb_dim), plus the label's for a class-conditional U-Net."""
        emb = self.time_embed(timestep_embedding(t, self.cfg.base_channels))  # (B, emb_dim)
        if self.label_embed is not None:
            y = torch.full_like(t, self.cfg.num_classes, dtype=torch.long) if y is None else y
            if y.shape != t.shape or int(y.min()) < 0 or int(y.max()) > self.cfg.num_classes:
                raise ValueError(
                    f"y must be (B,) labels in 0..{self.cfg.num_classes - 1} (or {self.cfg.num_classes} for 'no label'),"
                    f" got shape {tuple(y.shape)} with values in [{int(y.min())}, {int(y.max())}]"
                )
            emb = emb + self.label_embed(y)
        elif y is not None:
            raise ValueError(
                f"this U-Net is unconditional (num_classes is None): expected y=None, got labels of shape {tuple(y.shape)}"
            )
        return emb

    def encode(self, h: torch.Tensor, emb: torch.Tensor, cond: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The down path and the middle from conv_in's output h: (the middle's output, the skips, conv_in's first)."""
        skips = [h]
        for block in self.down:
            h = self._run(block, h, emb, cond)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h, **cond)
        return h, skips

    def decode(self, h: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor, cond: dict) -> torch.Tensor:
        """The up path from the middle's output, taking the skips last-in first-out, then the output layer."""
        skips = list(skips)
        for block in self.up:
            if isinstance(block, Upsample):
                h = block(h)
            else:
                h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb, cond)  # (B, c + c_skip, H, W)
        return self.out(h)

    def null_text(self, batch: int, length: int) -> dict[str, torch.Tensor]:
        """The "no prompt" condition as ``dict(context (batch, length, D), context_mask (batch, length))``:
        the learned null token first, masked padding after, so it can share a batch with prompts of
        ``length`` tokens (classifier-free guidance and label dropout in training)."""
        if self.null_context is None:
            raise ValueError("this U-Net has no cross-attention (context_dim is None)")
        return null_prompt(self.null_context, batch, length)

    @staticmethod
    def _run(block, h, emb, cond):
        if isinstance(block, Downsample):
            return block(h)
        h = block[0](h, emb)
        return block[1](h, **cond) if len(block) > 1 else h
