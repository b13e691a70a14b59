import pytest
import torch

from dlib.batches import build_condition
from dlib.config import TrainConfig, build_loss, build_model, config_from_dict, config_to_dict
from dlib.losses import ClassifierLoss, DiffusionLoss, NoisyClassifierLoss
from dlib.nets import UNetConfig
from dlib.schedules import get_schedule


def test_round_trip_and_missing_fields_take_defaults():
    cfg = TrainConfig(
        progressive=((0.0, 16), (0.5, 32)),
        multiscale=(0.5, 1.0),
        lr_schedule="cosine",
        decay_steps=5000,
        ema_warmup="unbiased",
        amp_cpu=True,
    )
    assert config_from_dict(config_to_dict(cfg)) == cfg
    later = ("weighting", "snr_gamma", "lr_schedule", "decay_steps", "ema_warmup", "amp_cpu")  # added over time
    old = {k: v for k, v in config_to_dict(cfg).items() if k not in later}
    assert config_from_dict(old) == TrainConfig(progressive=cfg.progressive, multiscale=cfg.multiscale)
    assert (TrainConfig().decay_steps, TrainConfig().ema_warmup, TrainConfig().amp_cpu) == (None, "ramp", False)


@pytest.mark.parametrize("field", ["kind", "prediction", "weighting", "lr_schedule", "ema_warmup"])
def test_bad_values_are_named(field):
    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be one of"):
        TrainConfig(**{field: "nonsense"})


def test_bad_decay_horizon_and_ema_decay_are_named():
    with pytest.raises(ValueError, match=r"decay_steps must exceed warmup \(200\), got 200"):
        TrainConfig(decay_steps=200)
    with pytest.raises(ValueError, match="ema_decay must lie in"):
        TrainConfig(ema_decay=1.5)


def test_what_each_kind_builds():
    sched = get_schedule("linear", 10)
    clf, noisy = TrainConfig(kind="classifier"), TrainConfig(kind="noisy-classifier")
    assert isinstance(build_loss(clf, sched), ClassifierLoss) and isinstance(
        build_loss(noisy, sched), NoisyClassifierLoss
    )
    loss = build_loss(TrainConfig(prediction="v", weighting="min_snr", multiscale=(0.5, 1.0)), sched)
    assert isinstance(loss, DiffusionLoss) and loss.prediction == "v" and loss.scales == (0.5, 1.0)
    y, gen = torch.arange(10), torch.Generator().manual_seed(0)
    assert build_condition(clf, None, "cpu")(None, None, y, gen)["y"] is y
    assert build_condition(TrainConfig(), None, "cpu")(None, None, y, gen) == {}
    cond = TrainConfig(unet=UNetConfig(num_classes=10), p_uncond=1.0)
    assert (build_condition(cond, None, "cpu")(None, None, y, gen)["y"] == 10).all()
    assert build_model(TrainConfig(dataset="swiss_roll")).__class__.__name__ == "MLPDenoiser"
