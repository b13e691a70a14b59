"""The training loop: AdamW, warm-up and a learning-rate schedule, clipping, EMA, bf16 autocast, exact resume.

Derived in notebook 04. What is trained and on what comes from the config (``dlib.config``: model,
loss, conditioning, data); the loop only runs it. A run lives in ``runs/NAME/``: ``state.safetensors``
(model, EMA, optimiser, RNG states) and ``card.json`` (config, step, wall time, hardware, loss log),
both written atomically every ``ckpt_every`` steps (``dlib.checkpoint``), so a killed run resumes
where it stopped and ends with the same weights as an uninterrupted one. Under torchrun it runs
unchanged on several processes (``dlib.train.distributed``). A step makes no host-device sync of
its own: the loss is summed on the device and read once per ``log_every`` steps.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dlib import checkpoint
from dlib.batches import build_condition, load_training_data
from dlib.config import (
    TrainConfig,
    build_loss,
    build_model,
    config_from_dict,
    config_to_dict,
)
from dlib.losses import resize
from dlib.nets import fit_scaling_factor
from dlib.schedules import get_schedule
from dlib.train import distributed
from dlib.train.latents import EmbeddingData, LatentData


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then ``cfg.lr_schedule``: constant (the EMA does the averaging a decay
    would, and a longer run simply continues a shorter one), or a cosine or linear decay to 0 at
    ``cfg.decay_steps`` (None: at cfg.steps), after which the rate stays 0: a run given more steps than
    its horizon (a wall-clock budget that ends it) decays over the horizon and then only moves the EMA."""
    horizon = cfg.steps if cfg.decay_steps is None else cfg.decay_steps
    warm = min(1.0, (step + 1) / max(1, cfg.warmup))
    p = min(1.0, max(0.0, (step - cfg.warmup) / max(1, horizon - cfg.warmup)))  # progress after warm-up
    decay = {"constant": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * p)), "linear": 1.0 - p}
    return cfg.lr * warm * decay[cfg.lr_schedule]


def ema_decay_at(step: int, cfg: TrainConfig) -> float:
    """The decay of the EMA update after optimiser step ``step`` (0-indexed), by ``cfg.ema_warmup``:

    - "ramp": min(ema_decay, (1 + step) / (10 + step)), TensorFlow's ExponentialMovingAverage with
      num_updates. It stays below 0.999 until step 8990, so in a shorter run the ramp, not ema_decay,
      sets the EMA (an average over roughly the last step / 9 updates).
    - "unbiased": beta (1 - beta^step) / (1 - beta^(step + 1)) with beta = ema_decay, Adam's bias
      correction: the EMA is exactly the normalised average of the weights after each update with
      weights beta^age, the initial weights not counted, so ema_decay matters from the first step
      (beta = 1 gives the plain mean of all updates).
    - "none": ema_decay from the first update, the EMA starting at the initial weights (DDPM's), whose
      share after n updates is still ema_decay^n.
    """
    beta = cfg.ema_decay
    if cfg.ema_warmup == "ramp":
        return min(beta, (1 + step) / (10 + step))
    if cfg.ema_warmup == "unbiased":
        return step / (step + 1) if beta == 1 else beta * (1 - beta**step) / (1 - beta ** (step + 1))
    return beta


def resolution_at(step: int, cfg: TrainConfig, full: int) -> int:
    """Progressive training: the image size in force at this step (the study guide's schedule)."""
    size = full
    for frac, res in cfg.progressive:
        if step >= frac * cfg.steps:
            size = res
    return size


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay ema + (1 - decay) model, parameter by parameter; buffers are copied."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


# What a resumed run may change: how long it trains, where it is kept, and the precision of its compute
# (bf16 autocast on a host that has fast bf16, float32 on one without; the weights are float32 either way).
RESUME_MAY_CHANGE = ("steps", "out_dir", "amp", "amp_cpu")


BASE_MUST_MATCH = ("prediction", "schedule", "T")


def same_process(cfg: TrainConfig, base_config: dict, base_of: str) -> None:
    """An edit model (notebook 08) fine-tunes or steers its base, so it must predict what the base predicts on the
    base's schedule: an eps target on a v base trains and samples without an error, into garbage."""
    base = config_from_dict(base_config)  # an older card: missing fields take their defaults
    differ = {k: (getattr(base, k), getattr(cfg, k)) for k in BASE_MUST_MATCH if getattr(base, k) != getattr(cfg, k)}
    if differ:
        said = ", ".join(f"{k} {b!r} (recipe: {c!r})" for k, (b, c) in differ.items())
        raise ValueError(f"{cfg.name} builds on {base_of}, which was trained with {said}: set the recipe's to match")


def _resume(cfg: TrainConfig, run_dir: Path, model, ema, opt, gen) -> dict:
    card = checkpoint.load_state(run_dir, model, ema, opt, gen)
    same = {k: card["config"][k] for k in RESUME_MAY_CHANGE if k in card["config"]}
    if config_to_dict(config_from_dict(card["config"])) != config_to_dict(cfg) | same:  # later fields: defaults
        raise ValueError(f"{run_dir} was trained with a different config; use another name or --no-resume")
    card["config"].update({k: getattr(cfg, k) for k in RESUME_MAY_CHANGE})
    return card


def train(
    cfg: TrainConfig,
    *,
    resume: bool = True,
    stop_after: int | None = None,
    device: torch.device | None = None,
    on_sample: Callable | None = None,
    sample_every: int = 0,
    progress: bool = True,
    pairs: dict | None = None,
) -> dict:
    """Train (or resume) the run ``cfg.out_dir/cfg.name``; return ``dict(model, ema, card)``.

    ``stop_after`` ends this call after that many steps (the run stays resumable), as a killed
    process would. ``on_sample(ema, step, run_dir)`` is called every ``sample_every`` steps. Under
    torchrun every process returns the same model and EMA; only rank 0 writes files and calls on_sample.
    A reflow run (``cfg.reflow_of``) trains on ``pairs``, ``dlib.rectified.reflow_pairs``' dict(x_0, noise, card).
    """
    if (pairs is None) != (cfg.reflow_of is None):
        raise ValueError(
            f"{cfg.name}: a reflow run (reflow_of={cfg.reflow_of!r}) trains on pairs, and only it: pass "
            "pairs=dlib.rectified.reflow_pairs(...) (python -m dlib.train makes them)"
        )
    with distributed.process_group(device) as (shard, device):
        return _train(cfg, shard, device, resume, stop_after, on_sample, sample_every, progress, pairs)


def _train(cfg, shard, device, resume, stop_after, on_sample, sample_every, progress, pairs) -> dict:
    if cfg.batch_size % shard.world:
        raise ValueError(f"batch_size {cfg.batch_size} does not split evenly over {shard.world} processes")
    main = shard.rank == 0
    run_dir = Path(cfg.out_dir) / cfg.name
    torch.manual_seed(cfg.seed)  # dropout and initialisation
    gen = torch.Generator().manual_seed(cfg.seed)  # data order, t and eps: the same on every process
    x_all, y_all = (
        load_training_data(cfg) if pairs is None else (pairs["x_0"], torch.zeros(len(pairs["x_0"]), dtype=torch.long))
    )
    clip = checkpoint.load_frozen(cfg.embed_of, device) if cfg.embed_of else None  # unCLIP's frozen embeddings
    if clip is not None and (cfg.prior.dim if cfg.kind == "prior" else cfg.unet.context_dim) != clip.embed_dim:
        what = "prior.dim" if cfg.kind == "prior" else "unet.context_dim"
        got = cfg.prior.dim if cfg.kind == "prior" else cfg.unet.context_dim
        raise ValueError(f"{cfg.embed_of} embeds into embed_dim = {clip.embed_dim} dimensions, but {what} is {got}")
    latents = LatentData(checkpoint.load_frozen(cfg.latent_of), x_all) if cfg.latent_of else None
    if cfg.kind == "prior":  # the data are the images' scaled embeddings
        latents = EmbeddingData(clip, x_all, cfg.prior.data_scale)
    image_shape = list(latents.shape if latents else x_all.shape[1:]) if x_all.ndim == 4 else None  # (C, H, W)
    image_shape = None if cfg.kind == "prior" else image_shape
    if cfg.kind == "diffusion" and image_shape and image_shape[0] != cfg.unet.in_channels:
        what = f"the latents of {cfg.latent_of}" if latents else cfg.dataset
        raise ValueError(f"{what} have {image_shape[0]} channels but unet.in_channels is {cfg.unet.in_channels}")
    net = build_model(cfg, image_shape).to(device)
    if cfg.base_of:  # notebook 08: start from a trained U-Net (resuming below overwrites this)
        base, _, base_card = checkpoint.load_any(cfg.base_of, device)
        same_process(cfg, base_card["config"], cfg.base_of)
        net.load_base(base)
    if cfg.reflow_of:  # notebook 11: reflow starts from the flow model whose pairs it trains on (Liu et al. 2023)
        net.load_state_dict(checkpoint.load_frozen(cfg.reflow_of, device).state_dict())
    teacher = checkpoint.load_denoiser(cfg.teacher_of, device) if cfg.teacher_of else None  # notebook 12, frozen
    if teacher is not None:  # CD and PD students start from their teacher (Song et al. 2023; Salimans & Ho 2022)
        try:
            net.load_state_dict(teacher.net.state_dict())
        except RuntimeError as e:
            raise ValueError(
                f"{cfg.name}: the student's unet config must match the teacher {cfg.teacher_of}'s: {e}"
            ) from e
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_schedule(cfg.schedule, cfg.T).to(device)
    card = {"config": config_to_dict(cfg), "step": 0, "wall_time_s": 0.0, "loss_log": [], "hardware": []}
    if resume and (run_dir / "card.json").exists():
        card = _resume(cfg, run_dir, net, ema, opt, gen)
    if image_shape:
        card["image_shape"] = image_shape  # what load_pretrained builds the network for
    if pairs is not None:
        card["reflow_pairs"] = pairs["card"]
    if teacher is not None:  # what the rounds of distillation before this one cost (progressive distillation's chain)
        t_card = checkpoint.read_any_card(cfg.teacher_of)
        card["distill_chain_wall_time_s"] = t_card.get("distill_chain_wall_time_s", 0.0) + (
            t_card["wall_time_s"] if t_card["config"].get("distill") else 0.0
        )

    loss_fn = build_loss(cfg, sched, shard, teacher=teacher, target=ema)  # ema: the consistency target network
    condition = build_condition(cfg, x_all, device, clip)
    at_step = cfg.distill in ("cd", "ct")  # the consistency losses read the step (CT's grid grows with it)
    model = distributed.wrap(
        net, shard, device, find_unused=cfg.kind == "prior" or bool(cfg.kind == "diffusion" and cfg.unet.context_dim)
    )
    net = model.module if shard.world > 1 else model  # the network itself (BatchNorm converted under DDP)
    step, start = card["step"], time.perf_counter()
    first = step
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    use_amp = {"cuda": cfg.amp, "cpu": cfg.amp_cpu}.get(device.type, False)  # bf16 compute, float32 weights
    hardware = checkpoint.hardware() + (f", {shard.world} processes (DDP)" if shard.world > 1 else "")
    hardware += ", bf16 autocast" if use_amp else ""
    if step < end and hardware not in card["hardware"]:  # only hardware that actually trained
        card["hardware"].append(hardware)
    window, window_steps = torch.zeros((), device=device), 0  # the loss summed on the device between logs
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and main), desc=cfg.name)
    while step < end:
        idx = torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen)  # the global batch
        x, y = x_all[idx], y_all[idx]
        cond = condition(net, x, y, gen)  # drawn for the global batch, like t and eps in the loss
        if pairs is not None:
            cond["noise"] = pairs["noise"][idx]  # reflow: each sample's own noise (dlib.losses.FlowMatchingLoss)
        x = latents.sample(idx, gen, shard) if latents else shard.rows(x)  # captions above measure the images
        x = x.to(device, non_blocking=True)
        cond = {k: shard.rows(v).to(device, non_blocking=True) for k, v in cond.items()}
        size = resolution_at(step, cfg, x.shape[-1])
        if x.ndim == 4 and size != x.shape[-1]:
            x = resize(x, (size, size))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = loss_fn(model, x, gen, **cond, **({"step": step} if at_step else {}))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        ema_update(ema, net, ema_decay_at(step, cfg))
        step += 1
        window, window_steps = window + loss.detach().float(), window_steps + 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == end:
            mean = distributed.mean_over_processes(window, shard).item() / window_steps  # the one sync per log
            card["loss_log"].append([step, mean])
            bar.set_postfix(loss=f"{mean:.4f}")
            window, window_steps = torch.zeros((), device=device), 0
        if step % cfg.ckpt_every == 0 or step == end:
            card.update(step=step, wall_time_s=card["wall_time_s"] + time.perf_counter() - start)
            start = time.perf_counter()
            if main:
                checkpoint.save_state(run_dir, net, ema, opt, gen, card)
        if main and on_sample and sample_every and step % sample_every == 0:
            on_sample(ema, step, run_dir)
    bar.close()
    if cfg.kind == "autoencoder" and step == cfg.steps and (step > first or ema.scaling_factor.item() == 1.0):
        fit_scaling_factor(ema, x_all.to(device))  # latent diffusion trains on scaling_factor * z (Rombach et al.)
        if main:
            checkpoint.save_state(run_dir, net, ema, opt, gen, card)
    return {"model": net, "ema": ema, "card": card}
