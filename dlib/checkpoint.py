"""Checkpoints: safetensors weights plus a JSON card. Atomic writes, exact resume, verified loads.

Two kinds of files:
- a *training state* (``runs/NAME/state.safetensors`` + ``card.json``): model, EMA, optimiser,
  RNG states and step, enough to resume a killed run exactly; ``load_ema`` reads its EMA network;
- a *shipped model* (``data/models/NAME.safetensors`` + ``NAME.json``): the EMA weights and a card
  (config, recipe, steps, wall time, hardware, metrics), listed with its sha256 in
  ``data/MANIFEST.sha256``, loaded by ``load_pretrained(NAME)``. Nothing is ever unpickled.
"""

from __future__ import annotations

import difflib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from dlib import data
from dlib.config import build_model, card_denoiser, config_from_dict
from dlib.data import DataError
from dlib.denoiser import Denoiser
from dlib.schedules import Schedule, get_schedule


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A process killed at any instant leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    atomic_write_bytes(path, save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}))


def atomic_save_json(obj: Any, path: Path) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def hardware() -> str:
    """A one-line description of where this process runs (for model cards)."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads (CPU), torch {torch.__version__}"


# --- optimiser state <-> flat tensors (safetensors holds tensors only) ---


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# --- training state: everything a killed run needs to resume exactly ---


def save_state(run_dir: Path, model, ema, opt, gen: torch.Generator, card: dict) -> None:
    """Write ``run_dir/state.safetensors`` (model, EMA, optimiser, RNG states) and ``card.json`` atomically;
    the card names the state's sha256, so a state and a card from different moments never pass as one."""
    opt_tensors, opt_meta = optimizer_to_tensors(opt)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    tensors |= opt_tensors | {"rng.torch": torch.get_rng_state(), "rng.gen": gen.get_state()}
    atomic_save_tensors(tensors, run_dir / "state.safetensors")
    card = card | {"optimizer": opt_meta, "state_sha256": data.sha256(run_dir / "state.safetensors")}
    atomic_save_json(card, run_dir / "card.json")


def read_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and card that ``save_state`` wrote; a state whose sha256 does not match its card raises DataError."""
    run_dir = Path(run_dir)
    card = json.loads((run_dir / "card.json").read_text())
    path = run_dir / "state.safetensors"
    if data.sha256(path) != card["state_sha256"]:
        raise DataError(f"{path} does not match the sha256 in {run_dir / 'card.json'}: the checkpoint is corrupt")
    return load_file(path), card


def load_state(run_dir: Path, model, ema, opt, gen: torch.Generator) -> dict:
    """Load what ``save_state`` wrote into model, EMA, optimiser and RNGs; return the card (``read_state``)."""
    tensors, card = read_state(run_dir)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    optimizer_from_tensors(opt, {k: v for k, v in tensors.items() if k.startswith("optim.")}, card.pop("optimizer"))
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.gen"])
    card.pop("state_sha256")
    return card


def load_ema(run_dir: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Schedule | None, dict]:
    """The EMA network of a training run folder (``train(...)["ema"]`` at its last checkpoint), without training:
    (model in eval mode, its Schedule or None, its card), as ``load_pretrained`` gives a shipped model.

    The state is checked against the sha256 in its card (``read_state``); the card keeps ``state_sha256``,
    which names the checkpoint the weights came from.
    """
    tensors, card = read_state(run_dir)
    card.pop("optimizer", None)
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    model, sched = _rebuild(card, ema, Path(run_dir) / "state.safetensors")
    return model.to(device).eval(), sched, card


def is_run_folder(name: str | Path) -> bool:
    """Whether ``name`` is a training run folder (it holds a ``card.json``) rather than a shipped model's name."""
    return (Path(name) / "card.json").exists()


def load_any(name: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Schedule | None, dict]:
    """A shipped model by name (``load_pretrained``) or the EMA network of a training run folder (``load_ema``):
    a run in progress is measured, frozen or distilled from exactly as a shipped model is."""
    return load_ema(Path(name), device) if is_run_folder(name) else load_pretrained(str(name), device)


def load_frozen(name: str, device: torch.device | str = "cpu") -> torch.nn.Module:
    """A frozen first stage for another run (``TrainConfig.latent_of``, ``embed_of``): a shipped model by name, or
    the EMA network of a training run folder (``load_ema``), e.g. an autoencoder retrained at the gpu budget."""
    return load_any(name, device)[0]


def read_any_card(name: str) -> dict:
    """The card of a shipped model, or of a training run folder (``card.json``)."""
    return json.loads((Path(name) / "card.json").read_text()) if is_run_folder(name) else read_card(name)


def load_denoiser(name: str, device: torch.device | str = "cpu") -> Denoiser:
    """A shipped model or a run folder's EMA as the samplers see it (``config.build_denoiser`` of its card),
    frozen: a distillation's teacher (notebook 12)."""
    model, sched, card = load_any(name, device)
    if card["config"].get("kind", "diffusion") != "diffusion":
        raise ValueError(f"{name} is a {card['config']['kind']}, not a diffusion model: it cannot be a teacher")
    return card_denoiser(card, model.requires_grad_(False), sched)


# --- shipped models ---


def models_dir() -> Path:
    return data.data_dir() / "models"


def export_model(model: torch.nn.Module, card: dict, name: str, root: Path | None = None) -> Path:
    """Write ``data/models/NAME.safetensors`` and ``NAME.json`` and (re)list both in the manifest."""
    root = root or data.data_dir()
    weights = root / "models" / f"{name}.safetensors"
    atomic_save_tensors(model.state_dict(), weights)
    card = {**card, "name": name, "weights_sha256": data.sha256(weights)}
    atomic_save_json(card, root / "models" / f"{name}.json")
    relist(root, [f"models/{name}.safetensors", f"models/{name}.json"])
    return weights


def update_card(name: str, updates: dict, root: Path | None = None) -> dict:
    """Merge ``updates`` into a shipped model's card (e.g. measured metrics) and relist its hash."""
    root = root or data.data_dir()
    card = read_card(name, root) | updates
    atomic_save_json(card, root / "models" / f"{name}.json")
    relist(root, [f"models/{name}.json"])
    return card


def relist(root: Path, relative_paths: list[str]) -> None:
    """Record the current sha256 of these files in ``data/MANIFEST.sha256`` (atomically)."""
    manifest = data.read_manifest(root)
    for rel in relative_paths:
        manifest[rel] = data.sha256(root / rel)
    lines = [f"{digest}  {rel}" for rel, digest in sorted(manifest.items())]
    atomic_write_bytes(root / data.MANIFEST, ("\n".join(lines) + "\n").encode())
    data._verify.cache_clear()


def shipped_models(root: Path | None = None) -> list[str]:
    """The names of the models listed in the manifest (``models/NAME.json``), sorted."""
    manifest = data.read_manifest(root)
    return sorted(
        rel[len("models/") : -len(".json")] for rel in manifest if rel.startswith("models/") and rel.endswith(".json")
    )


def read_card(name: str, root: Path | None = None) -> dict:
    """The JSON card of a shipped model, after verifying its sha256. An unknown name raises ValueError
    listing the shipped models and the closest name."""
    known = shipped_models(root)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model name {name!r}: the shipped models are {', '.join(known) or 'none'}{hint}")
    return json.loads(data.verified_path(f"models/{name}.json", root).read_text())


def load_state_dict(name: str, root: Path | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Verified weights and card of a shipped model; a corrupt or mismatched file raises DataError."""
    card = read_card(name, root)
    path = data.verified_path(f"models/{name}.safetensors", root)
    if data.sha256(path) != card.get("weights_sha256"):
        raise DataError(f"models/{name}.safetensors does not match the weights_sha256 in its card {name}.json")
    return load_file(path), card


def load_pretrained(name: str, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Schedule | None, dict]:
    """A shipped model from ``data/models``: (model in eval mode, its Schedule or None, its card).

    The weights and card are checked against the sha256 manifest and against each other; the
    model is rebuilt from the card's config and loaded with ``strict=True``. Nothing is unpickled.
    """
    state, card = load_state_dict(name)
    model, sched = _rebuild(card, state, f"models/{name}.safetensors")
    return model.to(device).eval(), sched, card


def _rebuild(card: dict, state: dict[str, torch.Tensor], what: str | Path) -> tuple[torch.nn.Module, Schedule | None]:
    """The network of a card's config with ``state`` loaded strictly, and its Schedule (None for a classifier; for a
    vocoder the schedule its training levels were drawn between, ``dlib.wavegrad``)."""
    cfg = config_from_dict(card["config"])
    model = build_model(cfg, card.get("image_shape"))  # cards written before it was recorded: the defaults
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise DataError(f"{what} does not fit the architecture in its card: {e}") from e
    return model, get_schedule(cfg.schedule, cfg.T) if cfg.kind in (
        "diffusion",
        "noisy-classifier",
        "prior",
        "vocoder",
    ) else None
