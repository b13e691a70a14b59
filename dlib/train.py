"""Training: L_simple with AdamW, warm-up, clipping, EMA, mixed precision on CUDA, exact resume.

    python -m dlib.train --recipe mnist-unet                  # train (resumes if runs/mnist-unet exists)
    python -m dlib.train --recipe mnist-unet --steps 20000    # any TrainConfig field can be overridden
    python -m dlib.train --recipe mnist-unet --export         # write the EMA weights to data/models/

Derived in notebook 04. A run lives in ``runs/NAME/``: ``state.safetensors`` (model, EMA,
optimiser, RNG states) and ``card.json`` (config, step, wall time, hardware, loss log), both
written atomically every ``ckpt_every`` steps, so a killed run resumes where it stopped and ends
with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dlib import checkpoint, data
from dlib.forward import l_simple, q_sample
from dlib.nets import Classifier, MLPDenoiser, NoisyClassifier, UNet, UNetConfig
from dlib.schedules import get_schedule
from dlib.utils import default_device


@dataclass
class TrainConfig:
    name: str = "run"  # run folder under out_dir, and the exported model's name
    kind: str = (
        "diffusion"  # "diffusion" (an eps/x_0/v model), "classifier" (clean images) or "noisy-classifier" (x_t, t)
    )
    dataset: str = "mnist"  # "mnist", "fashion-mnist", or a 2D toy name from dlib.data.TOYS
    pad_to_32: bool = False  # pad 28x28 images to 32x32 (needed for 3 downsamplings)
    limit: int | None = None  # use only the first `limit` training examples
    unet: UNetConfig = field(default_factory=UNetConfig)  # ignored for 2D toys (MLPDenoiser) and classifiers
    schedule: str = "linear"
    T: int = 1000
    prediction: str = "eps"  # "eps", "x_0" or "v": what the network outputs (see notebook 04)
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 200  # linear learning-rate warm-up steps (Adam's early updates are noisy)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # clip the global gradient norm; diffusion losses have rare huge-gradient batches
    ema_decay: float = 0.999  # EMA of the weights: samples come from the EMA model
    p_uncond: float = 0.1  # class-conditional U-Nets: share of labels replaced by "no label" (classifier-free guidance)
    amp: bool = True  # bfloat16 autocast on CUDA; ignored on the CPU
    progressive: tuple[
        tuple[float, int], ...
    ] = ()  # ((0.0, 16), (0.5, 32)): from that fraction of steps on, train at that size
    multiscale: tuple[float, ...] = ()  # e.g. (0.5, 1.0): average the loss over these image scales
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 200
    out_dir: str = "runs"


def _unet(**kw) -> UNetConfig:
    return UNetConfig(**kw)


RECIPES: dict[str, TrainConfig] = {
    # The shipped unconditional MNIST model: 1.2M parameters, one residual block per level, attention
    # only at 7x7 (and in the middle) where it is cheap. 2200 steps (4.7 epochs) took 85 minutes on one
    # busy CPU core; the learning rate is constant after warm-up, so a longer run (steps=...) simply
    # continues this one and resumes from its checkpoint.
    "mnist-unet": TrainConfig(
        name="mnist-unet", steps=2200, batch_size=128, lr=1e-3, warmup=200, ckpt_every=100,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    ),
    # Notebook 06 (conditioning): the same U-Net with a label embedding (null label 10, dropped 10% of
    # the time for classifier-free guidance), and a classifier of noisy images for classifier guidance.
    # 1500 steps each (3.2 epochs), about 55 minutes on one CPU core; the learning rate is constant
    # after warm-up, so steps=N continues a run.
    "mnist-cond-unet": TrainConfig(
        name="mnist-cond-unet", steps=1500, batch_size=128, lr=1e-3, warmup=200, ckpt_every=100,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), num_classes=10),
    ),
    "fashion-cond-unet": TrainConfig(
        name="fashion-cond-unet", dataset="fashion-mnist", steps=1500, batch_size=128, lr=1e-3, warmup=200, ckpt_every=100,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), num_classes=10),
    ),
    # The text-conditional U-Net: the same network, with cross-attention from the 7x7 and middle
    # attention blocks to the caption's MiniLM token embeddings (dlib.text), 10% null prompts.
    "mnist-text-unet": TrainConfig(
        name="mnist-text-unet", steps=2000, batch_size=128, lr=1e-3, warmup=200, ckpt_every=100,
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), context_dim=384),
    ),
    "mnist-noisy-classifier": TrainConfig(
        name="mnist-noisy-classifier", kind="noisy-classifier", steps=3000, batch_size=128, lr=2e-3, warmup=100, ema_decay=0.99
    ),
    # Classifiers for FID features, scores and guidance (clean images, no noise).
    "mnist-classifier": TrainConfig(name="mnist-classifier", kind="classifier", steps=1200, batch_size=128, lr=2e-3, warmup=100, ema_decay=0.99),
    "fashion-classifier": TrainConfig(
        name="fashion-classifier", kind="classifier", dataset="fashion-mnist", steps=1500, batch_size=128, lr=2e-3, warmup=100, ema_decay=0.99
    ),
    # Seconds-scale recipes for tests and the smoke budget.
    "toy-2d": TrainConfig(name="toy-2d", dataset="swiss_roll", schedule="cosine", T=100, steps=2000, batch_size=512, lr=3e-3, warmup=50, ema_decay=0.99, log_every=100, ckpt_every=500),
    "noisy-classifier-tiny": TrainConfig(name="noisy-classifier-tiny", kind="noisy-classifier", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5),
    "mnist-cond-tiny": TrainConfig(
        name="mnist-cond-tiny", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), num_classes=10),
    ),
    "mnist-text-tiny": TrainConfig(
        name="mnist-text-tiny", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), context_dim=384),
    ),
    "mnist-tiny": TrainConfig(
        name="mnist-tiny", steps=20, batch_size=16, limit=512, warmup=5, ckpt_every=5, log_every=5,
        unet=_unet(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,)),
    ),
}  # fmt: skip


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    if cfg.kind == "classifier":
        return Classifier()
    if cfg.kind == "noisy-classifier":
        return NoisyClassifier()
    if cfg.dataset in data.TOYS:
        return MLPDenoiser()
    return UNet(cfg.unet)


def load_training_data(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    if cfg.dataset in data.TOYS:
        x = data.toy_2d(cfg.dataset, cfg.limit or 100_000, seed=cfg.seed)
        return x, torch.zeros(len(x), dtype=torch.long)
    return data.load_images(cfg.dataset, "train", pad_to_32=cfg.pad_to_32, limit=cfg.limit)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then constant (the EMA does the averaging a decay would)."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))


def resolution_at(step: int, cfg: TrainConfig, full: int) -> int:
    """Progressive training: the image size in force at this step (the study guide's schedule)."""
    size = full
    for frac, res in cfg.progressive:
        if step >= frac * cfg.steps:
            size = res
    return size


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def drop_labels(y: torch.Tensor, p: float, null_label: int, gen: torch.Generator) -> torch.Tensor:
    """Replace each label by ``null_label`` with probability p, so one network learns both the
    conditional and the unconditional model (Ho & Salimans 2021, Algorithm 1)."""
    drop = torch.rand(y.shape, generator=gen).to(y.device) < p
    return torch.where(drop, torch.full_like(y, null_label), y)


def drop_context(
    model: UNet, context: torch.Tensor, context_mask: torch.Tensor, p: float, gen: torch.Generator
) -> dict:
    """The text version of ``drop_labels``: each prompt becomes the learned null prompt with probability p."""
    drop = (torch.rand(len(context), generator=gen) < p).to(context.device)[:, None]  # (B, 1)
    null = model.null_text(len(context), context.shape[1])
    return {
        "context": torch.where(drop[..., None], null["context"], context),
        "context_mask": torch.where(drop, null["context_mask"], context_mask),
    }


class TextCondition:
    """Captions for a batch (``dlib.captions``, drawn with the run's generator), encoded by the frozen
    sentence encoder, a share ``p_uncond`` replaced by the null prompt."""

    def __init__(self, cfg: TrainConfig, x_all: torch.Tensor, device: torch.device):
        from dlib.captions import AttributeScale
        from dlib.text import TextEncoder

        self.cfg, self.encoder, self.scale = cfg, TextEncoder(device), AttributeScale.fit(x_all)

    def __call__(self, model: UNet, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> dict:
        from dlib.captions import captions

        context, mask = self.encoder(captions(y.cpu(), x.cpu(), self.cfg.dataset, self.scale, gen))
        return drop_context(model, context, mask, self.cfg.p_uncond, gen)


def diffusion_loss(model, x_0, sched, cfg: TrainConfig, gen: torch.Generator, step: int, cond: dict | None = None):
    """L_simple on the chosen target, with optional progressive resizing and multi-scale averaging.
    ``cond`` holds the conditioning keywords of the batch (labels ``y`` or a text ``context``)."""
    cond = cond or {}
    size = resolution_at(step, cfg, x_0.shape[-1])
    if x_0.ndim == 4 and size != x_0.shape[-1]:
        x_0 = F.interpolate(x_0, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    scales = cfg.multiscale or (1.0,)
    losses = []
    for s in scales:
        x = (
            x_0
            if s == 1.0
            else F.interpolate(x_0, scale_factor=s, mode="bilinear", antialias=True, align_corners=False)
        )
        t = torch.randint(0, sched.T, (x.shape[0],), generator=gen).to(x.device)
        eps = torch.randn(x.shape, generator=gen).to(x.device)
        losses.append(l_simple(model, x, sched, prediction=cfg.prediction, t=t, eps=eps, **cond).mean())
    return sum(losses) / len(losses)


def train(
    cfg: TrainConfig,
    *,
    resume: bool = True,
    stop_after: int | None = None,
    device: torch.device | None = None,
    on_sample: Callable | None = None,
    sample_every: int = 0,
    progress: bool = True,
) -> dict:
    """Train (or resume) the run ``cfg.out_dir/cfg.name``; return ``dict(model, ema, card)``.

    ``stop_after`` ends this call after that many steps (the run stays resumable), as a killed
    process would. ``on_sample(ema, step, run_dir)`` is called every ``sample_every`` steps.
    """
    device = device or default_device()
    run_dir = Path(cfg.out_dir) / cfg.name
    torch.manual_seed(cfg.seed)  # dropout and initialisation
    gen = torch.Generator().manual_seed(cfg.seed)  # data order, t and eps
    model = build_model(cfg).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_schedule(cfg.schedule, cfg.T).to(device)
    x_all, y_all = load_training_data(cfg)
    card = {"config": config_to_dict(cfg), "step": 0, "wall_time_s": 0.0, "loss_log": [], "hardware": []}

    if resume and (run_dir / "card.json").exists():
        card = load_state(run_dir, model, ema, opt, gen)
        same = {"steps": card["config"]["steps"], "out_dir": card["config"]["out_dir"]}  # may differ on resume
        if (
            config_to_dict(config_from_dict(card["config"])) != config_to_dict(cfg) | same
        ):  # fields added later take defaults
            raise ValueError(f"{run_dir} was trained with a different config; use another name or --no-resume")
        card["config"].update(steps=cfg.steps, out_dir=cfg.out_dir)
    step, start, window = card["step"], time.perf_counter(), []
    use_amp = cfg.amp and device.type == "cuda"
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=cfg.name)
    text = TextCondition(cfg, x_all, device) if cfg.kind == "diffusion" and cfg.unet.context_dim else None
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    while step < end:
        idx = torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen)
        x, y = x_all[idx].to(device), y_all[idx].to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            if cfg.kind == "classifier":
                loss = F.cross_entropy(model(augment(x, gen)), y)
            elif cfg.kind == "noisy-classifier":  # log p(y | x_t, t) at every noise level, for classifier guidance
                t = torch.randint(0, sched.T, (len(x),), generator=gen).to(device)
                x_t = q_sample(augment(x, gen), t, sched, torch.randn(x.shape, generator=gen).to(device))
                loss = F.cross_entropy(model(x_t, t), y)
            else:
                if text is not None:
                    cond = text(model, x, y, gen)
                elif cfg.unet.num_classes and cfg.dataset not in data.TOYS:
                    cond = {"y": drop_labels(y, cfg.p_uncond, cfg.unet.num_classes, gen)}
                else:
                    cond = {}
                loss = diffusion_loss(model, x, sched, cfg, gen, step, cond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        step += 1
        if checkpoint.hardware() not in card["hardware"]:  # only hardware that actually trained
            card["hardware"].append(checkpoint.hardware())
        window.append(loss.item())
        bar.update(1)
        if step % cfg.log_every == 0 or step == end:
            card["loss_log"].append([step, sum(window) / len(window)])
            bar.set_postfix(loss=f"{card['loss_log'][-1][1]:.4f}")
            window = []
        if step % cfg.ckpt_every == 0 or step == end:
            card.update(step=step, wall_time_s=card["wall_time_s"] + time.perf_counter() - start)
            start = time.perf_counter()
            save_state(run_dir, model, ema, opt, gen, card)
        if on_sample and sample_every and step % sample_every == 0:
            on_sample(ema, step, run_dir)
    bar.close()
    return {"model": model, "ema": ema, "card": card}


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels: cheap regularisation for the classifiers."""
    dx, dy = (torch.randint(-2, 3, (2,), generator=gen)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def config_to_dict(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(d: dict) -> TrainConfig:
    d = dict(d)
    d["unet"] = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["unet"].items()})
    d["progressive"] = tuple(tuple(p) for p in d["progressive"])
    d["multiscale"] = tuple(d["multiscale"])
    return TrainConfig(**d)


def save_state(run_dir: Path, model, ema, opt, gen: torch.Generator, card: dict) -> None:
    """Write the full training state atomically; the card names the state's sha256."""
    opt_tensors, opt_meta = checkpoint.optimizer_to_tensors(opt)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    tensors |= opt_tensors | {"rng.torch": torch.get_rng_state(), "rng.gen": gen.get_state()}
    checkpoint.atomic_save_tensors(tensors, run_dir / "state.safetensors")
    card = card | {"optimizer": opt_meta, "state_sha256": data.sha256(run_dir / "state.safetensors")}
    checkpoint.atomic_save_json(card, run_dir / "card.json")


def load_state(run_dir: Path, model, ema, opt, gen: torch.Generator) -> dict:
    card = json.loads((run_dir / "card.json").read_text())
    path = run_dir / "state.safetensors"
    if data.sha256(path) != card["state_sha256"]:
        raise data.DataError(f"{path} does not match the sha256 in {run_dir / 'card.json'}: the checkpoint is corrupt")
    tensors = checkpoint.load_file(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    checkpoint.optimizer_from_tensors(
        opt, {k: v for k, v in tensors.items() if k.startswith("optim.")}, card.pop("optimizer")
    )
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.gen"])
    card.pop("state_sha256")
    return card


def _parse_overrides(cfg: TrainConfig, pairs: list[str]) -> TrainConfig:
    """Apply ``key=value`` overrides (values parsed as JSON when they parse, else kept as strings)."""
    d = config_to_dict(cfg)
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = d
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        if last not in target:
            raise SystemExit(f"unknown config field {key!r}; fields: {sorted(target)}")
        target[last] = value
    return config_from_dict(d)


def save_sample_grid(
    ema: torch.nn.Module, step: int, run_dir: Path, cfg: TrainConfig, n: int = 64, steps: int = 50
) -> Path:
    """Write ``run_dir/samples-STEP.png``: n EMA samples, DDPM respaced to ``steps`` steps (eps-models)."""
    # The command line wires the sampler in; the training loop itself stays independent of samplers.
    import matplotlib.pyplot as plt

    from dlib.plotting import image_grid
    from dlib.samplers import sample_ddpm

    size = 32 if cfg.pad_to_32 else 28
    device = next(ema.parameters()).device
    gen = torch.Generator().manual_seed(0)  # the same noise every time: grids are comparable across steps
    x_T = torch.randn((n, cfg.unet.in_channels, size, size), generator=gen).to(device)
    ema.eval()
    x = sample_ddpm(ema, x_T, get_schedule(cfg.schedule, cfg.T).to(device), steps, generator=gen)
    ema.train()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"samples-{step:07d}.png"
    plt.imsave(path, image_grid(x, 8).numpy(), cmap="gray", vmin=0, vmax=1)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int)
    parser.add_argument("--out-dir")
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--stop-after", type=int, help="end this process after N steps (resumable)")
    parser.add_argument("--export", action="store_true", help="export the run's EMA weights to data/models/NAME")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--sample-every", type=int, default=0, help="save a grid of EMA samples every N steps")
    parser.add_argument("overrides", nargs="*", help="config overrides such as lr=2e-4 unet.base_channels=64")
    args = parser.parse_args(argv)
    cfg = _parse_overrides(RECIPES[args.recipe], args.overrides)
    cfg = dataclasses.replace(
        cfg, **{k: v for k, v in dict(steps=args.steps, out_dir=args.out_dir).items() if v is not None}
    )
    result = train(
        cfg,
        resume=not args.no_resume,
        stop_after=args.stop_after,
        progress=not args.quiet,
        on_sample=lambda ema, step, run_dir: save_sample_grid(ema, step, run_dir, cfg),
        sample_every=args.sample_every if cfg.kind == "diffusion" and cfg.dataset not in data.TOYS else 0,
    )
    print(json.dumps({k: result["card"][k] for k in ("step", "wall_time_s")}))
    if args.export:
        card = {k: v for k, v in result["card"].items() if k != "loss_log"} | {"recipe": args.recipe}
        card["final_loss"] = result["card"]["loss_log"][-1][1] if result["card"]["loss_log"] else None
        print(checkpoint.export_model(result["ema"], card, cfg.name))


if __name__ == "__main__":
    main()


def load_pretrained(name: str, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, object, dict]:
    """A shipped model from ``data/models``: (model in eval mode, its Schedule or None, its card).

    The weights and card are checked against the sha256 manifest and against each other; the
    model is rebuilt from the card's config and loaded with ``strict=True``. Nothing is unpickled.
    """
    state, card = checkpoint.load_state_dict(name)
    cfg = config_from_dict(card["config"])
    model = build_model(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise data.DataError(f"models/{name}.safetensors does not fit the architecture in its card: {e}") from e
    sched = get_schedule(cfg.schedule, cfg.T) if cfg.kind != "classifier" else None
    return model.to(device).eval(), sched, card
