"""Datasets that ship with the course, verified by sha256, and 2D toy distributions.

Images come back as float32 tensors (N, 1, H, W) scaled to [-1, 1] (0 -> -1, 255 -> 1), labels
as int64 (N,). Every file in ``data/`` is listed in ``data/MANIFEST.sha256`` (the format of
``sha256sum``, so ``cd data && sha256sum -c MANIFEST.sha256`` checks them too) and verified the
first time it is read in a process. Nothing is downloaded.

A file over the repository's 20 MB per-file limit ships in byte-range parts ``NAME.part1``,
``NAME.part2``, ... with ``NAME.sha256`` holding the whole file's published sha256 (see
``verified_bytes``); ``cat NAME.part1 NAME.part2 > NAME`` rebuilds the published file.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

DATASETS = {"mnist": "mnist", "fashion-mnist": "fashion-mnist"}
SPLITS = {"train": "train", "test": "t10k"}
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MANIFEST = "MANIFEST.sha256"


class DataError(RuntimeError):
    """A shipped data file is missing, corrupt or not listed in the manifest."""


def data_dir() -> Path:
    """The folder holding the shipped data: ``$DLIB_DATA`` if set, else ``data/`` beside ``dlib/``."""
    return Path(os.environ.get("DLIB_DATA", Path(__file__).resolve().parent.parent / "data"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(root: Path | None = None) -> dict[str, str]:
    """Map relative path -> expected sha256, from ``data/MANIFEST.sha256``."""
    root = root or data_dir()
    path = root / MANIFEST
    if not path.exists():
        raise DataError(
            f"no manifest at {path}: the data folder is incomplete (expected {MANIFEST} listing every file)"
        )
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            entries[name.lstrip("*")] = digest
    return entries


def verified_path(relative: str, root: Path | None = None) -> Path:
    """Return the path of a shipped file after checking its sha256 against the manifest."""
    root = root or data_dir()
    return _verify(str(root), relative)


@cache
def _verify(root: str, relative: str) -> Path:
    expected = read_manifest(Path(root)).get(relative)
    if expected is None:
        raise DataError(f"{relative} is not listed in {root}/{MANIFEST}; every shipped file must have a sha256 entry")
    path = Path(root) / relative
    if not path.exists():
        raise DataError(f"missing data file {path}; restore it with `git checkout -- data/{relative}`")
    actual = sha256(path)
    if actual != expected:
        raise DataError(
            f"corrupt data file {path}: sha256 {actual} does not match the manifest's {expected}; "
            f"restore it with `git checkout -- data/{relative}`"
        )
    return path


def verified_bytes(relative: str, root: Path | None = None) -> bytes:
    """The bytes of a shipped file, checked against the manifest; a file stored in parts is reassembled.

    When the manifest lists ``NAME.part1``, ``NAME.part2``, ... instead of ``NAME``, each part is
    verified like any shipped file, then their concatenation is checked against the published
    sha256 kept in ``NAME.sha256`` (itself listed in the manifest, in ``sha256sum`` format).
    """
    root = root or data_dir()
    manifest = read_manifest(root)
    parts: list[str] = []
    while f"{relative}.part{len(parts) + 1}" in manifest:
        parts.append(f"{relative}.part{len(parts) + 1}")
    if relative in manifest or not parts:
        return verified_path(relative, root).read_bytes()
    note = f"{relative}.sha256"
    published = verified_path(note, root).read_text().split()[0]
    blob = b"".join(verified_path(part, root).read_bytes() for part in parts)
    actual = hashlib.sha256(blob).hexdigest()
    if actual != published:
        raise DataError(
            f"{relative} reassembled from {', '.join(parts)} has sha256 {actual}, not the published {published} "
            f"in {note}; restore them with `git checkout -- data/{MANIFEST} data/{relative}.*`"
        )
    return blob


def _read_idx(relative: str) -> np.ndarray:
    """Read a verified gzipped IDX file (the MNIST format: magic, dims, then uint8 data)."""
    raw = gzip.decompress(verified_bytes(relative))
    ndim = raw[3]
    if raw[:3] != b"\x00\x00\x08" or ndim not in (1, 3):
        raise DataError(f"{relative} is not an IDX file of unsigned bytes (header {raw[:4].hex()})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise DataError(f"{relative} is truncated: header says {shape}, found {data.size} values")
    return data.reshape(shape)


def load_images(
    name: str = "mnist", split: str = "train", *, pad_to_32: bool = False, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST or Fashion-MNIST: images (N, 1, 28, 28) in [-1, 1] and labels (N,).

    ``pad_to_32`` pads two background pixels (value -1) on each side, giving 32x32 images that
    halve cleanly three times in a U-Net. ``limit`` keeps the first ``limit`` examples.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    prefix = f"{DATASETS[name]}/{SPLITS[split]}"
    images = _read_idx(f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(f"{prefix}-labels-idx1-ubyte.gz")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.copy()).float().div(127.5).sub(1.0).unsqueeze(1)  # (N, 1, 28, 28)
    if pad_to_32:
        x = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)  # (N, 1, 32, 32)
    return x, torch.from_numpy(labels.astype(np.int64))


def image_dataset(name: str = "mnist", split: str = "train", **kwargs) -> TensorDataset:
    """The same data as a ``TensorDataset`` of (image, label) pairs, for a ``DataLoader``."""
    return TensorDataset(*load_images(name, split, **kwargs))


FSDD = "fsdd/fsdd.npz"
FSDD_TEST_INDICES = range(5)  # the dataset's convention: recordings 0-4 of each speaker and digit are the test set


@cache
def _fsdd() -> dict[str, np.ndarray]:
    with np.load(verified_path(FSDD)) as z:
        return {k: z[k] for k in z.files}


def load_fsdd(
    split: str = "train", held_out_speaker: str | None = None
) -> tuple[list[torch.Tensor], torch.Tensor, list[str]]:
    """The Free Spoken Digit Dataset (8 kHz speech, 6 speakers x 10 digits x 50 recordings): a list of
    waveforms (L_i,) float32 in [-1, 1] (int16 / 32768), their digits (N,) and speakers.

    By default the dataset's documented split: recordings 0-4 of every speaker and digit are "test" (300),
    the rest "train" (2,700). With ``held_out_speaker`` that speaker's 500 recordings are "test" and the
    other five speakers' 2,500 "train": a model has never heard the test voice.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    z = _fsdd()
    speakers = [str(s) for s in z["speakers"]]
    if held_out_speaker is not None and held_out_speaker not in speakers:
        raise ValueError(f"unknown speaker {held_out_speaker!r}; FSDD's speakers are {speakers}")
    names = [speakers[i] for i in z["speaker"]]
    if held_out_speaker is None:
        test = np.isin(z["index"], list(FSDD_TEST_INDICES))
    else:
        test = np.array([n == held_out_speaker for n in names])
    keep = np.flatnonzero(test if split == "test" else ~test)
    audio, offsets = z["audio"], z["offsets"]
    waves = [torch.from_numpy(audio[offsets[i] : offsets[i + 1]].astype(np.float32) / 32768) for i in keep]
    return waves, torch.from_numpy(z["digit"][keep]), [names[i] for i in keep]


# --- 2D toy distributions, each roughly zero-mean with unit scale ---


def swiss_roll(n: int, seed: int = 0, noise: float = 0.05) -> torch.Tensor:
    g = _gen(n, seed)
    u = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
    x = torch.stack([u * torch.cos(u), u * torch.sin(u)], 1) / 7.0
    return (x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()


def two_moons(n: int, seed: int = 0, noise: float = 0.05) -> torch.Tensor:
    g = _gen(n, seed)
    u = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(
        upper[:, None],
        torch.stack([torch.cos(u), torch.sin(u)], 1),
        torch.stack([1 - torch.cos(u), 0.5 - torch.sin(u)], 1),
    )
    x = (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) / 0.8
    return (x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()


def eight_gaussians(n: int, seed: int = 0, std: float = 0.05) -> torch.Tensor:
    g = _gen(n, seed)
    angle = 2 * math.pi / 8 * torch.randint(0, 8, (n,), generator=g).double()
    centres = torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return (centres + std * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()


def checkerboard(n: int, seed: int = 0) -> torch.Tensor:
    """Uniform on the black squares of a 4x4 board spanning [-2, 2]^2, scaled to [-1, 1]^2."""
    g = _gen(n, seed)
    x1 = 4 * torch.rand(n, generator=g, dtype=torch.float64) - 2
    x2 = torch.rand(n, generator=g, dtype=torch.float64) - torch.randint(0, 2, (n,), generator=g).double() * 2
    x2 = x2 + (torch.floor(x1) % 2)
    return (torch.stack([x1, x2], 1) / 2).float()


TOYS = {
    "swiss_roll": swiss_roll,
    "two_moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
}


def toy_2d(name: str, n: int, seed: int = 0) -> torch.Tensor:
    """Draw ``n`` points (n, 2) from a named 2D toy distribution with a fixed seed."""
    if name not in TOYS:
        raise ValueError(f"unknown toy distribution {name!r}; expected one of {sorted(TOYS)}")
    return TOYS[name](n, seed)


def _gen(n: int, seed: int) -> torch.Generator:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer number of points, got {n!r}")
    return torch.Generator().manual_seed(seed)
