"""Captions generated from the data, for text-conditional models (notebook 06).

A caption names the digit or garment in one of several wordings and, often, adds attributes
*measured from the image itself*, so that text says more than the label does:

    size       height of the ink's bounding box          "small", "large"
    thickness  stroke width, 2 * ink area / ink perimeter "thin", "thick"
    slant      horizontal shear of the ink's pixels       "slanted left", "slanted right"
    darkness   mean brightness of the ink (Fashion-MNIST)  "dark", "light"

An attribute word is used only where the measurement is in the outer third of the training set's
distribution (``AttributeScale`` holds those tercile cut points), so "thick" means thicker than
most. Wordings are drawn with a seeded generator. Held-out paraphrases ("the number after six")
never appear in training captions; they test whether the text encoder, not a lookup table,
carries the meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GARMENTS = (
    "T-shirt",
    "pair of trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
ATTRIBUTES = ("size", "thickness", "slant", "darkness")
WORDS = {  # attribute -> (word for the low third, word for the high third)
    "size": ("small", "large"),
    "thickness": ("thin", "thick"),
    "slant": ("slanted left", "slanted right"),
    "darkness": ("light", "dark"),
}
TRAINING_WORDING = "the digit {name}"  # one of the training templates; the baseline for held-out paraphrases
TEMPLATES = {
    "mnist": (
        "a handwritten {name}",
        TRAINING_WORDING,
        "a {adj}{name}",
        "the number {digit}",
        "a picture of a {adj}{name}",
    ),
    "fashion-mnist": ("a {adj}{name}", "a photo of a {adj}{name}", "a product shot of a {name}", "{adj}{name}"),
}
HELD_OUT = {  # paraphrases never used in training: (caption, label)
    "mnist": tuple(
        [(f"the number after {DIGITS[d - 1]}", d) for d in range(1, 10)]
        + [(f"the number before {DIGITS[d + 1]}", d) for d in range(9)]
        + [(f"{d} written by hand", d) for d in range(10)]
        + [(f"a sketch of the numeral {DIGITS[d]}", d) for d in range(10)]
    ),
    "fashion-mnist": (("footwear for the ankle", 9), ("a pair of pants", 1), ("a handbag", 8), ("a running shoe", 7)),
}


def measure(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image attributes of images (N, 1, H, W) in [-1, 1]; each value has shape (N,).

    Ink is a pixel above 0 (the midpoint of the range). size: rows spanned by ink; thickness:
    2 * ink area / ink perimeter (a stroke of width w and length L has area wL and perimeter ~2L);
    slant: the least-squares shear dx/dy of ink pixels (positive leans right, as y grows
    downwards); darkness: 1 - mean brightness of ink pixels, in [0, 1].
    """
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (N, 1, H, W), got {tuple(images.shape)}")
    x = images[:, 0].double()
    ink = x > 0
    N, H, W = x.shape
    area = ink.sum((1, 2)).clamp(min=1)
    rows = ink.any(2)
    idx = torch.arange(H, dtype=torch.float64)
    top = torch.where(rows, idx, torch.full_like(idx, H)).min(1).values
    bottom = torch.where(rows, idx, torch.full_like(idx, -1)).max(1).values
    size = (bottom - top + 1).clamp(min=0)
    padded = torch.nn.functional.pad(ink, (1, 1, 1, 1))
    interior = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    perimeter = (ink & ~interior).sum((1, 2)).clamp(min=1)
    yy, xx = torch.meshgrid(idx, torch.arange(W, dtype=torch.float64), indexing="ij")
    w = ink.double()
    my, mx = (w * yy).sum((1, 2)) / area, (w * xx).sum((1, 2)) / area
    cov = (w * (yy - my[:, None, None]) * (xx - mx[:, None, None])).sum((1, 2))
    var_y = (w * (yy - my[:, None, None]) ** 2).sum((1, 2)).clamp(min=1e-9)
    brightness = (w * (x + 1) / 2).sum((1, 2)) / area
    out = {"size": size, "thickness": 2 * area / perimeter, "slant": -cov / var_y, "darkness": 1 - brightness}
    return {k: v.double() for k, v in out.items()}


@dataclass(frozen=True)
class AttributeScale:
    """Tercile cut points of each attribute over a reference set (the training images)."""

    low: dict[str, float]
    high: dict[str, float]

    @classmethod
    def fit(cls, images: torch.Tensor) -> AttributeScale:
        m = measure(images)
        q = torch.tensor([1 / 3, 2 / 3], dtype=torch.float64)
        cuts = {k: torch.quantile(v, q).tolist() for k, v in m.items()}
        return cls({k: c[0] for k, c in cuts.items()}, {k: c[1] for k, c in cuts.items()})

    def words(self, measured: dict[str, torch.Tensor], i: int, attributes=ATTRIBUTES) -> list[str]:
        """The attribute words that apply to image i (outer thirds only)."""
        out = []
        for a in attributes:
            v = measured[a][i].item()
            if v < self.low[a]:
                out.append(WORDS[a][0])
            elif v > self.high[a]:
                out.append(WORDS[a][1])
        return out


def captions(
    labels: torch.Tensor,
    images: torch.Tensor,
    dataset: str,
    scale: AttributeScale,
    generator: torch.Generator,
    p_attribute: float = 0.7,
) -> list[str]:
    """One caption per image: a random wording of its label, with its measured attribute words
    (each kept with probability ``p_attribute``) where the template has room for them."""
    if dataset not in TEMPLATES:
        raise ValueError(f"no captions for dataset {dataset!r}; expected one of {sorted(TEMPLATES)}")
    names = DIGITS if dataset == "mnist" else GARMENTS
    attributes = ("size", "thickness", "slant") if dataset == "mnist" else ("size", "darkness")
    measured = measure(images)
    templates = TEMPLATES[dataset]
    pick = torch.randint(len(templates), (len(labels),), generator=generator).tolist()
    keep = (torch.rand(len(labels), len(attributes), generator=generator) < p_attribute).tolist()
    out = []
    for i, (label, t) in enumerate(zip(labels.tolist(), pick, strict=True)):
        words = [w for w, k in zip(scale.words(measured, i, attributes), keep[i], strict=False) if k]
        slant = [w for w in words if w.startswith("slanted")]
        adj = "".join(f"{w} " for w in words if not w.startswith("slanted"))
        text = templates[t].format(name=names[label], digit=label, adj=adj)
        if slant and "{adj}" in templates[t]:
            text += f", {slant[0]}"
        out.append(" ".join(text.split()))
    return out
