"""Training throughput of dlib's U-Net against diffusers' UNet2DModel of the same size.

Both networks are built to the shape of the U-Net most shipped MNIST models use (``RECIPES["mnist-flow-unet"].unet``:
channels 32/64/64, one residual block per level, self-attention at the 7x7 level and in the middle, GroupNorm of 8
groups at the first level), checked to have parameter counts within 10% of each other, and timed on the same
batch in the same process, in alternating rounds so that machine noise hits both alike.

    python benchmarks/unet_throughput.py                  # batch 128, 28x28, CPU
    python benchmarks/unet_throughput.py --device cuda --batch 256

Prints and writes benchmarks/results/unet_throughput-<device>.json. The headline number is the
ratio diffusers_time / dlib_time (> 1 means dlib is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dlib.checkpoint import hardware
from dlib.nets import UNet
from dlib.recipes import RECIPES


def diffusers_unet(cfg):
    from diffusers import UNet2DModel

    ch = tuple(cfg.base_channels * m for m in cfg.channel_mults)
    attn = [lvl in cfg.attention_levels for lvl in range(len(ch))]
    return UNet2DModel(
        sample_size=28,
        in_channels=cfg.in_channels,
        out_channels=cfg.in_channels,
        block_out_channels=ch,
        layers_per_block=cfg.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        norm_num_groups=8,
        attention_head_dim=ch[-1] // cfg.heads,
        resnet_time_scale_shift="scale_shift",
    )


def step_time(model, call, x, t, opt, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = call(model, x, t).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model per round")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = RECIPES["mnist-flow-unet"].unet  # the 32-wide U-Net the module docstring describes
    device = torch.device(args.device)
    models = {"dlib": UNet(cfg).to(device), "diffusers": diffusers_unet(cfg).to(device)}
    calls = {"dlib": lambda m, x, t: m(x, t), "diffusers": lambda m, x, t: m(x, t).sample}
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    if abs(params["diffusers"] / params["dlib"] - 1) > 0.10:
        raise SystemExit(f"parameter counts differ by more than 10%: {params}")
    x = torch.randn(args.batch, 1, 28, 28, device=device)
    t = torch.randint(0, 1000, (args.batch,), device=device)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    for k in models:  # warm-up: allocator, kernels
        step_time(models[k], calls[k], x, t, opts[k], 2)
    times = {k: [] for k in models}
    for _ in range(args.rounds):
        for k in models:
            times[k] += step_time(models[k], calls[k], x, t, opts[k], args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "parameters": params,
        "median_step_s": med,
        "ratio_diffusers_over_dlib": med["diffusers"] / med["dlib"],
        "batch": args.batch,
        "image": "1x28x28",
        "timed_steps_per_model": args.rounds * args.steps,
        "hardware": hardware(),
        "command": "python benchmarks/unet_throughput.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
    }
    out = Path(__file__).parent / "results" / f"unet_throughput-{device.type}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
