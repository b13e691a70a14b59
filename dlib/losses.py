"""Training objectives as interchangeable objects with one signature. Notebooks 04 and 06.

    loss(model, x_0, generator=None, **cond) -> scalar tensor: the batch mean of a per-example loss

``model`` is the network being trained, called the way its objective needs (``model(x_t, t, **cond)``
for a diffusion model, ``model(x)`` for a classifier); ``x_0`` is a batch of clean data (B, ...);
``generator`` is the run's seeded ``torch.Generator``, the source of every random draw the loss
makes (t, eps, a shift), so that a resumed run repeats them exactly; ``cond`` is the batch's
conditioning, handed to a generative model as keywords (labels ``y``, a text ``context`` and its
``context_mask``) or read as the targets of a supervised one (``y`` for a classifier). The training
loop knows nothing else about a loss, so another objective plugs in as one more callable with this
signature: an autoencoder loss (reconstruct ``x_0``, plus a KL or perceptual term), a contrastive
loss (two views of ``x_0`` drawn from ``generator``, cross-entropy over the batch's similarities),
flow matching (t ~ U[0, 1], x_t = (1 - t) x_0 + t eps, target the velocity eps - x_0) or consistency
training (two adjacent noise levels from one eps, the distance between the model's two outputs).

Under DistributedDataParallel each process holds a slice of the global batch, described by a
``Shard``; a loss makes its per-example draws through ``shard.randint`` / ``shard.rand`` /
``shard.randn``, which draw for the whole global batch and keep this process's rows, so the
processes together see exactly the draws of one process training on the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlib.denoiser import Flow
from dlib.forward import PREDICTIONS, l_simple, mse_per_example, q_sample
from dlib.schedules import Schedule
from dlib.utils import append_dims

WEIGHTINGS = ("none", "min_snr")


@dataclass(frozen=True)
class Shard:
    """This process's rows of a global batch: rank r of ``world`` holds rows r b .. (r + 1) b - 1, b = B / world.

    ``Shard()`` (rank 0 of 1) is a single process: every method then returns the whole batch's draws.
    """

    rank: int = 0
    world: int = 1

    def __post_init__(self):
        if not 0 <= self.rank < self.world:
            raise ValueError(f"a shard needs 0 <= rank < world, got rank {self.rank} of world {self.world}")

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch x (B, ...) -> (B / world, ...)."""
        if len(x) % self.world:
            raise ValueError(f"a global batch of {len(x)} does not split evenly over {self.world} processes")
        b = len(x) // self.world
        return x[self.rank * b : (self.rank + 1) * b]

    def _draw(self, draw, x: torch.Tensor, generator: torch.Generator | None, shape=()) -> torch.Tensor:
        device = generator.device if generator is not None else x.device
        full = draw((len(x) * self.world, *shape), generator=generator, device=device)
        # non_blocking: a host-to-device copy that does not wait for the device (no per-step sync)
        return self.rows(full).to(x.device, non_blocking=True)

    def randint(self, high: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One integer in 0..high-1 per example of the local batch x: shape (b,), long, on x's device."""
        return self._draw(lambda shape, **kw: torch.randint(0, high, shape, **kw), x, generator)

    def rand(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One U[0, 1) number per example of the local batch x: shape (b,), on x's device."""
        return self._draw(torch.rand, x, generator).to(x.dtype)

    def randn(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal noise shaped like the local batch x, in x's dtype and on its device."""
        return self._draw(torch.randn, x, generator, x.shape[1:]).to(x.dtype)


ONE_PROCESS = Shard()  # the whole batch in this process (no DistributedDataParallel)


def min_snr_weight(snr: torch.Tensor, prediction: str, gamma: float = 5.0) -> torch.Tensor:
    """Min-SNR-gamma weights on the MSE of each target (Hang et al. 2023), elementwise in SNR = alpha_bar / (1 - alpha_bar).

    The weight that turns each loss into min(SNR, gamma) ||x_0 - x_0_hat||^2 (the x_0-loss capped at
    gamma): min(SNR, gamma) / SNR for eps, min(SNR, gamma) / (SNR + 1) for v, min(SNR, gamma) for x_0.
    """
    capped = snr.clamp(max=gamma)
    if prediction == "eps":
        return (gamma / snr).clamp(max=1.0)  # = min(SNR, gamma) / SNR, and finite (1) at SNR = 0
    if prediction == "v":
        return capped / (snr + 1)
    if prediction == "x_0":
        return capped
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Images (B, C, H, W) resized to ``size`` = (H', W'), bilinear with antialiasing (progressive and multi-scale training)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def random_shift(x: torch.Tensor, generator: torch.Generator | None = None, max_shift: int = 2) -> torch.Tensor:
    """The batch rolled by one random (dy, dx), each in -max_shift..max_shift pixels: cheap regularisation for classifiers."""
    dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


class DiffusionLoss:
    """L_simple on the eps, x_0 or v target (DDPM eq. 14; Salimans & Ho 2022), optionally min-SNR weighted.

    Per example: w(t) ||target - model(x_t, t, **cond)||^2 averaged over dimensions, t ~ U{0..T-1},
    eps ~ N(0, I), x_t = q_sample(x_0, t, sched, eps) (``dlib.forward.l_simple``); w = 1, or with
    ``weighting="min_snr"`` the Min-SNR-gamma weight of the target (``min_snr_weight``). ``scales``
    (e.g. (0.5, 1.0)) averages the loss over bilinear resizes of 4-D image batches, each with its own
    t and eps (multi-scale training, notebook 04). The schedule must be on the data's device.
    """

    def __init__(
        self,
        sched: Schedule,
        prediction: str = "eps",
        weighting: str = "none",
        gamma: float = 5.0,
        *,
        scales: tuple[float, ...] = (1.0,),
        shard: Shard = ONE_PROCESS,
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.sched, self.prediction, self.weighting, self.gamma = sched, prediction, weighting, gamma
        self.scales, self.shard = tuple(scales) or (1.0,), shard
        self.weights = min_snr_weight(sched.snr, prediction, gamma) if weighting == "min_snr" else None  # (T,)

    def __call__(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None, **cond) -> torch.Tensor:
        losses = []
        for s in self.scales:
            x = x_0 if s == 1.0 else resize(x_0, (int(x_0.shape[-2] * s), int(x_0.shape[-1] * s)))
            t = self.shard.randint(self.sched.T, x, generator)
            eps = self.shard.randn(x, generator)
            losses.append(self.per_example(model, x, t, eps, **cond).mean())
        return sum(losses) / len(losses)

    def per_example(self, model, x_0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, **cond) -> torch.Tensor:
        """The weighted loss of each example at the given t (B,) and eps (B, ...): shape (B,)."""
        loss = l_simple(model, x_0, self.sched, prediction=self.prediction, t=t, eps=eps, **cond)
        return loss if self.weights is None else self.sched.at(self.weights, t, 1) * loss

    def __repr__(self) -> str:
        return f"DiffusionLoss({self.sched.name}, {self.prediction!r}, {self.weighting!r}, scales={self.scales})"


class FlowMatchingLoss:
    """Flow matching on the straight path (Lipman et al. 2023, the OT path with sigma_min = 0; Liu et al.
    2023, rectified flow): t ~ U[0, 1), x_t = (1 - t) x_0 + t eps (``Flow.path``), and the network, told
    ``time_scale * t``, regresses the velocity v_flow = dx_t / dt = eps - x_0. Sample it with
    ``Denoiser(net, "flow", Flow())`` (notebook 11).

    ``coupling``: how noise is paired with data. "independent" draws eps apart from x_0; "ot" re-pairs the
    batch's draws by the minibatch optimal-transport assignment (``ot_coupling``; Tong et al. 2024, Pooladian
    et al. 2023), which straightens the learned paths. A call may instead pass ``noise`` (B, ...), the
    partners of x_0 fixed in advance: reflow trains on (a model's sample, the noise it came from).
    """

    def __init__(self, process: Flow | None = None, *, coupling: str = "independent", shard: Shard = ONE_PROCESS):
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
        self.process, self.coupling, self.shard = process or Flow(), coupling, shard

    def __call__(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None, *, noise=None, **cond):
        t = self.shard.rand(x_0, generator)  # (B,)
        if noise is not None and noise.shape != x_0.shape:
            raise ValueError(f"noise must pair one-to-one with x_0 {tuple(x_0.shape)}, got {tuple(noise.shape)}")
        eps = self.shard.randn(x_0, generator) if noise is None else noise
        if self.coupling == "ot" and noise is None:
            eps = ot_coupling(x_0, eps)
        return flow_matching_loss(lambda x, t: model(x, self.process.time_scale * t, **cond), x_0, eps, t).mean()


def flow_matching_loss(velocity, x_0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The per-example loss, (B,): ``velocity(x_t, t)`` at x_t = (1 - t) x_0 + t eps (``Flow.path``) regresses
    dx_t / dt = eps - x_0. ``t`` is (B,) in [0, 1]; t = 0 is the data, t = 1 the noise."""
    a, b = (append_dims(c, x_0.ndim) for c in Flow.path(t))
    return mse_per_example(velocity(a * x_0 + b * eps, t), eps - x_0)


COUPLINGS = ("independent", "ot")


def ot_coupling(x_0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """eps re-ordered so that row i is x_0[i]'s partner under the minibatch optimal-transport plan: the
    permutation minimising sum_i ||x_0[i] - eps[pi(i)]||^2 (the Hungarian algorithm, scipy's
    linear_sum_assignment). With B draws the pairs approach the OT coupling of the two distributions."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x_0.flatten(1).double(), eps.flatten(1).double()).pow(2)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return eps[torch.as_tensor(cols[rows.argsort()], device=eps.device)]


def _labels(cond: dict, who: str) -> torch.Tensor:
    if "y" not in cond:
        raise TypeError(f"{who} needs the batch's labels: loss(model, x_0, generator, y=labels), got {sorted(cond)}")
    return cond["y"]


class ClassifierLoss:
    """Cross-entropy of ``model(random_shift(x_0))`` against the labels ``y``: a classifier of clean images."""

    def __init__(self, max_shift: int = 2):
        self.max_shift = max_shift

    def __call__(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None, **cond) -> torch.Tensor:
        y = _labels(cond, "ClassifierLoss")
        return F.cross_entropy(model(random_shift(x_0, generator, self.max_shift)), y)


class NoisyClassifierLoss:
    """Cross-entropy of ``model(x_t, t)`` against ``y`` at t ~ U{0..T-1}: log p(y | x_t, t) at every noise
    level, for classifier guidance (Dhariwal & Nichol 2021). x_t = q_sample of the shifted images."""

    def __init__(self, sched: Schedule, max_shift: int = 2, *, shard: Shard = ONE_PROCESS):
        self.sched, self.max_shift, self.shard = sched, max_shift, shard

    def __call__(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None, **cond) -> torch.Tensor:
        y = _labels(cond, "NoisyClassifierLoss")
        t = self.shard.randint(self.sched.T, x_0, generator)
        x = random_shift(x_0, generator, self.max_shift)
        x_t = q_sample(x, t, self.sched, self.shard.randn(x, generator))
        return F.cross_entropy(model(x_t, t), y)


class AutoencoderLoss:
    """Reconstruction error plus ``kl_weight`` times KL(q(z | x) || N(0, I)), per example, both summed over
    elements and divided by the image's element count (Rombach et al. 2022 without the perceptual and
    adversarial terms). ``recon``: "l1" (sharper edges on these images) or "mse" (a Gaussian decoder)."""

    def __init__(self, kl_weight: float = 1e-3, recon: str = "l1", *, shard: Shard = ONE_PROCESS):
        if recon not in ("l1", "mse") or kl_weight < 0:
            raise ValueError(
                f"AutoencoderLoss needs recon 'l1' or 'mse' and kl_weight >= 0, got {recon!r}, {kl_weight}"
            )
        self.kl_weight, self.recon, self.shard = kl_weight, recon, shard

    def parts(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The two terms, per example (B,), each divided by the image's element count."""
        x_rec, posterior = model(x_0, lambda mean: self.shard.randn(mean, generator))
        err = (x_rec - x_0).abs() if self.recon == "l1" else (x_rec - x_0) ** 2
        n = x_0[0].numel()
        return {"recon": err.flatten(1).sum(1) / n, "kl": posterior.kl() / n}

    def __call__(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None, **cond) -> torch.Tensor:
        p = self.parts(model, x_0, generator)
        return (p["recon"] + self.kl_weight * p["kl"]).mean()


class ContrastiveLoss:
    """InfoNCE in both directions (Radford et al. 2021): cross-entropy of each image's row of logits
    against its caption, and of each caption's column against its image, averaged.

    Captions repeat within a batch (ten classes, a few wordings): ``caption_id`` (B,) marks identical
    ones, and every identical caption counts as a positive (the target spreads evenly over them) rather
    than as a negative the model could never tell apart. Under DDP the negatives are the local slice's.
    """

    def __init__(self, max_shift: int = 2):
        self.max_shift = max_shift

    def __call__(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None, **cond) -> torch.Tensor:
        if "sentences" not in cond or "caption_id" not in cond:
            raise TypeError(f"ContrastiveLoss needs sentences=(B, D) and caption_id=(B,), got {sorted(cond)}")
        logits = model(random_shift(x_0, generator, self.max_shift), cond["sentences"])  # (B, B)
        return info_nce(logits, cond["caption_id"])


def info_nce(logits: torch.Tensor, caption_id: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of (B, B) image-caption logits (row i: image i against every caption): the mean of
    the cross-entropies image -> caption (rows) and caption -> image (columns), pair i's positive on the
    diagonal. With ``caption_id`` (B,), every caption equal to image i's own counts as a positive, the
    target spread evenly over them (symmetric, so the same targets serve both directions)."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"info_nce needs square (B, B) logits, got {tuple(logits.shape)}")
    ids = torch.arange(len(logits), device=logits.device) if caption_id is None else caption_id.to(logits.device)
    same = (ids[:, None] == ids[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
