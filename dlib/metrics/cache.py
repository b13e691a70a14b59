"""A verified on-disk cache of the features of a shipped dataset split. Notebook 10.

Reference statistics are computed once per (dataset file, extractor, preprocessing): 10,000
Inception features of the MNIST test set take about half an hour on a 2-core CPU. The file is keyed
by everything that changes the features: the dataset file's sha256 (from ``data/MANIFEST.sha256``,
which ``dlib.data`` verifies on load), the split, ``limit`` and ``pad_to_32``, and the extractor's
name (network and weights) and preprocessing. It holds the features in safetensors (never a pickle)
with the key and the sha256 of the feature bytes in its metadata; a file whose key or hash does not
match is reported and recomputed. Writes are atomic, so a killed run leaves no half file.

The cache lives in ``$DLIB_CACHE/features`` if set, else ``$XDG_CACHE_HOME/dlib/features`` (by
default ``~/.cache/dlib/features``), never inside ``data/``, which holds only verified shipped files.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from dlib import data
from dlib.checkpoint import atomic_write_bytes
from dlib.metrics.checks import check_features
from dlib.metrics.extractors import FeatureExtractor

CACHE_FORMAT = 1  # bump when the file layout changes


def feature_cache_dir() -> Path:
    """``$DLIB_CACHE/features``, else ``$XDG_CACHE_HOME/dlib/features``, else ``~/.cache/dlib/features``."""
    if os.environ.get("DLIB_CACHE"):
        return Path(os.environ["DLIB_CACHE"]) / "features"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlib" / "features"


def _tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def _images_file(dataset: str, split: str) -> str:
    """The manifest entry that ``data.load_images(dataset, split)`` reads its images from."""
    if dataset not in data.DATASETS or split not in data.SPLITS:
        raise ValueError(
            f"unknown dataset split {dataset!r}/{split!r}; expected one of {sorted(data.DATASETS)} / {sorted(data.SPLITS)}"
        )
    return f"{data.DATASETS[dataset]}/{data.SPLITS[split]}-images-idx3-ubyte.gz"


def _read(path: Path, key: str) -> torch.Tensor | None:
    """The cached features if the file is intact and has this key, else None (with a warning if corrupt)."""
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            features = f.get_tensor("features")
        if meta.get("key") != key:
            problem = "it was written for another key"
        elif meta.get("features_sha256") != _tensor_sha256(features):
            problem = "its features do not match the sha256 stored with them"
        else:
            return features
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        problem = f"it cannot be read ({type(e).__name__}: {e})"
    warnings.warn(f"feature cache {path} is corrupt ({problem}); recomputing it", stacklevel=3)
    return None


def dataset_features(
    extractor: FeatureExtractor,
    dataset: str = "mnist",
    split: str = "test",
    *,
    limit: int | None = None,
    pad_to_32: bool = False,
    cache_dir: Path | str | None = None,
) -> torch.Tensor:
    """Features (N, D) of a shipped dataset split, ``data.load_images(dataset, split, limit=, pad_to_32=)``,
    from the cache when it holds them, else computed by ``extractor`` and cached."""
    cache_dir = Path(cache_dir) if cache_dir is not None else feature_cache_dir()
    if cache_dir.resolve().is_relative_to(data.data_dir().resolve()):
        raise ValueError(f"the feature cache {cache_dir} must not lie inside the data folder {data.data_dir()}")
    images_file = _images_file(dataset, split)
    digest = data.read_manifest().get(images_file)
    if digest is None:
        raise data.DataError(f"{images_file} is not listed in {data.data_dir() / data.MANIFEST}")
    key = json.dumps(
        {
            "format": CACHE_FORMAT,
            "dataset": dataset,
            "split": split,
            "images_sha256": digest,
            "limit": limit,
            "pad_to_32": pad_to_32,
            "extractor": extractor.name,
            "preprocessing": extractor.preprocessing,
        },
        sort_keys=True,
    )
    path = cache_dir / f"{dataset}-{split}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.safetensors"
    if path.exists() and (features := _read(path, key)) is not None:
        return features
    images, _ = data.load_images(dataset, split, pad_to_32=pad_to_32, limit=limit)
    features = check_features(extractor(images).detach().cpu().contiguous(), f"features from {extractor.name}")
    meta = {"key": key, "features_sha256": _tensor_sha256(features)}
    atomic_write_bytes(path, save({"features": features}, metadata=meta))
    return features
