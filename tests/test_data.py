import hashlib
import shutil

import pytest
import torch

from dlib import data

FASHION_TRAIN = "fashion-mnist/train-images-idx3-ubyte.gz"  # 26 MB, shipped in two parts under 20 MB
PUBLISHED_SHA256 = "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"  # of the published file
# the decoded uint8 pixels (60000 x 28 x 28, row-major), recorded from the published file before it was split
PIXELS_SHA256 = "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012"
PIXELS_SUM = 3_431_114_169


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_loaders(name):
    x, y = data.load_images(name, "test", limit=100)
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() == -1 and x.max() == 1 and int(y.max()) <= 9
    x32, _ = data.load_images(name, "test", limit=10, pad_to_32=True)
    assert x32.shape == (10, 1, 32, 32)
    assert torch.equal(x32[:, :, 2:30, 2:30], x[:10]) and (x32[:, :, :2] == -1).all()
    ds = data.image_dataset(name, "test", limit=5)
    assert len(ds) == 5 and ds[0][0].shape == (1, 28, 28)


def test_full_splits_have_published_sizes():
    assert data.load_images("mnist", "train")[0].shape[0] == 60_000
    assert data.load_images("fashion-mnist", "test")[0].shape[0] == 10_000


def test_manifest_lists_every_shipped_file():
    root = data.data_dir()
    listed = set(data.read_manifest())
    shipped = {
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name not in (data.MANIFEST, "README.md")
    }
    assert shipped == listed


def _copy_of_data(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data.data_dir() / "mnist", root / "mnist")
    manifest = {k: v for k, v in data.read_manifest().items() if k.startswith("mnist/")}
    (root / data.MANIFEST).write_text("".join(f"{v}  {k}\n" for k, v in manifest.items()))
    return root


def test_corrupt_file_is_detected(tmp_path, monkeypatch):
    root = _copy_of_data(tmp_path)
    target = root / "mnist/t10k-labels-idx1-ubyte.gz"
    raw = bytearray(target.read_bytes())
    raw[100] ^= 0xFF
    target.write_bytes(bytes(raw))
    monkeypatch.setenv("DLIB_DATA", str(root))
    with pytest.raises(data.DataError, match="corrupt data file .*t10k-labels.*git checkout"):
        data.load_images("mnist", "test")


def test_missing_file_and_bad_names(tmp_path, monkeypatch):
    root = _copy_of_data(tmp_path)
    (root / "mnist/t10k-images-idx3-ubyte.gz").unlink()
    monkeypatch.setenv("DLIB_DATA", str(root))
    with pytest.raises(data.DataError, match="missing data file"):
        data.load_images("mnist", "test")
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'"):
        data.load_images("cifar10")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        data.load_images("mnist", "val")


def test_split_file_reassembles_to_the_published_bytes():
    root, manifest = data.data_dir(), data.read_manifest()
    parts = [f"{FASHION_TRAIN}.part1", f"{FASHION_TRAIN}.part2"]
    assert FASHION_TRAIN not in manifest and not (root / FASHION_TRAIN).exists()
    assert all(p in manifest and (root / p).stat().st_size < 20_000_000 for p in parts)
    assert f"{FASHION_TRAIN}.part3" not in manifest
    whole = b"".join((root / p).read_bytes() for p in parts)  # what `cat part1 part2 > file` gives
    assert hashlib.sha256(whole).hexdigest() == PUBLISHED_SHA256
    assert (root / f"{FASHION_TRAIN}.sha256").read_text().split() == [PUBLISHED_SHA256, FASHION_TRAIN.split("/")[1]]
    assert data.verified_bytes(FASHION_TRAIN) == whole


def test_fashion_train_images_decode_as_before():
    x, y = data.load_images("fashion-mnist", "train")
    assert x.shape == (60_000, 1, 28, 28) and y.shape == (60_000,)
    pixels = ((x + 1) * 127.5).round().to(torch.uint8)  # exact inverse of the loader's scaling
    assert int(pixels.sum(dtype=torch.int64)) == PIXELS_SUM
    assert hashlib.sha256(pixels.numpy().tobytes()).hexdigest() == PIXELS_SHA256


def test_corrupt_or_missing_part_is_named(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "fashion-mnist").mkdir(parents=True)
    names = [f"{FASHION_TRAIN}.part1", f"{FASHION_TRAIN}.part2", f"{FASHION_TRAIN}.sha256"]
    manifest = {k: data.read_manifest()[k] for k in names}
    for k in names:
        shutil.copy(data.data_dir() / k, root / k)
    (root / data.MANIFEST).write_text("".join(f"{v}  {k}\n" for k, v in manifest.items()))
    monkeypatch.setenv("DLIB_DATA", str(root))
    part2 = root / names[1]
    raw = bytearray(part2.read_bytes())
    raw[1000] ^= 0xFF
    part2.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match=r"corrupt data file .*train-images-idx3-ubyte\.gz\.part2.*git checkout"):
        data.load_images("fashion-mnist", "train")
    # parts that match a tampered manifest still fail the published hash of the whole file
    manifest[names[1]] = data.sha256(part2)
    (root / data.MANIFEST).write_text("".join(f"{v}  {k}\n" for k, v in manifest.items()))
    data._verify.cache_clear()
    with pytest.raises(
        data.DataError,
        match=f"reassembled from .*part2 has sha256 .*not the published {PUBLISHED_SHA256}.*git checkout",
    ):
        data.load_images("fashion-mnist", "train")
    part2.unlink()
    data._verify.cache_clear()  # verification is cached per process; start afresh after deleting a file
    with pytest.raises(data.DataError, match=r"missing data file .*train-images-idx3-ubyte\.gz\.part2.*git checkout"):
        data.load_images("fashion-mnist", "train")


@pytest.mark.parametrize("name", sorted(data.TOYS))
def test_toys_are_seeded_and_scaled(name):
    a, b, c = data.toy_2d(name, 2000, seed=1), data.toy_2d(name, 2000, seed=1), data.toy_2d(name, 2000, seed=2)
    assert a.shape == (2000, 2) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() < 3 and 0.3 < a.std(0).min() and a.std(0).max() < 1.5


def test_toy_bad_name():
    with pytest.raises(ValueError, match="unknown toy distribution"):
        data.toy_2d("spiral", 10)
