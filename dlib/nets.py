"""Denoising networks: the U-Net for images and a small MLP for 2D toys.

Derived in notebook 03. One model contract for every denoiser in the course:
``model(x_t, t, y=None, context=None) -> output`` with t of shape (B,) and the output shaped like
x_t (eps_hat, x_0_hat or v_hat, depending on what it was trained to predict).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) times t (B,) -> (B, dim) (Vaswani et al. 2017).

    Frequencies run geometrically from 1 down to 1/max_period; the first half of the output is
    cos, the second sin; an odd ``dim`` gets a zero last column.
    """
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 * half)
    return F.pad(emb, (0, dim % 2))


def norm_groups(channels: int, max_groups: int = 32, min_group_size: int = 4) -> int:
    """The largest group count <= max_groups dividing ``channels`` with >= min_group_size channels per group.

    GroupNorm(32, C) fails unless 32 divides C (the study guide's GroupNorm(32) on a 1-channel
    input raises). Groups of one channel would be instance norm, which erases any per-channel
    offset, so groups keep at least 4 channels when they can: 1 -> 1, 32 -> 8, 64 -> 16, 128 -> 32.
    """
    fits = [g for g in range(1, max_groups + 1) if channels % g == 0 and channels // g >= min_group_size]
    return max(fits, default=1)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(norm_groups(channels), channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and bias so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, then GroupNorm modulated by the time embedding, SiLU-dropout-conv, + skip.

    The embedding enters as a per-channel scale and shift *after* the second normalisation
    (FiLM, as in Nichol & Dhariwal's scale-shift norm): added before a normalisation, an offset
    shared by a whole group would be subtracted away again.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.block1 = nn.Sequential(group_norm(in_ch), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_ch))
        self.norm2 = group_norm(out_ch)
        self.block2 = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1)))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)
        scale, shift = self.emb_proj(emb)[:, :, None, None].chunk(2, dim=1)  # each (B, out_ch, 1, 1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.block2(h)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W spatial positions, with a residual connection."""

    def __init__(self, channels: int, heads: int = 1):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)  # (B, 3, heads, d, HW)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, d): positions attend to positions
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.proj_out(h)


class CrossAttention(nn.Module):
    """Image positions (queries) attend to context tokens (keys, values), e.g. a text encoding.

    Used by the U-Net when ``context_dim`` is set (notebook 06). Permuting the context tokens
    permutes the attention weights (equivariance) and leaves the output unchanged (invariance):
    the tokens act as a set, order enters only through the text encoder. ``context_mask`` (B, L)
    marks real tokens (True) versus padding.
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 1):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = group_norm(channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * channels, bias=False)
        self.proj_out = zero_init(nn.Linear(channels, channels))

    def _qkv(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None):
        B, C, H, W = x.shape
        if context.ndim != 3 or context.shape[0] != B or context.shape[2] != self.to_kv.in_features:
            raise ValueError(
                f"context must have shape (B={B}, L, context_dim={self.to_kv.in_features}), got {tuple(context.shape)}"
            )
        d = C // self.heads
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q = self.to_q(h).reshape(B, H * W, self.heads, d).transpose(1, 2)  # (B, heads, HW, d)
        k, v = self.to_kv(context).reshape(B, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)  # (B, heads, L, d) each
        mask = None if context_mask is None else context_mask[:, None, None, :].bool()  # (B, 1, 1, L)
        return q, k, v, mask

    def attention_weights(self, x: torch.Tensor, context: torch.Tensor, context_mask=None) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) over the tokens: (B, heads, H*W, L), each row sums to 1 (for the
        attention maps of notebook 06; ``forward`` computes the same weights inside a fused kernel)."""
        q, k, _, mask = self._qkv(x, context, context_mask)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(-1)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v, mask = self._qkv(x, context, context_mask)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, HW, d)
        out = self.proj_out(out.transpose(1, 2).reshape(B, H * W, C))  # (B, HW, C)
        return x + out.transpose(1, 2).reshape(B, C, H, W)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


@dataclass
class UNetConfig:
    in_channels: int = 1  # image channels (1 for MNIST)
    out_channels: int | None = None  # defaults to in_channels (eps, x_0 or v have the image's shape)
    base_channels: int = 32  # channels at full resolution
    channel_mults: tuple[int, ...] = (1, 2, 2)  # channels per level = base * mult; one downsample between levels
    num_res_blocks: int = 2  # residual blocks per level on the way down (one more on the way up)
    attention_levels: tuple[int, ...] = (
        2,
    )  # levels (0 = full resolution) with self-attention; the middle always has it
    heads: int = 1  # attention heads
    dropout: float = 0.0
    num_classes: int | None = None  # class-conditional: label embedding added to the time embedding
    context_dim: int | None = (
        None  # text-conditional: cross-attention to (B, L, context_dim) tokens at attention levels
    )


class AttnStack(nn.Module):
    """Self-attention, then cross-attention to the context when the U-Net has one."""

    def __init__(self, channels: int, cfg: UNetConfig):
        super().__init__()
        self.self_attn = SelfAttention(channels, cfg.heads)
        self.cross_attn = CrossAttention(channels, cfg.context_dim, cfg.heads) if cfg.context_dim else None

    def forward(self, h, context=None, context_mask=None):
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

    forward(x_t (B, C, H, W), t (B,), y=None (B,) labels, context=None (B, L, D)) -> (B, C_out, H, W).
    A conditional U-Net called without its condition (y=None, context=None) is the unconditional model.
    H and W must be divisible by 2^(levels - 1).
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

    def forward(self, x_t, t, y=None, context=None, context_mask=None):
        factor = 2 ** (len(self.cfg.channel_mults) - 1)
        if x_t.ndim != 4 or x_t.shape[1] != self.cfg.in_channels or x_t.shape[-1] % factor or x_t.shape[-2] % factor:
            raise ValueError(
                f"x_t must be (B, {self.cfg.in_channels}, H, W) with H and W divisible by {factor}, got {tuple(x_t.shape)}"
            )
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"t must have shape (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
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
            raise ValueError("this U-Net is unconditional (num_classes is None) but got labels y")
        if self.null_context is not None and context is None:
            if context_mask is not None:
                raise ValueError("got context_mask without context")
            context, context_mask = self.null_text(x_t.shape[0], 1).values()
        cond = dict(context=context, context_mask=context_mask)

        h = self.conv_in(x_t)
        skips = [h]
        for block in self.down:
            h = self._run(block, h, emb, cond)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h, **cond)
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
        D = self.null_context.shape[-1]
        context = torch.cat([self.null_context, self.null_context.new_zeros(1, length - 1, D)], dim=1)
        mask = torch.arange(length, device=context.device) == 0
        return {"context": context.expand(batch, -1, -1), "context_mask": mask.expand(batch, -1)}

    @staticmethod
    def _run(block, h, emb, cond):
        if isinstance(block, Downsample):
            return block(h)
        h = block[0](h, emb)
        return block[1](h, **cond) if len(block) > 1 else h


class MLPDenoiser(nn.Module):
    """A small MLP denoiser for 2D toy data: [x_t, embedding(t)] -> output of x_t's shape."""

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 3, emb_dim: int = 32):
        super().__init__()
        self.emb_dim = emb_dim
        blocks, width = [], dim + emb_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        if x_t.ndim != 2:
            raise ValueError(f"MLPDenoiser expects x_t of shape (B, dim), got {tuple(x_t.shape)}")
        return self.net(torch.cat([x_t, timestep_embedding(t, self.emb_dim)], dim=1))


class Classifier(nn.Module):
    """A small CNN classifier for 28x28 (or 32x32) grey images.

    ``features(x)`` returns the penultimate activations, used as an FID feature space; ``forward``
    returns logits. Inputs in [-1, 1].
    """

    def __init__(self, num_classes: int = 10, width: int = 32, feature_dim: int = 128):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),  # keep a 4x4 layout: where a stroke is matters for digits
            nn.Linear(2 * w * 16, feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes)


class NoisyClassifier(nn.Module):
    """p(y | x_t, t): a classifier of *noisy* images, for classifier guidance (Dhariwal & Nichol 2021).

    Three residual blocks with the U-Net's time injection (28 -> 14 -> 7 pixels), global average
    pooling, a linear head. forward(x_t (B, 1, H, W), t (B,)) -> logits (B, num_classes).
    """

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.width = width
        self.time_embed = nn.Sequential(nn.Linear(width, 4 * width), nn.SiLU(), nn.Linear(4 * width, 4 * width))
        self.conv_in = nn.Conv2d(1, width, 3, padding=1)
        widths = [(width, width), (width, 2 * width), (2 * width, 2 * width)]
        self.blocks = nn.ModuleList(ResBlock(a, b, 4 * width) for a, b in widths)
        self.head = nn.Sequential(
            group_norm(2 * width), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes)
        )

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.width))
        h = self.conv_in(x_t)
        for i, block in enumerate(self.blocks):
            h = block(h, emb)
            if i < len(self.blocks) - 1:
                h = F.avg_pool2d(h, 2)
        return self.head(h)
