"""A recipe study: which training choices give the best MNIST samples per CPU-minute?

Each entry of ``STUDY`` is one training recipe: ``BASE``, the ``mnist-unet`` recipe as shipped before the
retrain (issue 13) and frozen here, with a few fields changed (one axis at a time), or the diffusers peer:
``UNet2DModel`` of the same size, ``DDPMScheduler`` and AdamW with the defaults of diffusers'
``examples/unconditional_image_generation/train_unconditional.py``. Every entry trains for the same budget
of training-loop wall-clock seconds on the same number of CPU threads, and is scored the same way. The
study is written for runs that take hours: a run is trained in chunks, checkpointed, resumed exactly by a
later process, and skipped once finished.

    python benchmarks/recipe_study.py list                                   # the entries and what each tests
    python benchmarks/recipe_study.py pace [--steps 3] [--only NAME ...]     # seconds per training step of each
    python benchmarks/recipe_study.py run [--budget-min 30] [--threads 1] [--only NAME ...] [--out DIR]
    python benchmarks/recipe_study.py score [--n 500] [--only NAME ...]      # finished runs only
    python benchmarks/recipe_study.py report [--results PATH]                # the table, as Markdown and JSON

run     For each entry: time its first steps (inside the learning-rate warm-up, where the total number of
        steps does not matter yet), fix the planned number of steps that the budget allows (a cosine or
        linear decay reaches zero there; a constant learning rate runs on until the budget is spent) and
        record it in DIR/NAME/study.json, then train in chunks of about --chunk-s seconds until
        card["wall_time_s"] (the training loop's own time, without start-up and checkpoint writes)
        reaches the budget. A killed process loses only the steps since the last checkpoint, and their
        time is not counted; the next `run` carries on. Two processes may share the list (--only); a
        lock file keeps them off the same entry.
score   For each finished run: its EMA weights, --n samples from the same seeded noise for every run
        with DDPM (--ddpm-steps, linspace) and DPM-Solver++(2M) (--dpm-steps calls); the classifier-feature
        FID against the 10,000 MNIST test images with its bootstrap spread, and the share of samples the
        shipped classifier labels with confidence >= 0.9. Once, the same numbers for --n real images (the
        reference: the share for test images, the FID of training images, the floor at this n).
        Scores are cached per run (DIR/NAME/score.json), keyed by the settings and the checkpoint's sha256.
pace    Time a few training steps of each entry (after one untimed step) in a throwaway folder: what
        a budget buys each entry, and how long the study takes, before committing hours to it.
report  One Markdown table of every scored run, printed and written with its settings to --results
        (default benchmarks/results/recipe_study-cpu.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from dlib import checkpoint, data
from dlib.config import card_denoiser
from dlib.denoiser import VP, Denoiser
from dlib.metrics import CONFIDENT, confident_share, extract_features, fid_with_spread
from dlib.nets import UNetConfig
from dlib.recipes import TrainConfig
from dlib.samplers import sample_ddpm, sample_dpm_solver
from dlib.schedules import get_schedule
from dlib.train import train

ROOT = Path(__file__).resolve().parent.parent
# the mnist-unet recipe shipped before the retrain (issue 13); every entry is this plus its changes. Written out,
# not read from RECIPES["mnist-unet"], so that a new shipped recipe does not change what the study's runs mean.
BASE = TrainConfig(
    name="mnist-unet", dataset="mnist", pad_to_32=False, limit=None, schedule="linear", T=1000, prediction="eps",
    weighting="none", steps=2200, batch_size=128, lr=1e-3, warmup=200, lr_schedule="constant", weight_decay=0.0,
    grad_clip=1.0, ema_decay=0.999, ema_warmup="ramp", amp=True, amp_cpu=False, seed=0, ckpt_every=100,
    unet=UNetConfig(
        in_channels=1, out_channels=None, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1,
        attention_levels=(2,), heads=1, dropout=0.0, num_classes=None, context_dim=None,
    ),
)  # fmt: skip
OUT = ROOT / "build" / "recipe_study"
RESULTS = ROOT / "benchmarks" / "results" / "recipe_study-cpu.json"
UNBOUNDED = 100_000  # `steps` of a run whose learning rate does not decay: the budget alone ends it
# Seconds per training step of `baseline` on the reference machine (the one that ran the study's first rows:
# 1799.2 s / 879 steps, one thread, AMD EPYC with AVX512-BF16). The machines a session gets differ (one later
# host ran the same step in ~3.4 s), so `run` times `baseline` on the machine at hand and scales the budget:
# a 30-minute budget means the work of 30 minutes on the reference machine, wherever it runs.
REFERENCE_S_PER_STEP = 1799.2434 / 879
PROBE_STEPS = 20  # steps timed at the start of a run (within its warm-up) to plan its length
RUN_FIELDS = dict(ckpt_every=25, log_every=25)  # the study's own: a kill loses at most 25 steps


@dataclass(frozen=True)
class Entry:
    """One recipe of the study: ``changes`` are TrainConfig fields relative to ``BASE`` (``unet`` a dict of
    UNetConfig fields), or, for the diffusers peer (``peer=True``), PeerConfig fields."""

    name: str
    why: str  # the question this run answers, shown by `list` and in the report
    changes: dict = field(default_factory=dict)
    peer: bool = False
    cpu_bf16: bool = False  # train under bfloat16 autocast on the CPU (TrainConfig.amp_cpu); dlib entries only


_LR = BASE.lr
STUDY: list[Entry] = [
    Entry("baseline", "the shipped recipe: constant lr 1e-3 after 200 warm-up steps, batch 128, EMA 0.999"),
    # learning-rate schedule: decays reach zero at the planned number of steps (the budget's end)
    Entry("cosine-decay", "warm-up, then cosine decay to 0", {"lr_schedule": "cosine"}),
    Entry("linear-decay", "warm-up, then linear decay to 0", {"lr_schedule": "linear"}),
    # batch size: Adam's square-root scaling of the learning rate (Malladi et al. 2022); the warm-up
    # keeps the same number of examples (200 x 128)
    Entry("batch-64", "batch 64, lr / sqrt(2), warm-up 400", {"batch_size": 64, "lr": _LR / 2**0.5, "warmup": 400}),
    Entry("batch-256", "batch 256, lr * sqrt(2), warm-up 100", {"batch_size": 256, "lr": _LR * 2**0.5, "warmup": 100}),
    # channel widths and where attention sits (the middle block always has attention, in dlib and diffusers)
    Entry("width-16", "16/32/32 channels, attention at 7x7", {"unet": {"base_channels": 16}}),
    Entry("width-16-noattn", "16/32/32 channels, no attention at 7x7", {"unet": {"base_channels": 16, "attention_levels": ()}}),
    Entry("noattn", "32/64/64 channels, no attention at 7x7", {"unet": {"attention_levels": ()}}),
    Entry("width-48", "48/96/96 channels, attention at 7x7", {"unet": {"base_channels": 48}}),
    Entry("width-48-noattn", "48/96/96 channels, no attention at 7x7", {"unet": {"base_channels": 48, "attention_levels": ()}}),
    # EMA: dlib's default warm-up (TrainConfig.ema_warmup="ramp") is min(ema_decay, (1 + step) / (10 + step)),
    # below 0.999 until step 8990 and below 0.9995 until step 17990. A 30-minute budget buys ~900 steps on one
    # thread (~1600 under bf16, `pace`), so there 0.999 (the baseline) and 0.9995 are the same run, bit for bit:
    # the warm-up alone sets the EMA, an average over about the last step / 9 steps. What this budget can
    # tell apart is a shorter average (a decay that binds early) and none at all. With ema_warmup="unbiased"
    # (Adam's bias correction, no ramp) ema_decay itself sets the average from the first step.
    # Entry("ema-0.9995", "EMA decay 0.9995 (identical to the baseline below step 8990)", {"ema_decay": 0.9995}),
    Entry("ema-0.98", "EMA decay 0.98: an average over ~50 steps from step 440 on", {"ema_decay": 0.98}),
    Entry("no-ema", "no EMA: samples from the raw weights", {"ema_decay": 0.0}),
    Entry("ema-0.999-unbiased", "EMA 0.999 with Adam's bias correction instead of the ramp", {"ema_warmup": "unbiased"}),
    Entry(
        "ema-0.9995-unbiased",
        "EMA 0.9995 with Adam's bias correction instead of the ramp",
        {"ema_decay": 0.9995, "ema_warmup": "unbiased"},
    ),
    # prediction target and loss weighting
    Entry("v-pred", "v-prediction", {"prediction": "v"}),
    Entry("min-snr5-eps", "eps-prediction, min-SNR-5 weighting", {"weighting": "min_snr", "snr_gamma": 5.0}),
    Entry("min-snr5-v", "v-prediction, min-SNR-5 weighting", {"prediction": "v", "weighting": "min_snr", "snr_gamma": 5.0}),
    # noise schedule
    Entry("cosine-schedule", "cosine noise schedule (Nichol & Dhariwal 2021)", {"schedule": "cosine"}),
    # mixed precision: TrainConfig.amp_cpu, bfloat16 autocast on the CPU; on a CPU with AVX512-BF16 a training
    # step of this U-Net took about half the time under autocast (docs/RECIPE_STUDY.md), so it may buy more steps
    Entry("bf16-cpu", "the baseline under bfloat16 autocast on the CPU", cpu_bf16=True),
    # the peer: the diffusers example's recipe, and the same network with dlib's optimiser settings
    Entry("diffusers-peer", "UNet2DModel, DDPMScheduler, AdamW: the diffusers example's defaults", peer=True),
    Entry(
        "diffusers-peer-lr1e-3",
        "the peer at dlib's lr 1e-3, warm-up 200",
        {"lr": 1e-3, "warmup": 200},
        peer=True,
    ),
    # Round two: the axes' winners combined. width-16 beat the baseline on both samplers by far (3.3x the steps
    # in the same time); min-snr5-v was the best loss. width-8 asks whether the trend goes on; the peer at
    # width 16 keeps the comparison with diffusers at the size the pick will have.
    Entry("width-8", "8/16/16 channels, attention at 7x7", {"unet": {"base_channels": 8}}),
    Entry(
        "width-16-min-snr5-v",
        "round two: 16/32/32 channels, v-prediction, min-SNR-5 weighting",
        {"unet": {"base_channels": 16}, "prediction": "v", "weighting": "min_snr", "snr_gamma": 5.0},
    ),
    Entry("diffusers-peer-width-16", "the peer (the example's defaults) at 16/32/32 channels", {"unet": {"base_channels": 16}}, peer=True),
    # width-16-min-snr5-v won round two; the example's lr of 1e-4 leaves both peers far behind, so the fair peer
    # for the pick is the same network size at dlib's learning rate
    Entry(
        "diffusers-peer-width-16-lr1e-3",
        "the peer at 16/32/32 channels and dlib's lr 1e-3, warm-up 200",
        {"unet": {"base_channels": 16}, "lr": 1e-3, "warmup": 200},
        peer=True,
    ),
    # seed reruns: the same entries with another training seed (initial weights, batches, noise), so that the
    # table's differences can be read against the run-to-run spread, which the bootstrap std does not include
    Entry("baseline-seed1", "the baseline, training seed 1", {"seed": 1}),
    Entry(
        "width-16-min-snr5-v-seed1",
        "the pick (round two), training seed 1",
        {"unet": {"base_channels": 16}, "prediction": "v", "weighting": "min_snr", "snr_gamma": 5.0, "seed": 1},
    ),
    Entry(
        "diffusers-peer-width-16-lr1e-3-seed1",
        "the fair peer (16/32/32, lr 1e-3, warm-up 200), training seed 1",
        {"unet": {"base_channels": 16}, "lr": 1e-3, "warmup": 200, "seed": 1},
        peer=True,
    ),
]  # fmt: skip
ENTRIES = {e.name: e for e in STUDY}


# --- the diffusers peer ---


@dataclass
class PeerConfig:
    """The standard diffusers recipe: train_unconditional.py's defaults (AdamW lr 1e-4, betas (0.95, 0.999),
    weight decay 1e-6, cosine decay after 500 warm-up steps, EMA with warm-up 1 - (1 + step)^-3/4 up to
    0.9999, gradient clipping at 1, MSE on eps, DDPMScheduler linear with T = 1000), on a UNet2DModel
    sized like dlib's U-Net. Its batch is the study's (the example's 16 is for 64x64 images on a GPU)."""

    name: str = "diffusers-peer"
    unet: UNetConfig = field(default_factory=UNetConfig)  # the widths; ``peer_unet`` builds the UNet2DModel
    batch_size: int = 128
    lr: float = 1e-4
    warmup: int = 500
    lr_schedule: str = "cosine"  # a diffusers.optimization.get_scheduler name, decaying over `steps`
    adam_betas: tuple[float, float] = (0.95, 0.999)
    weight_decay: float = 1e-6
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    ema_max_decay: float = 0.9999
    ema_inv_gamma: float = 1.0
    ema_power: float = 0.75
    T: int = 1000
    beta_schedule: str = "linear"  # DDPMScheduler's name; PEER_SCHEDULES maps it to dlib's
    dataset: str = "mnist"
    limit: int | None = None
    seed: int = 0
    steps: int = UNBOUNDED
    log_every: int = 25
    ckpt_every: int = 25
    out_dir: str = "runs"


PEER_SCHEDULES = {"linear": "linear", "squaredcos_cap_v2": "cosine"}  # diffusers -> dlib (same betas)


def peer_unet(cfg: UNetConfig) -> torch.nn.Module:
    """diffusers' UNet2DModel with dlib's widths, depth and attention levels (``benchmarks/unet_throughput.py``)."""
    spec = importlib.util.spec_from_file_location("unet_throughput", Path(__file__).with_name("unet_throughput.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.diffusers_unet(cfg)


class _Shadow:
    """diffusers' EMAModel seen as a module's state dict, so that dlib.checkpoint can save and load it."""

    def __init__(self, ema):
        self.ema = ema

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {str(i): p for i, p in enumerate(self.ema.shadow_params)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.ema.shadow_params = [state[str(i)].clone() for i in range(len(state))]


def _peer_config_dict(cfg: PeerConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def train_peer(cfg: PeerConfig, stop_after: int | None = None) -> dict:
    """Train (or resume) the peer run ``cfg.out_dir/cfg.name`` like ``dlib.train.train``: the same state files
    (dlib.checkpoint: atomic, sha256-checked, exact resume) and card fields. Returns dict(model, card)."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    run_dir = Path(cfg.out_dir) / cfg.name
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_all, _ = data.load_images(cfg.dataset, "train", limit=cfg.limit)
    net = peer_unet(cfg.unet)
    ema = EMAModel(
        net.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, inv_gamma=cfg.ema_inv_gamma, power=cfg.ema_power
    )
    opt = torch.optim.AdamW(
        net.parameters(), lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay, eps=cfg.adam_eps
    )
    lr_factor = get_scheduler(
        cfg.lr_schedule, opt, num_warmup_steps=cfg.warmup, num_training_steps=cfg.steps
    ).lr_lambdas[0]
    noise_sched = DDPMScheduler(num_train_timesteps=cfg.T, beta_schedule=cfg.beta_schedule)
    card = {"config": _peer_config_dict(cfg), "step": 0, "wall_time_s": 0.0, "loss_log": [], "hardware": []}
    if (run_dir / "card.json").exists():
        card = checkpoint.load_state(run_dir, net, _Shadow(ema), opt, gen)
        if {**card["config"], "steps": cfg.steps, "out_dir": cfg.out_dir} != _peer_config_dict(cfg):
            raise ValueError(f"{run_dir} was trained with a different config")
        card["config"].update(steps=cfg.steps, out_dir=cfg.out_dir)
    ema.optimization_step = step = card["step"]
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    if step < end and checkpoint.hardware() not in card["hardware"]:
        card["hardware"].append(checkpoint.hardware())
    window, start = [], time.perf_counter()
    while step < end:
        x_0 = x_all[torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen)]
        noise = torch.randn(x_0.shape, generator=gen)
        t = torch.randint(0, cfg.T, (cfg.batch_size,), generator=gen)
        for group in opt.param_groups:  # the example steps its LambdaLR after each update: update s uses lambda(s)
            group["lr"] = cfg.lr * lr_factor(step)
        loss = F.mse_loss(net(noise_sched.add_noise(x_0, noise, t), t).sample.float(), noise.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        ema.step(net.parameters())
        step += 1
        window.append(loss.item())
        if step % cfg.log_every == 0 or step == end:
            card["loss_log"].append([step, sum(window) / len(window)])
            window = []
        if step % cfg.ckpt_every == 0 or step == end:
            card.update(step=step, wall_time_s=card["wall_time_s"] + time.perf_counter() - start)
            checkpoint.save_state(run_dir, net, _Shadow(ema), opt, gen, card)
            start = time.perf_counter()
    return {"model": net, "card": card}


# --- one entry -> its configuration and its trainer ---


def _unet(base: TrainConfig, changes: dict) -> UNetConfig:
    return dataclasses.replace(base.unet, **changes.get("unet", {}))


def train_config(entry: Entry, out: Path, steps: int, base: TrainConfig = BASE) -> TrainConfig:
    """The TrainConfig of a dlib entry: ``base`` with the entry's changes, named and placed for the study."""
    changes = {k: v for k, v in entry.changes.items() if k != "unet"}
    fields = {**RUN_FIELDS, **changes, "name": entry.name, "out_dir": str(out), "steps": steps}
    if entry.cpu_bf16:
        fields["amp_cpu"] = True
    return dataclasses.replace(base, **fields, unet=_unet(base, entry.changes))


def peer_config(entry: Entry, out: Path, steps: int, base: TrainConfig = BASE) -> PeerConfig:
    """The PeerConfig of a peer entry: the widths, data and batch of ``base``, then the entry's changes."""
    changes = {k: v for k, v in entry.changes.items() if k != "unet"}
    return PeerConfig(
        **{"batch_size": base.batch_size, **changes},
        name=entry.name,
        unet=_unet(base, entry.changes),
        limit=base.limit,
        out_dir=str(out),
        steps=steps,
    )


def _warmup_and_schedule(entry: Entry, base: TrainConfig) -> tuple[int, bool]:
    """(learning-rate warm-up steps, whether the rate decays over `steps`)."""
    if entry.peer:
        cfg = peer_config(entry, Path("."), UNBOUNDED, base)
        return cfg.warmup, cfg.lr_schedule != "constant"
    cfg = train_config(entry, Path("."), UNBOUNDED, base)
    return cfg.warmup, cfg.lr_schedule != "constant"


def train_chunk(entry: Entry, out: Path, steps: int, stop_after: int, base: TrainConfig = BASE) -> dict:
    """Resume the entry's run and train ``stop_after`` more steps of a run planned for ``steps``; its card."""
    if entry.peer:
        return train_peer(peer_config(entry, out, steps, base), stop_after)["card"]
    cfg = train_config(entry, out, steps, base)
    return train(cfg, stop_after=stop_after, device=torch.device("cpu"), progress=False)["card"]


# --- run: a budget of training-loop seconds, in chunks, resumable ---


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _card(run_dir: Path) -> tuple[int, float]:
    """(steps done, training seconds spent) from the run's card; (0, 0.0) before its first checkpoint."""
    card = _read_json(run_dir / "card.json")
    return (0, 0.0) if card is None else (card["step"], card["wall_time_s"])


class _Lock:
    """run_dir/.lock, created exclusively and holding this process's pid, so that two `run` processes never
    train one entry at once; a lock whose process has died is taken over."""

    def __init__(self, run_dir: Path):
        self.path, self.held = run_dir / ".lock", False

    def __enter__(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    os.kill(int(self.path.read_text() or 0), 0)
                    return False  # its process is alive
                except (ProcessLookupError, ValueError, FileNotFoundError):
                    self.path.unlink(missing_ok=True)  # a dead process's lock
                    continue
                except PermissionError:  # alive, another user's
                    return False
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return True
        return False

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)


def run_entry(
    entry: Entry,
    budget_s: float,
    out: Path,
    threads: int = 1,
    *,
    pace_factor=1.0,
    base: TrainConfig = BASE,
    chunk_s: float = 120.0,
    max_chunks: int | None = None,
    log=print,
) -> dict:
    """Train ``entry`` until its training loop has run ``budget_s`` seconds of the reference machine; return
    its study record.

    ``pace_factor`` (a number, or a function called once per call that trains) is how many times slower this
    machine is than the reference, now: a training second here counts as ``1 / pace_factor`` seconds of the
    budget. Every call that trains opens a *segment* of the record, from the training-loop second it resumes at,
    with its own factor, so a run that a session's end cut short resumes on another host with that host's pace,
    and the budget still counts reference seconds. The record (``out/NAME/study.json``, written atomically after
    every chunk) holds the budget, the threads, the segments, the probe's seconds per step and the planned
    steps, one line per chunk (steps, seconds, load average), and ``done``. ``max_chunks`` ends this call
    early, as a killed process would.
    """
    run_dir = Path(out) / entry.name
    path = run_dir / "study.json"
    rec = _read_json(path)
    if rec is None:
        if (run_dir / "card.json").exists():
            raise SystemExit(f"{run_dir} holds a run without a study record: remove it or use another --out")
        rec = {"name": entry.name, "budget_ref_s": budget_s, "threads": threads, "planned_steps": None}
        rec |= {
            "chunks": [],
            "segments": [],
            "done": False,
            "why": entry.why,
            "changes": entry.changes,
            "peer": entry.peer,
            "cpu_bf16": entry.cpu_bf16,
        }
    if (_budget_ref(rec), rec["threads"]) != (budget_s, threads):
        raise SystemExit(
            f"{entry.name} was started with a budget of {_budget_ref(rec)} s on {rec['threads']} threads, not "
            f"{budget_s} s on {threads}: use the same --budget-min and --threads, or another --out"
        )
    if rec["done"]:
        log(f"{entry.name}: done ({rec['chunks'][-1]['step']} steps, {rec['chunks'][-1]['wall_s']:.0f} s), skipped")
        return rec
    with _Lock(run_dir) as mine:
        if not mine:
            log(f"{entry.name}: another process is training it, skipped")
            return rec
        factor = float(pace_factor() if callable(pace_factor) else pace_factor)
        rec["segments"] = _segments(rec) + [
            {"from_wall_s": _card(run_dir)[1], "pace_factor": factor, "hardware": checkpoint.hardware()}
        ]
        checkpoint.atomic_save_json(rec, path)
        return _run_locked(entry, rec, path, out, base, chunk_s, max_chunks, log)


def _budget_ref(rec: dict) -> float:
    """The run's budget in seconds of the reference machine (records written before pace factors: its own)."""
    return rec.get("budget_ref_s", rec.get("budget_s"))


def _segments(rec: dict) -> list[dict]:
    """The record's segments; a record of a run that never resumed elsewhere (written before segments) has one."""
    if "segments" in rec:
        return list(rec["segments"])
    return [{"from_wall_s": 0.0, "pace_factor": rec.get("pace_factor", 1.0)}] if rec.get("chunks") else []


def spent_ref_s(rec: dict, wall_s: float) -> float:
    """Seconds of the reference machine that ``wall_s`` training-loop seconds of the run are worth: each
    segment's seconds divided by its host's pace factor."""
    segs = _segments(rec)
    ends = [s["from_wall_s"] for s in segs[1:]] + [wall_s]
    return sum(
        max(0.0, min(end, wall_s) - s["from_wall_s"]) / s["pace_factor"] for s, end in zip(segs, ends, strict=True)
    )


def machine_pace_factor(steps: int = 8, threads: int = 1, log=print) -> float:
    """How many times slower than the reference machine this one trains ``baseline`` (s/step here / there)."""
    here = pace(ENTRIES["baseline"], steps, log=log)
    factor = here / REFERENCE_S_PER_STEP
    log(
        f"this machine: baseline {here:.3f} s/step against {REFERENCE_S_PER_STEP:.3f} on the reference: budgets x{factor:.3f}"
    )
    return factor


def _run_locked(entry, rec, path, out, base, chunk_s, max_chunks, log) -> dict:
    chunks_here, factor = 0, rec["segments"][-1]["pace_factor"]

    def left(wall: float) -> float:  # the budget still to spend, in seconds of this machine
        return (_budget_ref(rec) - spent_ref_s(rec, wall)) * factor

    def chunk(steps: int, k: int) -> tuple[int, float]:
        nonlocal chunks_here
        before, t0, c0 = _card(path.parent), time.perf_counter(), time.process_time()
        card = train_chunk(entry, out, steps, k, base)
        chunks_here += 1
        rec["chunks"].append(  # call_s and cpu_s: the whole call (start-up too), this process's CPU time in it
            {
                "step": card["step"],
                "wall_s": round(card["wall_time_s"], 3),
                "call_s": round(time.perf_counter() - t0, 3),
                "cpu_s": round(time.process_time() - c0, 3),
                "loadavg_1m": os.getloadavg()[0],
            }
        )
        checkpoint.atomic_save_json(rec, path)
        rate = (card["wall_time_s"] - before[1]) / max(1, card["step"] - before[0])
        log(
            f"{entry.name}: step {card['step']}, {card['wall_time_s']:.1f} s, {left(card['wall_time_s']):.0f} s left ({rate:.3f} s/step)"
        )
        return card["step"], card["wall_time_s"]

    if rec["planned_steps"] is None:  # plan the run's length from its first steps, inside the warm-up
        warmup, decays = _warmup_and_schedule(entry, base)
        limit = min(PROBE_STEPS, warmup) if decays else 5  # a constant rate needs no plan, only a pace
        if limit < 2:
            raise ValueError(f"{entry.name}: a decaying learning rate needs a warm-up of at least 2 steps to plan by")
        step, wall = _card(path.parent)
        if "probe_start" not in rec:  # the first steps carry one-off costs: time the steps after them
            if step < max(1, limit // 4):
                step, wall = chunk(UNBOUNDED, max(1, limit // 4) - step)
            rec["probe_start"] = [step, wall]
        s0, w0 = rec["probe_start"]
        # the probe spends at most ~10% of the budget (by the first steps' pace), and at least one more step
        probe = min(limit, s0 + max(1, int(0.1 * left(0.0) / max(w0 / max(1, s0), 1e-9))))
        if step < probe:
            step, wall = chunk(UNBOUNDED, probe - step)
        rate = (wall - w0) / (step - s0) if step > s0 else wall / max(1, step)
        rec["probe_s_per_step"] = rate
        rec["planned_steps"] = step + max(1, round(left(wall) / rate)) if decays else UNBOUNDED
        checkpoint.atomic_save_json(rec, path)
        log(f"{entry.name}: {rate:.3f} s/step, planned {rec['planned_steps']} steps")
    planned, rate = rec["planned_steps"], rec["probe_s_per_step"]
    while True:
        step, wall = _card(path.parent)
        if step >= planned or left(wall) < rate / 2:
            rec["done"], rec["stopped_by"] = True, "steps" if step >= planned else "budget"
            checkpoint.atomic_save_json(rec, path)
            log(f"{entry.name}: finished, {step} steps in {wall:.1f} s (stopped by the {rec['stopped_by']})")
            return rec
        if max_chunks is not None and chunks_here >= max_chunks:
            return rec
        k = min(max(1, round(left(wall) / rate)), max(1, int(chunk_s / rate)), planned - step)
        new_step, new_wall = chunk(planned, k)
        if new_step > step and new_wall > wall:
            rate = (new_wall - wall) / (new_step - step)  # the latest pace sizes the next chunk


def pace(entry: Entry, steps: int = 3, budget_s: float = 1800.0, base: TrainConfig = BASE, log=print) -> float:
    """Seconds per training step of ``entry`` (the real loop, in a throwaway folder, after one untimed step)."""
    with tempfile.TemporaryDirectory() as tmp:
        first = train_chunk(entry, Path(tmp), UNBOUNDED, 1, base)
        card = train_chunk(entry, Path(tmp), UNBOUNDED, steps, base)
    s = (card["wall_time_s"] - first["wall_time_s"]) / steps
    log(
        f"{entry.name:>22}  {s:6.3f} s/step  ~{budget_s / s:6.0f} steps in {budget_s / 60:g} min  ({checkpoint.hardware()})"
    )
    return s


# --- score: the same samples and metrics for every run ---


class PeerEps(torch.nn.Module):
    """The peer's UNet2DModel as a dlib eps-network: ``(x_t, t) -> eps_hat`` (diffusers returns an output object)."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t).sample


def load_ema_denoiser(entry: Entry, out: Path, base: TrainConfig = BASE) -> tuple[Denoiser, str]:
    """(the run's EMA network as a dlib Denoiser, the sha256 of the checkpoint it came from)."""
    run_dir = Path(out) / entry.name
    if not entry.peer:
        net, sched, card = checkpoint.load_ema(run_dir)
        return card_denoiser(card, net, sched), card["state_sha256"]
    tensors, card = checkpoint.read_state(run_dir)  # checked against the sha256 in its card
    cfg = PeerConfig(**{**card["config"], "unet": UNetConfig(**_tuples(card["config"]["unet"]))})
    net = peer_unet(cfg.unet)
    for i, p in enumerate(net.parameters()):
        p.data.copy_(tensors[f"ema.{i}"])
    sched = get_schedule(PEER_SCHEDULES[cfg.beta_schedule], cfg.T)
    return Denoiser(PeerEps(net).eval(), "eps", VP(sched)), card["state_sha256"]


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def draw_samples(den: Denoiser, n: int, seed: int, ddpm_steps: int, dpm_steps: int, chunk: int = 100) -> dict:
    """{"ddpm": (n, 1, 28, 28), "dpm": ...}: chunk c starts from x_T of seed ``seed + c`` (the same for every
    run); DDPM draws its step noise from the same generator, DPM-Solver++(2M) is deterministic."""
    out = {"ddpm": [], "dpm": []}
    for c, i in enumerate(range(0, n, chunk)):
        gen = torch.Generator().manual_seed(seed + c)
        x_T = torch.randn((min(chunk, n - i), 1, 28, 28), generator=gen)
        out["dpm"].append(sample_dpm_solver(den, x_T, steps=dpm_steps, order=2).clamp(-1, 1))
        out["ddpm"].append(sample_ddpm(den, x_T, steps=ddpm_steps, spacing="linspace", generator=gen).clamp(-1, 1))
    return {k: torch.cat(v) for k, v in out.items()}


class Scorer:
    """The shipped MNIST classifier and the features of the 10,000 test images: FID and confident share."""

    def __init__(self):
        self.classifier, _, _ = checkpoint.load_pretrained("mnist-classifier")
        self.test_images, _ = data.load_images("mnist", "test")
        self.f_test = extract_features(self.classifier, self.test_images)

    def __call__(self, images: torch.Tensor) -> dict:
        fid, spread = fid_with_spread(
            extract_features(self.classifier, images), self.f_test, generator=torch.Generator().manual_seed(0)
        )
        confident = confident_share(self.classifier, images)
        return {"fid": round(fid, 3), "fid_std": round(spread, 3), "confident": round(confident, 4)}


def score_entry(entry: Entry, out: Path, scorer: Scorer, settings: dict, base: TrainConfig = BASE, log=print) -> dict:
    """The entry's scores (cached in out/NAME/score.json, keyed by the settings and the checkpoint's sha256)."""
    den, sha = load_ema_denoiser(entry, out, base)
    key = settings | {"state_sha256": sha}
    path = Path(out) / entry.name / "score.json"
    cached = _read_json(path)
    if cached and cached["key"] == key:
        return cached
    t0 = time.perf_counter()
    samples = draw_samples(den, settings["n"], settings["seed"], settings["ddpm_steps"], settings["dpm_steps"])
    result = {"key": key, "sample_s": round(time.perf_counter() - t0, 1)}
    result |= {"ddpm": scorer(samples["ddpm"]), "dpm": scorer(samples["dpm"])}
    checkpoint.atomic_save_json(result, path)
    log(f"{entry.name}: DDPM {result['ddpm']}, DPM++ {result['dpm']} ({result['sample_s']:.0f} s to sample)")
    return result


def reference_scores(out: Path, scorer: Scorer, n: int, seed: int) -> dict:
    """Real images at the same n: the confident share of n test images, and the FID of n training images
    against the test set (the floor a perfect model would reach at this n). Cached in out/reference-nN.json."""
    path = Path(out) / f"reference-n{n}-seed{seed}.json"
    cached = _read_json(path)
    if cached:
        return cached
    gen = torch.Generator().manual_seed(seed)
    test = scorer.test_images[torch.randperm(len(scorer.test_images), generator=gen)[:n]]
    train_images, _ = data.load_images("mnist", "train")
    train_sub = train_images[torch.randperm(len(train_images), generator=gen)[:n]]
    result = {"n": n, "seed": seed, "test": scorer(test), "train": scorer(train_sub)}
    checkpoint.atomic_save_json(result, path)
    return result


# --- report ---

COLUMNS = (
    "config",
    "changes",
    "steps (planned)",
    "train s",
    "threads",
    "CPU/thread",
    "hardware",
    "pace x",
    "FID DDPM",
    "FID DPM++",
    "conf>=0.9 DDPM",
    "conf>=0.9 DPM++",
)


def _fid(s: dict | None) -> str:
    return "-" if s is None else f"{s['fid']:.2f} +- {s['fid_std']:.2f}"


def _share(s: dict | None) -> str:
    return "-" if s is None else f"{100 * s['confident']:.1f}%"


def render_table(rows: list[dict], reference: dict | None = None) -> str:
    """A Markdown table: one row per run (``rows`` as ``collect_rows`` gives them), then the real-image reference."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        planned = "" if r["planned_steps"] in (None, UNBOUNDED) else f" ({r['planned_steps']})"
        cells = [
            f"`{r['name']}`",
            r["why"],
            f"{r['steps']}{planned}",
            f"{r['wall_s']:.0f}",
            str(r["threads"]),
            "-" if r.get("cpu_per_thread") is None else f"{r['cpu_per_thread']:.2f}",
            r["hardware"],
            f"{r.get('pace_factor', 1.0):.2f}",
            _fid(r.get("ddpm")),
            _fid(r.get("dpm")),
            _share(r.get("ddpm")),
            _share(r.get("dpm")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if reference:
        n = reference["n"]
        lines.append(
            f"| real images (n={n}) | {n} training images (FID) / {n} test images (share) | - | - | - | - | - | - | "
            f"{_fid(reference['train'])} | - | {_share(reference['test'])} | - |"
        )
    return "\n".join(lines)


def _cpu_share(rec: dict) -> float | None:
    """CPU seconds per wall-clock second per thread over the run's train() calls: about 1 on an idle machine,
    less when other processes took the cores (then the budget bought fewer steps than it would alone)."""
    call = sum(c.get("call_s", 0.0) for c in rec["chunks"])
    return round(sum(c.get("cpu_s", 0.0) for c in rec["chunks"]) / call / rec["threads"], 2) if call else None


def _effective_pace(rec: dict, wall_s: float) -> float:
    """Training-loop seconds here per second of the reference machine, over the whole run (its segments' mix)."""
    spent = spent_ref_s(rec, wall_s)
    return round(wall_s / spent, 3) if spent > 0 else 1.0


def collect_rows(entries: list[Entry], out: Path) -> list[dict]:
    """One row per entry that has a study record: its progress, and its scores where scored."""
    rows = []
    for e in entries:
        rec, card = _read_json(Path(out) / e.name / "study.json"), _read_json(Path(out) / e.name / "card.json")
        if rec is None or card is None:
            continue
        score = _read_json(Path(out) / e.name / "score.json") or {}
        rows.append(
            {
                "name": e.name,
                "why": e.why,
                "peer": e.peer,
                "changes": e.changes,
                "done": rec["done"],
                "budget_s": _budget_ref(rec),  # seconds of the reference machine: what the rows compare
                "pace_factor": _effective_pace(rec, card["wall_time_s"]),
                "pace_factors": [s["pace_factor"] for s in _segments(rec)],  # one per host the run trained on
                "threads": rec["threads"],
                "planned_steps": rec["planned_steps"],
                "steps": card["step"],
                "wall_s": card["wall_time_s"],
                "hardware": "; ".join(card["hardware"]),
                "cpu_per_thread": _cpu_share(rec),
                "score_settings": score.get("key"),
                "ddpm": score.get("ddpm"),
                "dpm": score.get("dpm"),
            }
        )
    return rows


# --- command line ---


def _selected(only: list[str] | None) -> list[Entry]:
    unknown = set(only or ()) - set(ENTRIES)
    if unknown:
        raise SystemExit(f"unknown entries {sorted(unknown)}; known: {list(ENTRIES)}")
    return list(STUDY) if only is None else [ENTRIES[name] for name in dict.fromkeys(only)]  # in the order given


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("list", "pace", "run", "score", "report"))
    p.add_argument(
        "--budget-min", type=float, default=30.0, help="training-loop minutes per run, on the reference machine"
    )
    p.add_argument(
        "--pace-factor",
        type=float,
        default=None,
        help="this machine's s/step over the reference's (default: time `baseline` here when a run starts)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (the budget is measured on these)")
    p.add_argument("--only", nargs="+", default=None, help="these entries only, in this order (default: all)")
    p.add_argument("--out", type=Path, default=OUT, help="where the runs live")
    p.add_argument("--n", type=int, default=500, help="samples per run and sampler")
    p.add_argument("--seed", type=int, default=0, help="chunk c of the samples starts from seed + c")
    p.add_argument("--ddpm-steps", type=int, default=100)
    p.add_argument("--dpm-steps", type=int, default=15)
    p.add_argument("--steps", type=int, default=3, help="pace: timed steps per entry")
    p.add_argument("--chunk-s", type=float, default=120.0, help="training seconds per train() call")
    p.add_argument("--unfinished", action="store_true", help="score runs that have not spent their budget yet")
    p.add_argument("--results", type=Path, default=RESULTS, help="where `report` writes its JSON")
    args = p.parse_args(argv)
    entries = _selected(args.only)
    if args.mode in ("pace", "run", "score"):
        torch.set_num_threads(args.threads)
    if args.mode == "list":
        for e in entries:
            print(f"{e.name:>22}  {e.why}  {json.dumps(e.changes) if e.changes else ''}")
        return None
    if args.mode == "pace":
        return {e.name: pace(e, args.steps, args.budget_min * 60) for e in entries}
    if args.mode == "run":
        factor = args.pace_factor if args.pace_factor is not None else functools.cache(machine_pace_factor)
        for e in entries:  # the machine is timed once, and only if a run starts here
            run_entry(e, args.budget_min * 60, args.out, args.threads, pace_factor=factor, chunk_s=args.chunk_s)
        return None
    settings = {"n": args.n, "seed": args.seed, "ddpm_steps": args.ddpm_steps, "dpm_steps": args.dpm_steps}
    if args.mode == "score":
        scorer = Scorer()
        reference_scores(args.out, scorer, args.n, args.seed)
        for e in entries:
            rec = _read_json(args.out / e.name / "study.json")
            if rec is None or not (rec["done"] or args.unfinished):
                print(f"{e.name}: not finished, not scored")
                continue
            score_entry(e, args.out, scorer, settings)
        return None
    rows = collect_rows(entries, args.out)
    previous = _read_json(args.results) if args.results.exists() else None
    if previous:  # rows of earlier sessions (their run folders are gone) stay in the table
        here = {r["name"] for r in rows}
        kept = {r["name"]: r for r in previous["rows"] if r["name"] not in here}
        rows = [r for e in entries for r in rows + list(kept.values()) if r["name"] == e.name]
    scored = {json.dumps({k: v for k, v in r["score_settings"].items() if k != "state_sha256"}, sort_keys=True)
              for r in rows if r["score_settings"]}  # fmt: skip
    if len(scored) > 1:
        print(f"warning: the runs were scored with different settings {sorted(scored)}: they are not comparable")
    how = json.loads(min(scored)) if scored else settings
    reference = _read_json(args.out / f"reference-n{how['n']}-seed{how['seed']}.json")
    if reference is None and previous and previous.get("reference"):
        ref = previous["reference"]
        reference = ref if (ref["n"], ref["seed"]) == (how["n"], how["seed"]) else None
    table = render_table(rows, reference)
    budgets = sorted({r["budget_s"] for r in rows})
    result = {
        "settings": f"each run trains for its budget of training-loop seconds on its threads, then {how['n']} EMA "
        f"samples from x_T of seeds {how['seed']}.. with DDPM-{how['ddpm_steps']} (linspace) and DPM-Solver++(2M)-"
        f"{how['dpm_steps']}; classifier-feature FID (mnist-classifier) vs the 10000 MNIST test images with "
        f"its bootstrap std (20 resamples), and the share of samples labelled with confidence >= {CONFIDENT}",
        "score_settings": how,
        "budgets_s": budgets,
        "all_done": all(r["done"] for r in rows),
        "all_scored": all(r["ddpm"] is not None for r in rows),
        "rows": rows,
        "reference": reference,
        "table": table,
        "command": "python benchmarks/recipe_study.py report" + (f" --out {args.out}" if args.out != OUT else ""),
    }
    if len(budgets) > 1:
        print(f"warning: the runs have different budgets {budgets}: they are not comparable")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=1) + "\n")
    print(table)
    return result


if __name__ == "__main__":
    main()
