"""benchmarks/sampler_fid.py, sampler_overhead.py and metrics_table.py: the network is read as its card says, and
the caches are keyed by the model's weights. Toy networks and fake cards only: no shipped model is sampled."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from dlib import checkpoint, samplers
from dlib.config import TrainConfig, card_denoiser, config_to_dict
from dlib.denoiser import VP, Denoiser, convert
from dlib.schedules import get_schedule
from dlib.utils import CountCalls

ROOT = Path(__file__).resolve().parent.parent
SCHED = get_schedule("linear", 1000)
C = 0.5  # every training image is C everywhere: the exact denoiser is known, and every sampler ends at C


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sf, so, mt = _load("sampler_fid"), _load("sampler_overhead"), _load("metrics_table")


def exact_net(prediction: str, c: float = C):
    """The exact network of data x_0 = c in the ``prediction`` parameterisation: what a perfect model outputs."""
    return convert(Denoiser(lambda x, t: torch.full_like(x, c), "x_0", VP(SCHED)), prediction, VP(SCHED))


def card(prediction: str, sha: str = "a" * 64) -> dict:
    return {"config": config_to_dict(TrainConfig(prediction=prediction)), "weights_sha256": sha}


@pytest.mark.parametrize("prediction", ["eps", "x_0", "v"])
def test_sampler_fid_reads_the_network_as_its_card_says(prediction, tmp_path, monkeypatch):
    monkeypatch.setattr(sf, "CACHE", tmp_path)
    runs = sf.sampler_runs()
    for name in ("ddpm-10", "euler-churn10-20", "heun-5", "dpm2-5", "dpm++3m-10"):
        nfe, fn = runs[name]
        x, calls = sf.samples_for(name, fn, exact_net(prediction), SCHED, card(prediction), 2, 2, 0, (1, 4, 4), "cpu")
        assert calls == nfe  # the raw network's calls
        torch.testing.assert_close(x, torch.full_like(x, C), atol=1e-4, rtol=0)


def test_a_v_network_read_as_an_eps_network_is_wrong():
    """What the benchmarks did before they read the card: a negative control for the test above."""
    x = samplers.sample_ddim(exact_net("v"), torch.randn(2, 1, 4, 4), SCHED, 20)  # as_denoiser: an eps-model
    assert (x - C).abs().max() > 0.1


def test_sampler_fid_caches_by_the_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(sf, "CACHE", tmp_path)
    old, new = card("eps", "a" * 64), card("v", "b" * 64)
    assert sf.chunk_path(old, "ddim-10", 0, 2) != sf.chunk_path(new, "ddim-10", 0, 2)
    assert "aaaaaaaaaaaa" in str(sf.chunk_path(old, "ddim-10", 0, 2))
    nfe, fn = sf.sampler_runs()["ddim-10"]
    x_old, _ = sf.samples_for("ddim-10", fn, exact_net("eps", -C), SCHED, old, 2, 2, 0, (1, 4, 4), "cpu")
    x_new, _ = sf.samples_for("ddim-10", fn, exact_net("v", C), SCHED, new, 2, 2, 0, (1, 4, 4), "cpu")
    assert (x_old + C).abs().max() < 1e-4 and (x_new - C).abs().max() < 1e-4  # drawn afresh, not the old model's


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_sampler_overhead_samplers_take_the_cards_denoiser(prediction):
    for name, run in so.SAMPLERS.items():
        counted = CountCalls(exact_net(prediction))
        den = card_denoiser(card(prediction), counted, SCHED)
        x = run(den, torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.Generator())
        assert counted.calls > 0, name
        torch.testing.assert_close(x, torch.full_like(x, C), atol=1e-4, rtol=0, msg=name)


def test_metrics_table_rows_know_their_models():
    assert mt.row_models("real/mnist") == [] and mt.row_models("mnist-unet/ddim-20") == ["mnist-unet"]
    assert mt.row_models("mnist-latent-unet/ddim-50") == ["mnist-latent-unet", "mnist-ae"]
    unclip = ["fashion-unclip-decoder", "fashion-unclip-prior", "fashion-ae", "fashion-clip"]
    assert mt.row_models("fashion-unclip-decoder/ddim-50") == unclip
    sha = checkpoint.read_card("mnist-unet")["weights_sha256"]
    assert sha[:12] in mt._cached("mnist-unet/ddim-20", 500, 0, ".pt").name


@pytest.mark.parametrize("retrained", ["mnist-unet", "fashion-ae"])
def test_metrics_table_caches_by_the_weights(retrained, monkeypatch):
    """A retrained model (a new weights_sha256) moves the cache of exactly the rows whose samples it makes."""
    paths = lambda: {(r, s): mt._cached(r, 500, 0, s) for r in mt.ROWS for s in (".pt", "-ref2000.json")}  # noqa: E731
    before, read_card = paths(), checkpoint.read_card
    monkeypatch.setattr(
        mt, "read_card", lambda name: read_card(name) | ({"weights_sha256": "0" * 64} if name == retrained else {})
    )
    after = paths()
    moved = {row for row, suffix in before if after[row, suffix] != before[row, suffix]}
    assert moved == {r for r in mt.ROWS if retrained in mt.row_models(r)} and moved


@pytest.mark.parametrize("retrained", ["mnist-unet", "fashion-ae"])
def test_metrics_table_update_keeps_exactly_the_rows_of_unchanged_models(retrained, monkeypatch):
    """``--update`` re-measures the rows a retrained model's samples come from and keeps the others, and keeps
    nothing measured with another n, seed or reference size."""
    previous = {"n": 500, "seed": 0, "n_ref": 2000, "rows": [{"row": r, "weights": mt.row_weights(r)} for r in mt.ROWS]}
    read_card = checkpoint.read_card
    monkeypatch.setattr(
        mt, "read_card", lambda name: read_card(name) | ({"weights_sha256": "0" * 64} if name == retrained else {})
    )
    kept = mt.kept_rows(previous, 500, 0, 2000)
    assert set(kept) == {r for r in mt.ROWS if retrained not in mt.row_models(r)} and len(kept) < len(mt.ROWS)
    assert "real/mnist" in kept
    assert mt.kept_rows(previous, 1000, 0, 2000) == {} and mt.kept_rows(previous, 500, 1, 2000) == {}
    assert mt.kept_rows(previous | {"n_ref": 500}, 500, 0, 2000) == {}
    unrecorded = {"n": 500, "seed": 0, "n_ref": 2000, "rows": [{"row": "real/mnist"}]}  # no weights: measured again
    assert mt.kept_rows(unrecorded, 500, 0, 2000) == {}
