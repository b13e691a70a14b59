import dataclasses

import pytest
import torch

from dlib import checkpoint, data
from dlib.checkpoint import load_pretrained
from dlib.recipes import RECIPES
from dlib.train import train


def weights(module):
    return torch.cat([p.detach().flatten() for p in module.state_dict().values() if p.is_floating_point()])


def test_export_and_load_pretrained(tmp_path, monkeypatch):
    cfg = dataclasses.replace(RECIPES["mnist-tiny"], out_dir=str(tmp_path), steps=3)
    result = train(cfg, progress=False)
    root = tmp_path / "data"
    root.mkdir()
    (root / data.MANIFEST).write_text("")
    monkeypatch.setenv("DLIB_DATA", str(root))
    card = {"config": result["card"]["config"], "recipe": "mnist-tiny"}
    checkpoint.export_model(result["ema"], card, "tiny")
    model, sched, card = load_pretrained("tiny")
    assert sched.T == 1000 and card["recipe"] == "mnist-tiny"
    assert torch.equal(weights(model), weights(result["ema"]))
    checkpoint.update_card("tiny", {"metrics": {"x": 1}})
    assert load_pretrained("tiny")[2]["metrics"] == {"x": 1}
    # a flipped byte in the weights: caught by the manifest before anything is parsed
    path = root / "models" / "tiny.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    data._verify.cache_clear()
    with pytest.raises(data.DataError, match="corrupt data file"):
        load_pretrained("tiny")
    with pytest.raises(ValueError, match="unknown model name 'no-such-model': the shipped models are tiny$"):
        load_pretrained("no-such-model")


def test_an_unknown_model_name_lists_the_shipped_ones_and_the_closest():
    with pytest.raises(ValueError) as err:
        load_pretrained("mnist-unett")
    message = str(err.value)
    assert "unknown model name 'mnist-unett'" in message and "did you mean 'mnist-unet'?" in message
    assert all(name in message for name in checkpoint.shipped_models())
    assert "mnist-classifier" in checkpoint.shipped_models()


def test_a_classifier_is_rebuilt_for_the_image_size_it_was_trained_on(tmp_path, monkeypatch):
    cfg = dataclasses.replace(
        RECIPES["mnist-classifier"], steps=2, batch_size=8, limit=64, pad_to_32=True, out_dir=str(tmp_path)
    )
    result = train(cfg, progress=False)
    assert result["card"]["image_shape"] == [1, 32, 32]
    root = tmp_path / "data"
    root.mkdir()
    (root / data.MANIFEST).write_text("")
    monkeypatch.setenv("DLIB_DATA", str(root))
    checkpoint.export_model(result["ema"], result["card"] | {"recipe": "mnist-classifier"}, "clf32")
    model, sched, _ = load_pretrained("clf32")
    assert sched is None and model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_load_ema_reads_a_run_folder_without_training(tmp_path):
    cfg = dataclasses.replace(RECIPES["mnist-tiny"], out_dir=str(tmp_path), steps=4)
    result = train(cfg, progress=False)
    run_dir = tmp_path / "mnist-tiny"
    model, sched, card = checkpoint.load_ema(run_dir)
    assert torch.equal(weights(model), weights(result["ema"])) and not model.training
    assert not torch.equal(weights(model), weights(result["model"]))  # the EMA, not the raw weights
    assert sched.T == cfg.T and card["step"] == 4 and card["state_sha256"] == data.sha256(run_dir / "state.safetensors")
    assert "optimizer" not in card
    raw = bytearray((run_dir / "state.safetensors").read_bytes())
    raw[-10] ^= 0xFF
    (run_dir / "state.safetensors").write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match="corrupt"):
        checkpoint.load_ema(run_dir)
