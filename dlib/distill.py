"""Fast sampling by training (notebook 12): consistency models and progressive distillation, as losses with the
shared signature of ``dlib.losses``, ``loss(model, x_0, generator, **cond) -> scalar``.

**Consistency models** (Song et al. 2023; Song & Dhariwal 2023, "iCT") learn f(x_bar, sigma) = x_0 for every
point of a probability-flow ODE path, in the scaled state x_bar = x_0 + sigma eps (the VE view every process of
``dlib.denoiser`` shares) on sigma_min <= sigma <= sigma_max. The boundary condition f(x_bar, sigma_min) = x_bar
holds by construction, not by training:

    f(x_bar, sigma) = c_skip(sigma) x_bar + c_out(sigma) F(x_bar, sigma)
    c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2),   c_out = sigma_data (sigma - sigma_min) / sqrt(sigma_data^2 + sigma^2)

so c_skip(sigma_min) = 1 and c_out(sigma_min) = 0 exactly. F is the network's output in EDM's form: whatever the
student predicts (eps, a flow velocity, ...) is read as its denoiser D and rewritten D = c_skip^EDM x_bar +
c_out^EDM F (``Denoiser``'s "edm" preconditioning), so a student initialised from its teacher starts at f ~ D.

Training compares f at two adjacent levels sigma_{n+1} > sigma_n of a Karras grid of N levels (``karras_sigmas``):
the student at (x_bar_{n+1}, sigma_{n+1}) against the *target network* (an EMA of the student, no gradient) at
(x_bar_n, sigma_n). x_bar_{n+1} = x_0 + sigma_{n+1} z, and

- distillation (CD): x_bar_n is one ODE step of the teacher from x_bar_{n+1} (Euler, which is DDIM, or Heun);
- training (CT): x_bar_n = x_0 + sigma_n z with the *same* z: the one-sample estimate of that ODE step.

**Progressive distillation** (Salimans & Ho 2022, Algorithm 2): the student's one DDIM step from sigma to sigma''
(its grid of N steps) must land where the teacher's two DDIM steps sigma -> sigma' -> sigma'' (the grid of 2N)
land. In the process's own x = a x_0 + b eps, DDIM's step is x' = a' x_0_hat + b' eps_hat, and the x_0 the student
must predict at x follows in closed form (``pd_target``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dlib.denoiser import VE, Denoiser, Prediction, convert, edm_coefs, euler_step, heun_step
from dlib.losses import ONE_PROCESS, Shard
from dlib.samplers.grid import sigma_grid
from dlib.schedules import karras_sigmas
from dlib.utils import append_dims

SIGMA_MIN, SIGMA_MAX, SIGMA_DATA = 0.002, 80.0, 0.5  # Song et al. 2023 (EDM's range); MNIST in [-1, 1] has std ~0.6
DISTANCES = ("l2", "pseudo-huber")
SOLVERS = ("euler", "heun")
WEIGHTINGS_CM = ("uniform", "ict")


def consistency_coefs(sigma: torch.Tensor, sigma_min: float = SIGMA_MIN, sigma_data: float = SIGMA_DATA):
    """(c_skip, c_out) of the consistency function (Song et al. 2023, Appendix C): c_skip(sigma_min) = 1 and
    c_out(sigma_min) = 0 exactly, so f(x_bar, sigma_min) = x_bar. ``sigma`` a float64 tensor."""
    shifted = sigma - sigma_min
    return sigma_data**2 / (shifted**2 + sigma_data**2), sigma_data * shifted / (sigma_data**2 + sigma**2).sqrt()


class ConsistencyModel(Denoiser):
    """The consistency function f of a student denoiser ``inner`` (any parameterisation, on its own process), as a
    ``Denoiser`` of x_0 on ``VE(sigma_min, sigma_max)``: it takes x_bar = x_0 + sigma eps, sigma a float or a (B,)
    tensor in [sigma_min, sigma_max], and returns Prediction(f, (x_bar - f) / sigma). Sample it with
    ``dlib.samplers.sample_consistency``."""

    def __init__(
        self, inner: Denoiser, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, sigma_data=SIGMA_DATA
    ):
        if not isinstance(inner, Denoiser):
            raise TypeError(
                f"a consistency model wraps a dlib Denoiser (the student network), got {type(inner).__name__}"
            )
        if not 0 < sigma_min < sigma_max < math.inf:
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
        super().__init__(inner, "x_0", VE(sigma_min, sigma_max), sigma_data)

    def __call__(self, x_bar: torch.Tensor, sigma, t=None, **cond) -> Prediction:
        s = torch.as_tensor(sigma, dtype=torch.float64)
        lo, hi = self.process.sigma_range
        if bool(((s < lo * (1 - 1e-6)) | (s > hi * (1 + 1e-6))).any()):  # float32 round trips allowed
            raise ValueError(
                f"a consistency model is defined for sigma in [{lo}, {hi}] (its trained range), got sigma in "
                f"[{s.min().item():.4g}, {s.max().item():.4g}]"
            )
        inner = self.net
        a = append_dims(inner.process.coefs(s)[0], x_bar.ndim).to(x_bar)
        d = inner(a * x_bar, s, **cond).x_0  # the student's denoiser D(x_bar, sigma)
        skip_edm, out_edm, _ = (append_dims(c, x_bar.ndim).to(x_bar) for c in edm_coefs(s, self.sigma_data))
        c_skip, c_out = (append_dims(c, x_bar.ndim).to(x_bar) for c in consistency_coefs(s, lo, self.sigma_data))
        f = c_skip * x_bar + c_out * (d - skip_edm * x_bar) / out_edm  # F = (D - c_skip^EDM x_bar) / c_out^EDM
        return Prediction(f, (x_bar - f) / append_dims(s, x_bar.ndim).to(x_bar))


def distance(x: torch.Tensor, y: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Per-example distance (B,): "l2", the mean squared difference, or "pseudo-huber", sqrt(||x - y||^2 + c^2) - c
    with c = 0.00054 sqrt(d) over the d dimensions (Song & Dhariwal 2023, Section 3.3): L2 near zero, L1 far away."""
    sq = (x - y).flatten(1).pow(2)
    if kind == "l2":
        return sq.mean(1)
    if kind == "pseudo-huber":
        c = 0.00054 * math.sqrt(sq.shape[1])
        return (sq.sum(1) + c**2).sqrt() - c
    raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")


def ict_levels(step: int, total: int, s0: int = 10, s1: int = 1280) -> int:
    """N(k), the number of grid levels at training step k of ``total`` (Song & Dhariwal 2023, eq. 8): s0, doubled
    every K' = floor(total / (log2(floor(s1 / s0)) + 1)) steps, capped at s1; plus one (N levels make N - 1
    intervals). With s1 / s0 a power of two the cap is reached in the last K' steps."""
    k_prime = max(1, math.floor(total / (math.log2(s1 // s0) + 1)))
    return min(s0 * 2 ** (step // k_prime), s1) + 1


@torch.no_grad()
def teacher_step(
    teacher: Denoiser, x_bar: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, solver: str, **cond
):
    """One step of the teacher's probability-flow ODE d x_bar / d sigma = eps_hat from ``sigma`` to ``sigma_next``
    ((B,) tensors): Euler (DDIM) or Heun (one more call)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    s, s_next = (append_dims(c, x_bar.ndim).to(x_bar) for c in (sigma, sigma_next))

    def eps_at(x, level):
        a = append_dims(teacher.process.coefs(level)[0], x.ndim).to(x)
        return teacher(a * x, level, **cond).eps

    eps = eps_at(x_bar, sigma)
    x_euler = euler_step(x_bar, eps, s, s_next)
    return x_euler if solver == "euler" else heun_step(x_bar, eps, eps_at(x_euler, sigma_next), s, s_next)


class ConsistencyLoss:
    """Consistency distillation (``teacher`` a Denoiser) or consistency training (``teacher`` None), per step:

        n ~ U{0, ..., N - 2} on the grid sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min, z ~ N(0, I)
        x_hi = x_0 + sigma_n z;  x_lo = teacher_step(x_hi) (CD) or x_0 + sigma_{n+1} z, the same z (CT)
        loss = lambda(sigma) d(f_student(x_hi, sigma_n), f_target(x_lo, sigma_{n+1}))

    ``student(model)`` and ``target()`` build the two consistency models (the target network is the run's EMA,
    read without gradient). ``levels(step)`` is N at a training step (fixed for CD; ``ict_levels`` for CT);
    ``weighting`` "uniform" or "ict" (lambda = 1 / (sigma_n - sigma_{n+1}), Song & Dhariwal 2023).
    """

    def __init__(
        self,
        student: Callable[[torch.nn.Module], ConsistencyModel],
        target: Callable[[], ConsistencyModel],
        levels: Callable[[int], int],
        *,
        teacher: Denoiser | None = None,
        solver: str = "heun",
        distance: str = "l2",
        weighting: str = "uniform",
        shard: Shard = ONE_PROCESS,
    ):
        if distance not in DISTANCES or solver not in SOLVERS or weighting not in WEIGHTINGS_CM:
            raise ValueError(
                f"distance in {DISTANCES}, solver in {SOLVERS}, weighting in {WEIGHTINGS_CM}; got {distance!r}, "
                f"{solver!r}, {weighting!r}"
            )
        self.student, self.target, self.levels, self.teacher = student, target, levels, teacher
        self.solver, self.distance, self.weighting, self.shard = solver, distance, weighting, shard

    def __call__(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None, *, step: int = 0, **cond):
        n_levels = self.levels(step)
        cm = self.student(model)
        lo, hi = cm.process.sigma_range
        grid = karras_sigmas(lo, hi, n_levels).to(x_0.device)  # descending, float64
        n = self.shard.randint(n_levels - 1, x_0, generator)  # (B,)
        z = self.shard.randn(x_0, generator)
        s_hi, s_lo = grid[n], grid[n + 1]
        ode_step = (
            None if self.teacher is None else (lambda x, a, b: teacher_step(self.teacher, x, a, b, self.solver, **cond))
        )
        d = consistency_loss(
            lambda x, s: cm(x, s, **cond).x_0, lambda x, s: self.target()(x, s, **cond).x_0, x_0, z, s_hi, s_lo, ode_step,
            self.distance,
        )  # fmt: skip
        weight = 1 / (s_hi - s_lo) if self.weighting == "ict" else torch.ones_like(s_hi)
        return (weight.to(d) * d).mean()


def consistency_loss(
    f: Callable, f_target: Callable, x_0: torch.Tensor, z: torch.Tensor, sigma, sigma_next, step=None, kind: str = "l2"
) -> torch.Tensor:
    """The per-example consistency loss, (B,): the student ``f(x_bar, sigma)`` at x_bar = x_0 + sigma z against the
    target network ``f_target`` (no gradient) one level down, at ``step(x_bar, sigma, sigma_next)`` (CD: the
    teacher's ODE step) or, without a step, at x_0 + sigma_next z with the *same* z (CT). ``sigma``, ``sigma_next``
    (B,); ``kind`` the ``distance``."""
    s, s_next = (append_dims(torch.as_tensor(c), x_0.ndim).to(x_0) for c in (sigma, sigma_next))
    x = x_0 + s * z
    with torch.no_grad():
        x_next = x_0 + s_next * z if step is None else step(x, sigma, sigma_next)
        target = f_target(x_next, sigma_next)
    return distance(f(x, sigma), target, kind)


def pd_target(x: torch.Tensor, x_two: torch.Tensor, a, b, a_two, b_two) -> torch.Tensor:
    """The x_0 that a single DDIM step from x (coefficients a, b) to the level of x_two (a'', b'') must predict to
    land on x_two, the teacher's two steps: x'' = a'' x_0 + b'' (x - a x_0) / b solved for x_0 (Salimans & Ho 2022,
    Algorithm 2): x_0 = (x'' - (b'' / b) x) / (a'' - (b'' / b) a). Coefficients broadcast against x."""
    ratio = b_two / b
    return (x_two - ratio * x) / (a_two - ratio * a)


def ddim_to(pred: Prediction, a_next, b_next) -> torch.Tensor:
    """DDIM's deterministic step in the process's coordinates: x' = a' x_0_hat + b' eps_hat."""
    return a_next * pred.x_0 + b_next * pred.eps


class ProgressiveDistillationLoss:
    """One round of progressive distillation (Salimans & Ho 2022): the student takes ``steps`` DDIM steps on the
    grid ``sigma_grid(process, steps, spacing)`` where the teacher took 2 ``steps`` (the paper's equal steps in time:
    "uniform", whose grid of 2N levels contains the grid of N). Per example: a level j ~ U{0, ..., steps - 1}, x = a x_0 + b eps at the student's
    sigma_j, the teacher's two DDIM steps, ``pd_target``, and the truncated-SNR weight max(a^2 / b^2, 1) on
    ||x_0_target - x_0_hat||^2 (mean over dimensions). ``student(model)`` reads the network as a Denoiser."""

    def __init__(
        self,
        student: Callable[[torch.nn.Module], Denoiser],
        teacher: Denoiser,
        steps: int,
        *,
        spacing: str = "uniform",
        shard: Shard = ONE_PROCESS,
    ):
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"the student's steps must be a positive integer, got {steps!r}")
        sig_student, _ = sigma_grid(teacher.process, steps, spacing)
        sig_teacher, _ = sigma_grid(teacher.process, 2 * steps, spacing)
        if not torch.allclose(torch.tensor(sig_teacher[::2]), torch.tensor(sig_student), rtol=1e-6):
            raise ValueError(
                "progressive distillation needs the teacher's grid of 2N steps to contain the student's N: got "
                f"{sig_teacher} and {sig_student}"
            )
        self.student, self.teacher, self.steps, self.shard = student, teacher, steps, shard
        self.sigmas = torch.tensor(sig_teacher, dtype=torch.float64)  # 2N + 1 levels, inf first for a flow

    def __call__(self, model, x_0: torch.Tensor, generator: torch.Generator | None = None, **cond):
        j = self.shard.randint(self.steps, x_0, generator)  # (B,)
        eps = self.shard.randn(x_0, generator)
        process = self.teacher.process
        levels = [self.sigmas.to(x_0.device)[2 * j + k] for k in range(3)]  # sigma, sigma', sigma''
        (a, b), (a1, b1), (a2, b2) = (tuple(append_dims(c, x_0.ndim).to(x_0) for c in process.coefs(s)) for s in levels)
        x = a * x_0 + b * eps
        with torch.no_grad():
            x_mid = ddim_to(self.teacher(x, levels[0], **cond), a1, b1)
            x_two = ddim_to(self.teacher(x_mid, levels[1], **cond), a2, b2)
            target = pd_target(x, x_two, a, b, a2, b2)
        x_0_hat = self.student(model)(x, levels[0], **cond).x_0
        weight = (a / b).pow(2).clamp(min=1.0).flatten()  # truncated SNR, max(SNR, 1)
        return (weight * (x_0_hat - target).flatten(1).pow(2).mean(1)).mean()


def distill_loss(
    kind: str,
    student: Callable[[torch.nn.Module], Denoiser],
    teacher: Denoiser | None,
    target: torch.nn.Module | None,
    *,
    steps: int,
    total_steps: int,
    ct_levels: tuple[int, int] = (10, 1280),
    solver: str = "heun",
    distance: str = "l2",
    weighting: str = "uniform",
    shard: Shard = ONE_PROCESS,
) -> Callable:
    """The objective of a distillation run (``TrainConfig.distill``): "cd", "ct" or "pd". ``student(net)`` reads a
    network as the student's plain Denoiser; the consistency models wrap it in ``ConsistencyModel``, with ``target``
    (the run's EMA) as the target network. ``steps``: CD's grid levels, or the PD teacher's DDIM steps (the student
    takes half). A teacher of another parameterisation or process is read as the student's (``convert``), or raises
    where it cannot be (an eps-model at a flow's pure noise)."""
    if kind not in ("cd", "ct", "pd") or (teacher is None) != (kind == "ct"):
        raise ValueError(f"distill must be 'cd' or 'pd' with a teacher, or 'ct' without; got {kind!r}, {teacher}")
    if teacher is not None:
        ref = student(None)
        if (teacher.prediction, type(teacher.process)) != (ref.prediction, type(ref.process)):
            teacher = Denoiser(convert(teacher, ref.prediction, ref.process), ref.prediction, ref.process)
    if kind == "pd":
        return ProgressiveDistillationLoss(student, teacher, steps // 2, shard=shard)
    if target is None:
        raise ValueError("a consistency loss needs its target network (the run's EMA)")
    return ConsistencyLoss(
        lambda net: ConsistencyModel(student(net)),
        lambda: ConsistencyModel(student(target)),
        (lambda step: steps) if kind == "cd" else (lambda step: ict_levels(step, total_steps, *ct_levels)),
        teacher=teacher,
        solver=solver,
        distance=distance,
        weighting=weighting,
        shard=shard,
    )
