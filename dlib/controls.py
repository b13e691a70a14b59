"""What an edit is conditioned on: inpainting masks and the edge maps a ControlNet follows. Notebook 08.

Convention (diffusers' and Stable Diffusion's inpainting): a mask is 1 where the image is to be
generated and 0 where it is known, shaped (B, 1, H, W) or (1, 1, H, W), values exactly 0 or 1.
Images are in [-1, 1] as everywhere in the course. ``check_mask`` and ``check_control`` give the
clear errors of bad input; ``random_masks`` draws the training masks of the inpainting model from
the run's generator, so a resumed run repeats them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PRESETS = ("centre", "bottom", "right", "strokes")  # the masks notebook 08 compares methods on
SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def check_mask(mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``mask`` as a float tensor broadcastable to ``image`` (B, C, H, W), or a ValueError saying what was expected."""
    if (
        mask.ndim != 4
        or mask.shape[1] != 1
        or mask.shape[-2:] != image.shape[-2:]
        or mask.shape[0] not in (1, len(image))
    ):
        raise ValueError(
            f"mask must be (B, 1, H, W) or (1, 1, H, W) with H, W = {tuple(image.shape[-2:])} of the image "
            f"(1 = generate, 0 = keep), got {tuple(mask.shape)}"
        )
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError(
            "mask must be binary (1 = generate, 0 = keep); got values other than 0 and 1: threshold it, e.g. (m > 0.5).float()"
        )
    return mask.to(image.dtype)


def check_control(control: torch.Tensor, x: torch.Tensor, channels: int) -> None:
    """A control image must match the noisy image's batch and size: (B, channels, H, W)."""
    want = (x.shape[0], channels, *x.shape[-2:])
    if control.ndim != 4 or tuple(control.shape) != want:
        raise ValueError(
            f"control must be (B, C, H, W) = {want}, the size of the image it steers; got {tuple(control.shape)}"
        )


def edge_map(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Binary edges of images x (B, 1, H, W) in [-1, 1]: Sobel gradient magnitude above ``threshold`` -> {0, 1}.

    The control of notebook 08's ControlNet: computed from any image without labels (as Canny edges are
    for Stable Diffusion's), dense enough to pin the shape, loose enough to leave stroke width and
    texture to the model, and measurable (IoU of the edge maps of a sample and of its control)."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"edge_map takes grey images (B, 1, H, W), got {tuple(x.shape)}")
    k, xp = SOBEL.to(x), F.pad(x, (1, 1, 1, 1), mode="replicate")  # replicate: no false edge at the border
    gx, gy = F.conv2d(xp, k[None, None]), F.conv2d(xp, k.T[None, None])
    return ((gx**2 + gy**2).sqrt() > threshold).to(x.dtype)


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of binary maps (B, ...) -> (B,); 1 when both are empty."""
    a, b = a.flatten(1) > 0.5, b.flatten(1) > 0.5
    inter, union = (a & b).sum(1).float(), (a | b).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def preset_mask(kind: str, size: int = 28, seed: int = 0) -> torch.Tensor:
    """One of ``PRESETS`` as a (1, 1, size, size) mask: a centre square (half the side), the bottom half,
    the right half, or random strokes (fixed by ``seed``)."""
    m = torch.zeros(1, 1, size, size)
    if kind == "centre":
        a = size // 4
        m[..., a : size - a, a : size - a] = 1
    elif kind == "bottom":
        m[..., size // 2 :, :] = 1
    elif kind == "right":
        m[..., :, size // 2 :] = 1
    elif kind == "strokes":
        m = _strokes(1, size, torch.Generator().manual_seed(seed))
    else:
        raise ValueError(f"mask preset must be one of {PRESETS}, got {kind!r}")
    return m


def draw_segments(segments: torch.Tensor, size: int = 28, width: float = 3.0) -> torch.Tensor:
    """Straight strokes as binary images: ``segments`` (n, k, 2, 2) holds k segments per image, each two
    (row, column) end points in pixels; returns (n, 1, size, size), 1 within ``width`` / 2 of a segment.
    Masks of random strokes, and the crude drawings notebook 08 edits."""
    if segments.ndim != 4 or segments.shape[-2:] != (2, 2):
        raise ValueError(f"segments must be (n, k, 2 ends, (row, column)), got {tuple(segments.shape)}")
    ij = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij"), -1).float()  # (H, W, 2)
    a, b = segments[:, :, 0, None, None].float(), segments[:, :, 1, None, None].float()  # (n, k, 1, 1, 2)
    ab = b - a
    s = (((ij - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-6)).clamp(0, 1)  # projection onto the segment
    dist = (ij - (a + s[..., None] * ab)).norm(dim=-1)  # (n, k, H, W)
    return (dist.min(1).values <= width / 2).float()[:, None]


def _strokes(n: int, size: int, gen: torch.Generator, count: int = 4, width: int = 3) -> torch.Tensor:
    """n masks (n, 1, size, size) of ``count`` random straight strokes ``width`` pixels wide."""
    return draw_segments(torch.rand(n, count, 2, 2, generator=gen) * (size - 1), size, width)


def random_masks(n: int, size: int, gen: torch.Generator, p_full: float = 0.1) -> torch.Tensor:
    """The inpainting model's training masks (n, 1, size, size): random boxes, random halves and random
    strokes in equal shares, and a share ``p_full`` of all-ones masks (nothing known: the model stays an
    unconditional generator, as Stable Diffusion's inpainting model is trained)."""
    kind = torch.randint(0, 3, (n,), generator=gen)
    masks = torch.zeros(n, 1, size, size)
    lo = torch.randint(0, size // 2, (n, 2), generator=gen)
    side = torch.randint(size // 4, size // 2 + 1, (n, 2), generator=gen)
    half = torch.randint(0, 4, (n,), generator=gen)
    strokes = _strokes(n, size, gen)
    i, j = torch.arange(size)[:, None], torch.arange(size)[None, :]
    for k in range(n):
        if kind[k] == 0:
            masks[k, 0, lo[k, 0] : lo[k, 0] + side[k, 0], lo[k, 1] : lo[k, 1] + side[k, 1]] = 1
        elif kind[k] == 1:
            masks[k, 0] = [i >= size // 2, i < size // 2, j >= size // 2, j < size // 2][int(half[k])].float()
        else:
            masks[k] = strokes[k]
    full = torch.rand(n, generator=gen) < p_full
    masks[full] = 1.0
    return masks
