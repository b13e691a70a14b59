"""Checkpoints: safetensors weights plus a JSON card. Atomic writes, exact resume, verified loads.

Two kinds of files:
- a *training state* (``runs/NAME/state.safetensors`` + ``card.json``): model, EMA, optimiser,
  RNG states and step, enough to resume a killed run exactly;
- a *shipped model* (``data/models/NAME.safetensors`` + ``NAME.json``): the EMA weights and a card
  (config, recipe, steps, wall time, hardware, metrics), listed with its sha256 in
  ``data/MANIFEST.sha256``. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from dlib import data
from dlib.data import DataError


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


def read_card(name: str, root: Path | None = None) -> dict:
    """The JSON card of a shipped model, after verifying its sha256."""
    return json.loads(data.verified_path(f"models/{name}.json", root).read_text())


def load_state_dict(name: str, root: Path | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Verified weights and card of a shipped model; a corrupt or mismatched file raises DataError."""
    card = read_card(name, root)
    path = data.verified_path(f"models/{name}.safetensors", root)
    if data.sha256(path) != card.get("weights_sha256"):
        raise DataError(f"models/{name}.safetensors does not match the weights_sha256 in its card {name}.json")
    return load_file(path), card
