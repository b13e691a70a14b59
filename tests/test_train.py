import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlib import data
from dlib.recipes import RECIPES
from dlib.train import TrainConfig, lr_at, resolution_at, train
from dlib.train.loop import ema_decay_at

ROOT = Path(__file__).resolve().parent.parent


def tiny(tmp_path, **kw) -> TrainConfig:
    return dataclasses.replace(RECIPES["mnist-tiny"], out_dir=str(tmp_path), **kw)


def weights(module):
    return torch.cat([p.detach().flatten() for p in module.state_dict().values() if p.is_floating_point()])


def test_loss_falls_on_2d_toy(tmp_path):
    cfg = dataclasses.replace(RECIPES["toy-2d"], out_dir=str(tmp_path), steps=400, log_every=50)
    log = train(cfg, progress=False)["card"]["loss_log"]
    # predicting eps = 0 scores E||eps||^2 = 1 per dimension; a trained denoiser must do clearly better
    assert log[-1][1] < 0.8 and log[-1][1] < log[0][1]


def test_resume_in_process_is_exact(tmp_path):
    a = train(tiny(tmp_path / "a"), progress=False)
    cfg = tiny(tmp_path / "b")
    train(cfg, stop_after=7, progress=False)
    b = train(cfg, progress=False)
    assert b["card"]["step"] == 20
    assert torch.equal(weights(a["model"]), weights(b["model"]))
    assert torch.equal(weights(a["ema"]), weights(b["ema"]))


@pytest.mark.parametrize("amp_cpu", [False, True])
def test_killed_run_resumes_to_the_same_weights(tmp_path, amp_cpu):
    """SIGKILL a training process mid-way (any instant, even mid-write), resume, compare; also under bf16 autocast."""
    straight = train(tiny(tmp_path / "straight", steps=40, ckpt_every=2, amp_cpu=amp_cpu), progress=False)
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "dlib.train",
        "--recipe",
        "mnist-tiny",
        "--out-dir",
        str(out),
        "--quiet",
        "steps=40",
        "ckpt_every=2",
        f"amp_cpu={json.dumps(amp_cpu)}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    card_path = out / "mnist-tiny" / "card.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if card_path.exists() and json.loads(card_path.read_text())["step"] >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(card_path.read_text())["step"]
    assert 6 <= killed_at < 40, f"the run was not interrupted mid-way (step {killed_at})"
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = train(tiny(out, steps=40, ckpt_every=2, amp_cpu=amp_cpu), progress=False)  # finished: loads, returns
    assert resumed["card"]["step"] == 40
    assert torch.equal(weights(straight["model"]), weights(resumed["model"]))
    assert torch.equal(weights(straight["ema"]), weights(resumed["ema"]))


def test_corrupt_training_state_is_detected(tmp_path):
    cfg = tiny(tmp_path, steps=5)
    train(cfg, progress=False)
    state = tmp_path / "mnist-tiny" / "state.safetensors"
    raw = bytearray(state.read_bytes())
    raw[-10] ^= 0xFF
    state.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match="corrupt"):
        train(dataclasses.replace(cfg, steps=10), progress=False)


def test_resume_with_another_config_is_refused(tmp_path):
    train(tiny(tmp_path, steps=5), progress=False)
    with pytest.raises(ValueError, match="different config"):
        train(tiny(tmp_path, steps=10, lr=0.5), progress=False)


def test_resume_may_change_the_precision_and_the_card_says_which_trained(tmp_path):
    train(tiny(tmp_path, steps=4), progress=False)  # float32 on this host, then bf16 autocast on "another"
    card = train(tiny(tmp_path, steps=8, amp_cpu=True), progress=False)["card"]
    assert card["step"] == 8 and card["config"]["amp_cpu"] is True and card["config"]["steps"] == 8
    assert [h.endswith(", bf16 autocast") for h in card["hardware"]] == [False, True]


def test_targets_progressive_and_multiscale_train(tmp_path):
    for kw in (
        dict(prediction="x_0"),
        dict(prediction="v"),
        dict(pad_to_32=True, progressive=((0.0, 16), (0.5, 32))),
        dict(multiscale=(0.5, 1.0)),
    ):
        card = train(
            tiny(tmp_path / str(len(kw)) / kw.__repr__()[:20].replace(" ", ""), steps=4, **kw), progress=False
        )["card"]
        assert card["step"] == 4 and all(torch.isfinite(torch.tensor(loss)) for _, loss in card["loss_log"])


def test_schedules_of_the_loop():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, progressive=((0.0, 16), (0.5, 32)))
    assert lr_at(0, cfg) == 0.1 and lr_at(9, cfg) == 1.0 and lr_at(50, cfg) == 1.0
    assert resolution_at(0, cfg, 32) == 16 and resolution_at(49, cfg, 32) == 16 and resolution_at(50, cfg, 32) == 32
    cos, lin = (dataclasses.replace(cfg, lr_schedule=s) for s in ("cosine", "linear"))
    assert lr_at(0, cos) == 0.1 and lr_at(10, cos) == 1.0 and lr_at(100, cos) == 0.0
    assert lr_at(55, cos) == pytest.approx(0.5) and lr_at(55, lin) == pytest.approx(0.5)
    assert lr_at(32.5, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4))) and lr_at(100, lin) == 0.0
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="exponential")


def test_a_decay_horizon_short_of_the_steps():
    """decay_steps: the decay reaches 0 there and stays 0 however long the run goes on."""
    cfg = TrainConfig(steps=10_000, decay_steps=100, warmup=10, lr=1.0)
    cos, lin = (dataclasses.replace(cfg, lr_schedule=s) for s in ("cosine", "linear"))
    assert lr_at(55, cos) == pytest.approx(0.5) and lr_at(55, lin) == pytest.approx(0.5)
    assert lr_at(32.5, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert all(lr_at(s, c) == 0.0 for s in (100, 101, 5000, 9999) for c in (cos, lin))
    assert lr_at(9, cos) == 1.0 and lr_at(5000, cfg) == 1.0  # the warm-up and a constant rate ignore it
    assert lr_at(55, dataclasses.replace(cos, decay_steps=None)) > 0.99  # None: the horizon is `steps`


def test_ema_warmups():
    ramp = TrainConfig(ema_decay=0.999)
    assert [ema_decay_at(s, ramp) for s in (0, 90, 8989, 8990, 10**6)] == [0.1, 0.91, 8990 / 8999, 0.999, 0.999]
    # the ramp sets the EMA of a short run whatever ema_decay says; "unbiased" lets ema_decay decide
    ramp2 = dataclasses.replace(ramp, ema_decay=0.9995)
    unb, unb2 = (dataclasses.replace(r, ema_warmup="unbiased") for r in (ramp, ramp2))
    assert ema_decay_at(900, ramp) == ema_decay_at(900, ramp2) and ema_decay_at(900, unb) < ema_decay_at(900, unb2)
    assert ema_decay_at(0, dataclasses.replace(ramp, ema_warmup="none")) == 0.999
    # "unbiased" is the normalised exponentially weighted average of the weights after each update
    w = torch.randn(300, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for beta in (0.0, 0.9, 0.999, 1.0):
        cfg = dataclasses.replace(unb, ema_decay=beta)
        ema = torch.tensor(123.0, dtype=torch.float64)  # the initial weights: they must get no share
        for s, w_s in enumerate(w):
            ema = ema_decay_at(s, cfg) * ema + (1 - ema_decay_at(s, cfg)) * w_s
        ages = torch.arange(len(w) - 1, -1, -1, dtype=torch.float64)
        share = beta**ages if beta > 0 else (ages == 0).double()
        assert ema.item() == pytest.approx((share * w).sum().item() / share.sum().item(), rel=1e-9), beta


def test_the_loop_follows_the_ema_warmup(tmp_path):
    init = weights(train(tiny(tmp_path / "init"), stop_after=0, progress=False)["model"])
    frozen = train(tiny(tmp_path / "none", steps=3, ema_warmup="none", ema_decay=1.0), progress=False)
    assert torch.equal(weights(frozen["ema"]), init) and not torch.equal(weights(frozen["model"]), init)
    latest = train(tiny(tmp_path / "unbiased", steps=3, ema_warmup="unbiased", ema_decay=0.0), progress=False)
    assert torch.equal(weights(latest["ema"]), weights(latest["model"]))


def test_bf16_autocast_on_the_cpu_keeps_float32_weights(tmp_path):
    from safetensors.torch import load_file

    runs = {amp: train(tiny(tmp_path / str(amp), steps=6, amp_cpu=amp), progress=False) for amp in (False, True)}
    assert all(math.isfinite(loss) for _, loss in runs[True]["card"]["loss_log"])
    assert not torch.equal(weights(runs[False]["model"]), weights(runs[True]["model"]))  # bf16 arithmetic did run
    state = load_file(tmp_path / "True" / "mnist-tiny" / "state.safetensors")
    dtypes = {
        v.dtype for k, v in state.items() if k.split(".")[0] in ("model", "ema", "optim") and v.is_floating_point()
    }
    assert dtypes == {torch.float32}


def test_a_step_reads_neither_the_loss_nor_the_hardware(tmp_path, monkeypatch):
    """The loss stays on the device until a log line needs it; the hardware is described once per run.
    (On CUDA the t-range check of ``Schedule.at`` still reads t once per lookup.)"""
    from dlib import checkpoint

    calls = {"item": 0, "hardware": 0}
    item, hardware = torch.Tensor.item, checkpoint.hardware

    def counting_item(self):  # dlib's own reads (the optimiser reads its CPU step counter, no device sync)
        calls["item"] += f"{os.sep}dlib{os.sep}" in sys._getframe(1).f_code.co_filename
        return item(self)

    def counting_hardware():
        calls["hardware"] += 1
        return hardware()

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    monkeypatch.setattr(checkpoint, "hardware", counting_hardware)
    card = train(tiny(tmp_path, steps=20, log_every=10), progress=False)["card"]
    assert len(card["loss_log"]) == 2 and calls == {"item": 2, "hardware": 1}


def test_cli_overrides_and_bad_field(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "dlib.train", "--recipe", "mnist-tiny", "--out-dir", str(tmp_path), "--quiet"]
    r = subprocess.run(cmd + ["steps=3", "unet.base_channels=4"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "mnist-tiny" / "card.json").read_text())["config"]["unet"]["base_channels"] == 4
    r = subprocess.run(cmd + ["learning_rate=3"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "unknown config field 'learning_rate'" in r.stderr


def test_cli_writes_periodic_sample_grids(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "dlib.train", "--recipe", "mnist-tiny", "--out-dir", str(tmp_path), "--quiet"]
    r = subprocess.run(cmd + ["--sample-every", "2", "steps=4"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "mnist-tiny").glob("samples-*.png")) == [
        "samples-0000002.png",
        "samples-0000004.png",
    ]


def test_class_conditional_training_learns_from_labels(tmp_path):
    cfg = dataclasses.replace(RECIPES["mnist-cond-tiny"], out_dir=str(tmp_path))
    out = train(cfg, progress=False)
    model = out["model"].eval()
    x, t = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)), torch.full((4,), 500)
    with torch.no_grad():
        outputs = [model(x, t, y=torch.full((4,), label)) for label in (0, 1, 10)]  # 10: "no label"
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[0], outputs[2])
    # every label row of the embedding, the null label's included, received gradient and moved
    before = dataclasses.replace(cfg, out_dir=str(tmp_path / "fresh"))
    init = train(before, stop_after=0, progress=False)["model"].label_embed.weight
    assert (model.label_embed.weight - init).abs().sum(1).gt(0).all()


def test_resume_accepts_a_card_written_before_a_config_field_existed(tmp_path):
    cfg = tiny(tmp_path)
    train(cfg, stop_after=3, progress=False)
    card_path = tmp_path / cfg.name / "card.json"
    card = json.loads(card_path.read_text())
    del card["config"]["p_uncond"]  # as written by an older dlib
    card_path.write_text(json.dumps(card))
    assert train(cfg, progress=False)["card"]["step"] == cfg.steps


def test_noisy_classifier_trains_on_noisy_images(tmp_path):
    cfg = dataclasses.replace(RECIPES["noisy-classifier-tiny"], out_dir=str(tmp_path))
    out = train(cfg, progress=False)
    logits = out["ema"](torch.randn(3, 1, 28, 28), torch.tensor([0, 500, 999]))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    assert out["card"]["loss_log"][-1][1] < math.log(10) + 0.5  # chance level is log 10


def test_text_conditional_training_resumes_exactly_and_learns_the_null_prompt(tmp_path):
    """Captions are drawn with the run's generator and encodings are cached: a resumed run must end
    with the same weights as an uninterrupted one."""
    cfg = dataclasses.replace(RECIPES["mnist-text-tiny"], steps=6, ckpt_every=3, out_dir=str(tmp_path / "a"))
    whole = train(cfg, progress=False)["model"]
    split = dataclasses.replace(cfg, out_dir=str(tmp_path / "b"))
    train(split, stop_after=3, progress=False)
    resumed = train(split, progress=False)["model"]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    init = train(dataclasses.replace(cfg, out_dir=str(tmp_path / "c")), stop_after=0, progress=False)["model"]
    assert not torch.equal(whole.null_context, init.null_context)  # the null prompt is learned


@pytest.mark.parametrize("prediction", ["eps", "x_0", "v"])
def test_sample_grids_read_the_network_in_its_own_parameterisation(prediction):
    """A network that always means x_0 = 0.5, in eps, x_0 or v terms: the grid's samples must all be 0.5."""
    from dlib.forward import eps_from_x0, v_from_x0_eps
    from dlib.schedules import get_schedule
    from dlib.train.__main__ import sample_grid

    sched = get_schedule("linear", 1000)

    class ConstantMeaning(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x_t, t):
            a = sched.at(sched.alpha_bar, t, x_t.ndim)
            x_0 = torch.full_like(x_t, 0.5)
            eps = eps_from_x0(x_t, x_0, a)
            return {"eps": eps, "x_0": x_0, "v": v_from_x0_eps(x_0, eps, a)}[prediction]

    x = sample_grid(ConstantMeaning(), TrainConfig(prediction=prediction), (3, 8, 8), n=4, steps=10)
    assert x.shape == (4, 3, 8, 8)
    torch.testing.assert_close(x, torch.full_like(x, 0.5), atol=1e-3, rtol=0)
