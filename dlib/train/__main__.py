"""Train a named recipe from the command line (the same command under torchrun runs it on N processes).

    python -m dlib.train --recipe mnist-unet                  # train (resumes if runs/mnist-unet exists)
    python -m dlib.train --recipe mnist-unet --steps 20000    # any TrainConfig field can be overridden
    python -m dlib.train --recipe mnist-unet --export         # write the EMA weights to data/models/
    python -m dlib.train --recipe mnist-tiny lr=2e-4 unet.base_channels=4 --sample-every 10
    torchrun --nproc_per_node=2 -m dlib.train --recipe mnist-unet    # DistributedDataParallel

The command sits on top of the package: it reads ``dlib.recipes`` and wires a sampler in for the
periodic sample grids, while the training loop itself stays independent of both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from dlib import checkpoint, data
from dlib.batches import load_training_data
from dlib.config import TrainConfig, build_denoiser, config_from_dict, config_to_dict
from dlib.recipes import RECIPES
from dlib.train.distributed import is_main_process
from dlib.train.loop import train


def parse_overrides(cfg: TrainConfig, pairs: list[str]) -> TrainConfig:
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
    try:
        return config_from_dict(d)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"bad config override: {e}") from e


@torch.no_grad()
def sample_grid(ema: torch.nn.Module, cfg: TrainConfig, shape: tuple[int, ...], n: int = 64, steps: int = 50):
    """n EMA samples (n, *shape) by ``samplers.sample_default`` (DDPM on the run's schedule, the reverse SDE
    for a flow) in ``steps`` steps, or one consistency step for a consistency model, the network read through its
    own parameterisation (``config.build_denoiser``). The same noise every call."""
    from dlib.samplers import sample_consistency, sample_default
    from dlib.schedules import get_schedule

    device = next(ema.parameters()).device
    gen = torch.Generator().manual_seed(0)  # the same noise every time: grids are comparable across steps
    x_T = torch.randn((n, *shape), generator=gen).to(device)
    sched = get_schedule(cfg.schedule, cfg.T).to(device)
    was_training = ema.training
    ema.eval()
    den = build_denoiser(cfg, ema, sched)
    if cfg.distill in ("cd", "ct"):  # a consistency model (notebook 12): one jump from sigma_max
        x = sample_consistency(den, den.process.sigma_max * x_T, steps=1)
    else:
        x = sample_default(den, x_T, steps=steps, generator=gen)
    ema.train(was_training)
    return x


def save_sample_grid(ema: torch.nn.Module, step: int, run_dir: Path, cfg: TrainConfig, shape: tuple[int, ...]) -> Path:
    """Write ``run_dir/samples-STEP.png``, an 8x8 grid of ``sample_grid``."""
    import matplotlib.pyplot as plt

    from dlib.plotting import image_grid

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"samples-{step:07d}.png"
    plt.imsave(path, image_grid(sample_grid(ema, cfg, shape), 8).numpy(), cmap="gray", vmin=0, vmax=1)
    return path


def cached_reflow_pairs(cfg: TrainConfig) -> dict:
    """Reflow's (sample, noise) pairs from the flow model ``cfg.reflow_of`` (``dlib.rectified.reflow_pairs``),
    made once and kept in the run's folder (``pairs.safetensors`` and ``pairs.json``), so a resumed run
    trains on the same pairs."""
    from dlib.rectified import reflow_pairs

    run_dir = Path(cfg.out_dir) / cfg.name
    path, meta = run_dir / "pairs.safetensors", run_dir / "pairs.json"
    flow = checkpoint.load_frozen(cfg.reflow_of)
    want = dict(of=cfg.reflow_of, n=cfg.reflow_n, sampler="heun", steps=cfg.reflow_steps, seed=cfg.seed)
    if path.exists() and meta.exists():  # reused only if made for this run and intact (else made again)
        card = json.loads(meta.read_text())
        if {k: card.get(k) for k in want} == want and data.sha256(path) == card.get("sha256"):
            return dict(**load_file(path), card=card)
    shape = tuple(load_training_data(dataclasses.replace(cfg, reflow_of=None, limit=1))[0].shape[1:])
    den = build_denoiser(cfg, flow, None)
    made = reflow_pairs(den, shape, cfg.reflow_n, sampler="heun", steps=cfg.reflow_steps, seed=cfg.seed)
    made["card"] = want | made["card"] | {"hardware": checkpoint.hardware()}
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_save_tensors({"x_0": made["x_0"], "noise": made["noise"]}, path)
        made["card"]["sha256"] = data.sha256(path)  # the same card whether the pairs are made or reused
        checkpoint.atomic_save_json(made["card"], meta)
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dlib.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    cfg = parse_overrides(RECIPES[args.recipe], args.overrides)
    cfg = dataclasses.replace(
        cfg, **{k: v for k, v in dict(steps=args.steps, out_dir=args.out_dir).items() if v is not None}
    )
    sample_every = args.sample_every if cfg.kind == "diffusion" and cfg.dataset not in data.TOYS else 0
    sample_every = 0 if cfg.latent_of else sample_every  # latents are not images: notebook 07 decodes them
    shape = tuple(load_training_data(dataclasses.replace(cfg, limit=1))[0].shape[1:]) if sample_every else ()
    result = train(
        cfg,
        pairs=cached_reflow_pairs(cfg) if cfg.reflow_of else None,
        resume=not args.no_resume,
        stop_after=args.stop_after,
        progress=not args.quiet,
        on_sample=lambda ema, step, run_dir: save_sample_grid(ema, step, run_dir, cfg, shape),
        sample_every=sample_every,
    )
    if not is_main_process():  # under torchrun, rank 0 reports and exports
        return
    print(json.dumps({k: result["card"][k] for k in ("step", "wall_time_s")}))
    if args.export:
        card = {k: v for k, v in result["card"].items() if k != "loss_log"} | {"recipe": args.recipe}
        card["final_loss"] = result["card"]["loss_log"][-1][1] if result["card"]["loss_log"] else None
        if cfg.kind == "autoencoder":  # fitted by the loop at the run's last step (dlib.nets.fit_scaling_factor)
            card["scaling_factor"] = result["ema"].scaling_factor.item()
        print(checkpoint.export_model(result["ema"], card, cfg.name))


if __name__ == "__main__":
    main()
