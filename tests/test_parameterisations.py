"""End to end: a tiny v-, x_0- and flow-model trained by the command line, then sampled by every sampler."""

import json

import pytest
import torch

from dlib import samplers
from dlib.config import build_denoiser, config_from_dict
from dlib.denoiser import VP
from dlib.schedules import get_schedule
from dlib.train import train
from dlib.train.__main__ import main


@pytest.mark.parametrize("recipe", ["mnist-v-tiny", "mnist-x0-tiny", "mnist-flow-tiny"])
def test_cli_trained_model_is_sampled_by_every_sampler(recipe, tmp_path, capsys):
    main(["--recipe", recipe, "--out-dir", str(tmp_path), "--quiet", "--steps", "6", "--sample-every", "6"])
    run = tmp_path / recipe
    assert (run / "samples-0000006.png").exists()  # the --sample-every grid, read through the model's parameterisation
    cfg = config_from_dict(json.loads((run / "card.json").read_text())["config"])
    ema = train(cfg, device=torch.device("cpu"), progress=False)["ema"].eval()  # finished: loads, trains nothing
    den = build_denoiser(cfg, ema, get_schedule(cfg.schedule, cfg.T))
    x_T = torch.randn((3, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    for name, fn in samplers.SAMPLERS.items():
        steps = None if name == "pf_ode" else 4
        kwargs = {"rtol": 1e-2, "atol": 1e-2} if name == "pf_ode" else {}
        if name in ("ddpm", "ddim") and not isinstance(den.process, VP):
            with pytest.raises(ValueError, match="integer indices of a discrete VP schedule"):
                fn(den, x_T, None, steps)
            continue
        x = fn(den, x_T, None, steps, generator=torch.Generator().manual_seed(1), **kwargs)
        assert x.shape == x_T.shape and torch.isfinite(x).all(), name
        assert x.abs().max() < 50, f"{recipe} / {name}: samples far outside the data's range"
