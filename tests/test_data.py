import shutil

import pytest
import torch

from dlib import data


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


@pytest.mark.parametrize("name", sorted(data.TOYS))
def test_toys_are_seeded_and_scaled(name):
    a, b, c = data.toy_2d(name, 2000, seed=1), data.toy_2d(name, 2000, seed=1), data.toy_2d(name, 2000, seed=2)
    assert a.shape == (2000, 2) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() < 3 and 0.3 < a.std(0).min() and a.std(0).max() < 1.5


def test_toy_bad_name():
    with pytest.raises(ValueError, match="unknown toy distribution"):
        data.toy_2d("spiral", 10)
