"""A recipe under torchrun on two CPU processes (gloo) ends where one process with the same global batch ends."""

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dlib.recipes import RECIPES
from dlib.train import train

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    overrides = [
        "steps=4",
        "batch_size=16",
        "ckpt_every=2",
        "log_every=2",
        "multiscale=[0.5, 1.0]",
        "weighting=min_snr",
    ]
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2"),
        *("--master_addr=127.0.0.1", f"--master_port={free_port()}"),
        *("-m", "dlib.train", "--recipe", "mnist-v-tiny", "--out-dir", str(tmp_path / "ddp"), "--quiet", *overrides),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('"step": 4') == 1  # only rank 0 reports

    cfg = dataclasses.replace(
        RECIPES["mnist-v-tiny"], steps=4, batch_size=16, ckpt_every=2, log_every=2, multiscale=(0.5, 1.0),
        weighting="min_snr", out_dir=str(tmp_path / "one"),
    )  # fmt: skip
    one = train(cfg, progress=False)
    state = load_file(tmp_path / "ddp" / "mnist-v-tiny" / "state.safetensors")
    for prefix, module in (("model.", one["model"]), ("ema.", one["ema"])):
        for name, value in module.state_dict().items():
            # the same sums in another order (two half-batch means, then an all-reduce): float rounding only
            torch.testing.assert_close(state[prefix + name], value, rtol=1e-5, atol=1e-6, msg=prefix + name)
    card = (tmp_path / "ddp" / "mnist-v-tiny" / "card.json").read_text()
    assert "2 processes (DDP)" in card
