"""Denoising score matching: the objective of score-based models (NCSN; notebook 11).

A network s(x, sigma) learns the score grad_x log p_sigma(x) of the data blurred by Gaussian noise,
p_sigma = p_data * N(0, sigma^2 I). The score of the blur itself is known: for x = x_0 + sigma z,
grad_x log q(x | x_0) = -z / sigma, and regressing it gives the marginal score in expectation (Vincent
2011). One level is not enough (Song & Ermon 2019): at a small sigma the target -z / sigma has variance
1 / sigma^2 per dimension and the learned score is only good near the data; at a large sigma it is
smooth but blurred. So train at many levels with the weight lambda(sigma) = sigma^2, which makes every
level's loss O(1):

    L = E_{sigma, x_0, z} [ sigma^2 || s(x_0 + sigma z, sigma) + z / sigma ||^2 ] = E || sigma s + z ||^2

(per-dimension mean, as every loss of ``dlib.losses``). The network sees the VE process's time
log(sigma) / 4 and is read by ``Denoiser(net, "score", VE(...))``, so every sampler of the course runs it.
"""

from __future__ import annotations

import torch

from dlib.denoiser import VE
from dlib.forward import mse_per_example
from dlib.losses import ONE_PROCESS, Shard
from dlib.utils import append_dims

SCORE_WEIGHTINGS = ("sigma2", "none")


def dsm_loss(score, x_0: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor, weighting: str = "sigma2") -> torch.Tensor:
    """The per-example loss, (B,): ``score(x, sigma)`` at x = x_0 + sigma z regresses -z / sigma, weighted by
    sigma^2 ("sigma2") or not ("none"). ``sigma`` is (B,), one level per example."""
    s = append_dims(sigma, x_0.ndim)
    loss = mse_per_example(score(x_0 + s * z, sigma), -z / s)
    return loss * sigma**2 if weighting == "sigma2" else loss


class ScoreMatchingLoss:
    """``loss(model, x_0, generator, **cond)``: denoising score matching at a level drawn uniformly from
    ``sigmas`` per example, weighted by sigma^2 ("sigma2", NCSN) or not at all ("none": with one tiny
    sigma, the study guide's version, whose target has variance 1 / sigma^2)."""

    def __init__(self, sigmas, process: VE | None = None, *, weighting: str = "sigma2", shard: Shard = ONE_PROCESS):
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if len(self.sigmas) == 0 or not bool((self.sigmas > 0).all() & self.sigmas.isfinite().all()):
            raise ValueError(f"sigmas must be positive finite noise levels, got {sigmas!r}")
        if weighting not in SCORE_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {SCORE_WEIGHTINGS}, got {weighting!r}")
        self.process, self.weighting, self.shard = process or VE(), weighting, shard

    def __call__(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None, **cond) -> torch.Tensor:
        sigma = self.sigmas[self.shard.randint(len(self.sigmas), x_0, generator).cpu()]  # (B,) float64
        z = self.shard.randn(x_0, generator)

        def score(x, sigma):
            return model(x, self.process.time(sigma).float().to(x.device), **cond)

        return dsm_loss(score, x_0, sigma.to(x_0), z, self.weighting).mean()

    def __repr__(self) -> str:
        return f"ScoreMatchingLoss({len(self.sigmas)} levels in [{self.sigmas.min():.3g}, {self.sigmas.max():.3g}], {self.weighting!r})"
