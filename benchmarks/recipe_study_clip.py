"""Why the recipe study's ``cosine-schedule`` entry scores so badly: the first steps of an eps-model on the
cosine schedule, with and without clipping x_0_hat to [-1, 1].

The cosine schedule ends at alpha_bar_T of about 2.4e-9 (betas clipped at 0.999), so DDPM's first step reads
x_0_hat = (x_T - sqrt(1 - alpha_bar_T) eps_hat) / sqrt(alpha_bar_T): the network's error in eps is multiplied by
about 20,000. The study scores every entry the same way, without clipping (as DDPM is written in notebook 05);
diffusers' DDPMScheduler clips by default (clip_sample=True), as Nichol & Dhariwal (2021) did. This script
draws the entry's DDPM samples both ways from the same noise, reports the range of the unclipped samples before
the final clamp, and scores both as the study does (classifier-feature FID with bootstrap std, confident share).

    python benchmarks/recipe_study_clip.py                         # cosine-schedule, n = 500, DDPM 100 steps
    python benchmarks/recipe_study_clip.py --only baseline --n 200 # any finished entry

Writes nothing but its printout; the study's own table is unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from recipe_study import ENTRIES, OUT, Scorer, load_ema_denoiser

from dlib.samplers import sample_ddpm


def ddpm_samples(den, n: int, seed: int, steps: int, clip_x0: bool, chunk: int = 100) -> torch.Tensor:
    """The study's DDPM samples (``recipe_study.draw_samples``: chunk c from x_T and step noise of seed + c), before
    the final clamp to [-1, 1], with or without clipping x_0_hat at every step."""
    out = []
    for c, i in enumerate(range(0, n, chunk)):
        gen = torch.Generator().manual_seed(seed + c)
        x_T = torch.randn((min(chunk, n - i), 1, 28, 28), generator=gen)
        out.append(sample_ddpm(den, x_T, steps=steps, spacing="linspace", generator=gen, clip_x0=clip_x0))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="cosine-schedule", help="a finished study entry")
    p.add_argument("--out", type=Path, default=OUT, help="where the study's runs live")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ddpm-steps", type=int, default=100)
    args = p.parse_args(argv)
    den, sha = load_ema_denoiser(ENTRIES[args.only], args.out)
    scorer, result = Scorer(), {"entry": args.only, "state_sha256": sha, "n": args.n}
    for clip in (False, True):
        x = ddpm_samples(den, args.n, args.seed, args.ddpm_steps, clip)
        result[f"clip_x0={clip}"] = scorer(x.clamp(-1, 1)) | {
            "min": round(x.min().item(), 2),
            "max": round(x.max().item(), 2),
            "share_outside_[-1,1]": round((x.abs() > 1).float().mean().item(), 4),
        }
        print(f"clip_x0={clip}: {result[f'clip_x0={clip}']}", flush=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
