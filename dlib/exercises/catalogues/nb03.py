"""Notebook 03 (the U-Net): hints, catalogued mistakes and references of its checked exercises.

One dict per exercise, passed whole to its checker (``check_function(..., **nb03.timestep_embedding)``).
Each wrong implementation imitates a plausible learner's version (or another code base's convention)
and must be told apart from the reference by the notebook's test cases.
"""

from __future__ import annotations

import torch

from dlib import nets

# --- Exercise 1: the sinusoidal timestep embedding ---


def _embedding(t, dim, max_period, *, geometric=True, sin_first=False, pad=True):
    half = dim // 2
    if geometric:
        omega = max_period ** (-torch.arange(half, dtype=torch.float64) / half)
    else:
        omega = torch.linspace(1, 1 / max_period, half, dtype=torch.float64)
    phase = t.double()[:, None] * omega[None, :]
    parts = [torch.sin(phase), torch.cos(phase)] if sin_first else [torch.cos(phase), torch.sin(phase)]
    parts += [torch.zeros(len(t), dim % 2, dtype=torch.float64)] if pad else []
    return torch.cat(parts, dim=1).float()


timestep_embedding = dict(
    reference=nets.timestep_embedding,
    hint=[
        "Check the layout first: which block comes first, and how do the frequencies go from fastest to slowest?",
        "dim // 2 frequencies, spaced geometrically (a constant ratio) from 1 down towards 1 / max_period; the cos block "
        "first, then the sin block, then one zero column when dim is odd.",
        "omega_i = max_period ** (-i / (dim // 2)) for i = 0..dim//2-1; "
        "cat([cos(t*omega), sin(t*omega), zeros(B, dim % 2)], dim=1).",
    ],
    mistakes={
        "sin and cos swapped: the cos block comes first": lambda t, dim, max_period=10_000.0: _embedding(
            t, dim, max_period, sin_first=True
        ),
        "frequencies spaced linearly, not geometrically (constant ratio) from 1 to 1 / max_period": lambda t, dim, max_period=10_000.0: (
            _embedding(t, dim, max_period, geometric=False)
        ),
        "no zero column for an odd dim": lambda t, dim, max_period=10_000.0: _embedding(t, dim, max_period, pad=False),
    },
)

# --- Exercise 2: a ResBlock's parameter count ---


def counted_resblock_params(c_in: int, c_out: int, emb_dim: int) -> int:
    """The parameters of ``dlib.nets.ResBlock(c_in, c_out, emb_dim)``, counted: sum(p.numel())."""
    return sum(p.numel() for p in nets.ResBlock(c_in, c_out, emb_dim).parameters())


resblock_params = dict(
    reference=counted_resblock_params,
    hint=[
        "List the block's layers from its code (print(nets.ResBlock(32, 64, 128))) and count each one's weights and biases.",
        "Two GroupNorms with a scale and a shift per channel, two 3x3 convolutions with biases, one Linear from the "
        "embedding to a scale and a shift per output channel, and a 1x1 skip convolution only when the width changes.",
        "2 c_in + 2 c_out + (9 c_in c_out + c_out) + (9 c_out^2 + c_out) + (emb 2 c_out + 2 c_out) "
        "+ (c_in c_out + c_out if c_in != c_out).",
    ],
    mistakes={
        "a 1x1 skip convolution counted even when c_in == c_out (then the skip is the identity)": lambda c_in, c_out, emb_dim: (
            counted_resblock_params(c_in, c_out, emb_dim) + (c_in * c_out + c_out) * (c_in == c_out)
        ),
        "the time projection maps to c_out (a shift) instead of 2 c_out (a scale and a shift)": lambda c_in, c_out, emb_dim: (
            counted_resblock_params(c_in, c_out, emb_dim) - (emb_dim * c_out + c_out)
        ),
        "the GroupNorms' per-channel scale and shift left out": lambda c_in, c_out, emb_dim: (
            counted_resblock_params(c_in, c_out, emb_dim) - 2 * c_in - 2 * c_out
        ),
    },
)

# --- Exercise 3: multi-head self-attention from a layer's parts ---


def layer_output(x: torch.Tensor, layer: nets.SelfAttention) -> torch.Tensor:
    """What ``dlib.nets.SelfAttention`` computes: the layer called on x."""
    return layer(x)


def _attention(x, layer, scale_of, axis=-1):
    B, C, H, W = x.shape
    d = C // layer.heads
    q, k, v = layer.qkv(layer.norm(x)).reshape(B, 3, layer.heads, d, H * W).transpose(-1, -2).unbind(1)
    weights = torch.softmax(q @ k.transpose(-1, -2) * scale_of(d, C), dim=axis)
    return x + layer.proj_out((weights @ v).transpose(-1, -2).reshape(B, C, H, W))


self_attention = dict(
    reference=layer_output,
    hint=[
        "Compare shapes step by step: positions are the tokens, each head works on its own d = C // heads channels, "
        "and the attention logits need a scale.",
        "reshape qkv(norm(x)) to (B, 3, heads, d, H*W) and move positions before channels, (B, heads, N, d); divide the "
        "logits by sqrt(d), the head dimension, and normalise each query's row (the last axis).",
        "weights = softmax(q k^T / sqrt(d), dim=-1); h = weights v, heads back into channels; return x + proj_out(h).",
    ],
    mistakes={
        "attention logits without the 1 / sqrt(d) scaling": lambda x, layer: _attention(x, layer, lambda d, C: 1.0),
        "logits scaled by 1 / sqrt(C), the full width, instead of 1 / sqrt(d), the head dimension": lambda x, layer: (
            _attention(x, layer, lambda d, C: C**-0.5)
        ),
        "softmax over the keys' axis swapped: each query's row (the last axis) must sum to 1": lambda x, layer: (
            _attention(x, layer, lambda d, C: d**-0.5, axis=-2)
        ),
    },
)
