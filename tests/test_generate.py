"""dlib.generate: samples of every kind of shipped generative model, by name; and notebook 10's table script."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from dlib import checkpoint, samplers
from dlib.config import card_denoiser
from dlib.generate import class_prompts, generate, image_shape, kind_of

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "name, kind",
    [
        ("mnist-unet", "unconditional"),
        ("mnist-cond-unet", "class"),
        ("mnist-text-unet", "text"),
        ("fashion-latent-unet", "latent"),
        ("fashion-unclip-decoder", "unclip"),
    ],
)
def test_kind_of_each_shipped_generator(name, kind):
    assert kind_of(checkpoint.read_card(name)) == kind


@pytest.mark.parametrize("name", ["mnist-classifier", "fashion-ae", "fashion-clip", "fashion-unclip-prior"])
def test_a_model_that_draws_no_images_is_refused(name):
    with pytest.raises(ValueError, match="not an image generator"):
        generate(name, 2, steps=2)


def test_unconditional_samples_are_the_samplers_own():
    """generate() is a thin layer: the same x_T and generator give the sampler's samples."""
    g = generate("mnist-unet", 3, sampler="dpm_solver", steps=4, seed=5)
    model, sched, card = checkpoint.load_pretrained("mnist-unet")
    gen = torch.Generator().manual_seed(5)
    x_T = torch.randn((3, *image_shape(card)), generator=gen)
    den = card_denoiser(card, model, sched)
    want = samplers.sample_dpm_solver(den, x_T, steps=4, generator=gen).clamp(-1, 1)
    torch.testing.assert_close(g.images, want)
    assert g.images.shape == (3, 1, 28, 28) and g.labels is None and g.prompts is None
    assert g.nfe == 4 and "dpm_solver 4 steps" in g.settings


def test_batches_are_seeded_so_a_prefix_is_the_smaller_run():
    big = generate("mnist-unet", 5, sampler="ddim", steps=2, batch=2)
    small = generate("mnist-unet", 3, sampler="ddim", steps=2, batch=2)
    torch.testing.assert_close(big.images[:2], small.images[:2])  # batch 0: the same seed and size
    assert big.nfe == 2  # per sample: every batch runs the same steps


def test_conditional_models_get_balanced_classes_and_their_prompts():
    g = generate("mnist-cond-unet", 20, steps=2, batch=10)
    assert g.labels.tolist() == [k for k in range(10) for _ in range(2)] and g.prompts is None
    assert "w=3.0" in g.settings and g.nfe == 2  # a guided step is one call on a doubled batch
    t = generate("mnist-text-unet", 10, steps=2)
    assert t.prompts == class_prompts("mnist") and t.labels.tolist() == list(range(10))
    assert t.images.shape == (10, 1, 28, 28) and t.images.abs().max() <= 1


def test_pipelines_count_every_network_call():
    latent = generate("mnist-latent-unet", 2, steps=3)
    assert latent.images.shape == (2, 1, 28, 28) and latent.nfe == 3
    unclip = generate("fashion-unclip-decoder", 2, steps=3)
    assert unclip.nfe == 6 and "prior fashion-unclip-prior" in unclip.settings  # prior, then decoder


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown sampler 'ddpn'"):
        generate("mnist-unet", 2, sampler="ddpn")
    with pytest.raises(ValueError, match="n and batch must be positive"):
        generate("mnist-unet", 0)


def _load_table():
    spec = importlib.util.spec_from_file_location("metrics_table", ROOT / "benchmarks" / "metrics_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["metrics_table"] = module
    spec.loader.exec_module(module)
    return module


def test_metrics_table_rows_name_shipped_models_and_render(tmp_path, monkeypatch):
    mt = _load_table()
    for dataset, model, _ in mt.ROWS.values():
        assert dataset in ("mnist", "fashion-mnist") and (model is None or kind_of(checkpoint.read_card(model)))
    monkeypatch.setattr(mt, "CACHE", tmp_path)
    g = mt.samples("real/mnist", 4, 0)
    again = mt.samples("real/mnist", 4, 0)  # from the cache
    torch.testing.assert_close(g.images, again.images)
    assert len(list(tmp_path.iterdir())) == 1
    row = {"row": "x", "classifier_fid": 1.0, "classifier_fid_std": 0.1, "kid_x1e3": 2.0, "kid_std_x1e3": 0.2}
    table = mt.render([row])
    assert "| x |" in table and "1.0 +- 0.1" in table and "2.0 +- 0.2" in table


@pytest.mark.filterwarnings("ignore:.*the covariance estimate has rank")  # n = 12 on purpose: a fast check
def test_metrics_table_scores_a_row_on_every_metric(tmp_path, monkeypatch):
    """A real row at tiny n through the whole scorer: every column filled, real images agree with their labels."""
    mt = _load_table()
    monkeypatch.setattr(mt, "CACHE", tmp_path)
    g = mt.samples("real/mnist", 12, 0)
    row = mt.Scorer("mnist", n_ref=12)(g, seed=0)
    for key in ("classifier_fid", "confident", "digit_is", "inception_fid", "kid_x1e3", "precision", "recall"):
        assert key in row and row[key] == row[key]  # present and not NaN
    assert 0 <= row["precision"] <= 1 and 1 <= row["digit_is"] <= 10
    assert row["share_as_requested"] >= 0.9 and row["clip_score"] > 30  # real digits with their true labels
