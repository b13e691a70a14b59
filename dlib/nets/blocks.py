"""Building blocks of the denoising networks: time embedding, normalisation, residual and attention blocks.

Derived in notebook 03 (the sinusoidal embedding, GroupNorm, the residual block with FiLM time
injection, self-attention, down- and upsampling); cross-attention to text tokens in notebook 06.
Every block maps (B, C, H, W) feature maps; t is a tensor of shape (B,).
"""

from __future__ import annotations

import math

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
    """GroupNorm over ``channels`` with ``norm_groups(channels)`` groups."""
    return nn.GroupNorm(norm_groups(channels), channels)


def null_prompt(null_token: torch.Tensor, batch: int, length: int) -> dict[str, torch.Tensor]:
    """The "no prompt" condition built from a learned token (1, 1, D): ``dict(context (batch, length, D),
    context_mask (batch, length))``, the token first and masked padding after, so that it can share a batch
    with prompts of ``length`` tokens (classifier-free guidance, and prompt dropout in training)."""
    D = null_token.shape[-1]
    context = torch.cat([null_token, null_token.new_zeros(1, length - 1, D)], dim=1)
    mask = torch.arange(length, device=context.device) == 0
    return {"context": context.expand(batch, -1, -1), "context_mask": mask.expand(batch, -1)}


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
    """Halve the resolution with a stride-2 3x3 convolution (learned, unlike pooling)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling, then a 3x3 convolution to smooth the blocks."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)
