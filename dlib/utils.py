"""Small shared helpers: broadcasting, devices. Nothing here knows about diffusion."""

from __future__ import annotations

import torch


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims to ``x`` until it has ``ndim`` dims.

    The one broadcasting helper of the package: a per-sample value of shape (B,) becomes
    (B, 1, 1, 1) so it multiplies an image batch (B, C, H, W).
    """
    if x.ndim > ndim:
        raise ValueError(f"append_dims: input has {x.ndim} dims, more than the target {ndim}")
    return x.reshape(*x.shape, *([1] * (ndim - x.ndim)))


def default_device() -> torch.device:
    """CUDA when it is there, else the CPU. Library code follows ``x.device`` instead.

    On CUDA it also turns off TF32 in cuDNN's convolutions, which PyTorch turns on by default (its matrix products
    are float32 already): TF32 rounds a convolution's inputs to 10 bits, and the notebooks compare float32 results
    of two correct computations to rounding (DDIM against the learner's DDIM, DDIM against Euler), which on an H200
    with TF32 drifted 1e-3 apart over 20 sampler steps. Training under bf16 autocast is unaffected.
    """
    if torch.cuda.is_available():
        torch.backends.cudnn.allow_tf32 = False
        return torch.device("cuda")
    return torch.device("cpu")


def check_finite(x: torch.Tensor, where: str) -> torch.Tensor:
    """``x`` if every entry is finite, else a clear error (one device sync: call it once, on a result)."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        raise FloatingPointError(
            f"{where} produced {int(bad.sum())} non-finite values (NaN or inf) out of {x.numel()}: check the starting "
            "noise x_T for NaN or inf, and the model (a diverged network, or a prediction type that does not match)"
        )
    return x


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn on the generator's device, moved to ``x``'s.

    Drawing on the generator's own device keeps a seeded CPU generator usable with CUDA tensors.
    """
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation between two batches of vectors (Shoemake 1985), per example.

    Moves along the great circle from ``a`` (w = 0) to ``b`` (w = 1), with the norm interpolated
    linearly. For two independent N(0, I) draws, whose norms are both close to sqrt(dim), the path
    stays where Gaussian noise lives; linear interpolation cuts through the middle, where the norm
    drops by up to sqrt(2) and a sampler is fed noise it never saw.
    """
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    na, nb = fa.norm(dim=1, keepdim=True), fb.norm(dim=1, keepdim=True)
    cos = ((fa / na) * (fb / nb)).sum(1, keepdim=True).clamp(-1, 1)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    wa = torch.where(sin > 1e-6, torch.sin((1 - w) * theta) / sin, torch.full_like(sin, 1 - w))
    wb = torch.where(sin > 1e-6, torch.sin(w * theta) / sin, torch.full_like(sin, w))
    direction = wa * fa / na + wb * fb / nb  # unit-norm path between the two directions
    out = direction / direction.norm(dim=1, keepdim=True) * ((1 - w) * na + w * nb)
    return out.reshape(a.shape).to(a.dtype)


class CountCalls:
    """Wrap a model and count its calls (network evaluations, NFE) and the examples they processed.

    Other attributes pass through to the wrapped model, so the wrapper can stand in for it.
    """

    def __init__(self, model):
        self.model, self.calls, self.examples = model, 0, 0

    def __call__(self, x: torch.Tensor, *args, **kwargs):
        self.calls += 1
        self.examples += len(x)
        return self.model(x, *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["model"], name)
