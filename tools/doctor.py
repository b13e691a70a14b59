"""Pre-workshop environment check: run it on every learner's machine a week before the day.

    .venv/bin/python tools/doctor.py            # every check, with a smoke run of notebook 02 (about 10 s)
    .venv/bin/python tools/doctor.py --quick    # without the notebook run

One aligned line per check, ``PASS``, ``FAIL`` or ``WARN`` (an optional item), then the detail and, when it fails,
``-> fix: ...``. The exit status is 1 if any check FAILs. Standard library and dlib only (plus jupyter_client and
nbclient, which the course's .venv installs for JupyterLab and the tests); each check is a small function returning
``(ok, detail, fix)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
KERNEL = "diffusion-course"
TORCH = "2.14.1"
MIN_PYTHON = (3, 10)
MIN_FREE_GIB = 2.0
QUICK_NOTEBOOK = ROOT / "solutions" / "02_noise_schedules.ipynb"
FIX_VENV = "make venv (or: rm -rf .venv && make venv)"

Result = tuple[bool, str, str]  # (ok, detail, fix)


def check_python() -> Result:
    v = sys.version_info
    ok = v[:2] >= MIN_PYTHON
    want = ".".join(map(str, MIN_PYTHON))
    return (
        ok,
        f"python {v.major}.{v.minor}.{v.micro}",
        f"install Python {want} or newer, then rm -rf .venv && make venv",
    )


def check_disk(path: Path = ROOT, min_gib: float = MIN_FREE_GIB) -> Result:
    free = shutil.disk_usage(path).free / 2**30
    return free >= min_gib, f"disk {free:.1f} GiB free at {path} (need {min_gib:g})", "free some disk space"


def check_venv(prefix: str | None = None, venv: Path = VENV) -> Result:
    prefix = Path(prefix or sys.prefix).resolve()
    ok = prefix == venv.resolve()
    detail = f"venv {prefix}" if ok else f"venv: running in {prefix}, not the project's {venv}"
    return ok, detail, f"run with {venv}/bin/python (make doctor does); create it with {FIX_VENV}"


def check_dlib() -> Result:
    """``import dlib`` must give this course's package, not PyPI's unrelated face-recognition ``dlib``."""
    try:
        import dlib
    except Exception as e:  # noqa: BLE001 - any import failure is the finding
        return False, f"import dlib failed: {type(e).__name__}: {e}", FIX_VENV
    where = Path(getattr(dlib, "__file__", "") or "").resolve()
    ok = where.parent == (ROOT / "dlib").resolve()
    detail = f"dlib from {where.parent}" if ok else f"import dlib gives {where} (PyPI's face-recognition dlib?)"
    return ok, detail, f"pip uninstall dlib in this environment, then {FIX_VENV}"


def check_torch(required: str = TORCH) -> Result:
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        return False, f"import torch failed: {type(e).__name__}: {e}", FIX_VENV
    version = torch.__version__.split("+")[0]
    if version != required:
        return False, f"torch {torch.__version__}, the course pins {required}", FIX_VENV
    device = "cuda (" + torch.cuda.get_device_name() + ")" if torch.cuda.is_available() else "cpu"
    budget = "gpu" if device != "cpu" else "cpu"
    return True, f"torch {torch.__version__}, device {device}: BUDGET auto runs at {budget}", ""


def check_kernel(name: str = KERNEL, venv: Path = VENV) -> Result:
    fix = f"make venv (it runs: {venv}/bin/python -m ipykernel install --sys-prefix --name {name})"
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except Exception as e:  # noqa: BLE001
        return False, f"jupyter_client missing ({e})", FIX_VENV
    specs = KernelSpecManager().get_all_specs()
    if name not in specs:
        return False, f"kernel {name} not installed", fix
    argv = specs[name]["spec"].get("argv", [])
    python = Path(argv[0]) if argv else None
    # the kernel must start the course's python (a kernel left from another clone or env runs other packages)
    if python is None or not (python.is_absolute() and python.parent.resolve() == (venv / "bin").resolve()):
        return False, f"kernel {name} runs {python}, not {venv}/bin/python", fix
    return True, f"kernel {name} ({specs[name]['resource_dir']})", ""


def _clear_verify_cache() -> None:
    from dlib import data

    cache_clear = getattr(data._verify, "cache_clear", None)  # dlib caches verified files per process
    if cache_clear:
        cache_clear()


def check_data(root: Path | None = None) -> Result:
    """Every shipped data file (not the models' weights and cards) against data/MANIFEST.sha256, with dlib's own verification;
    a file shipped in parts is also reassembled and checked against its published sha256."""
    from dlib import data

    _clear_verify_cache()
    root = Path(root) if root else data.data_dir()
    try:
        manifest = data.read_manifest(root)
    except data.DataError as e:
        return False, f"data: {e}", "git checkout -- data/ (or clone the repository again)"
    # the models' weights and cards are check_models' (verified with their cards); everything else is here
    files = [rel for rel in manifest if not (rel.startswith("models/") and rel.endswith((".json", ".safetensors")))]
    problems = []
    for rel in files:
        try:
            data.verified_path(rel, root)
        except data.DataError as e:
            problems.append((rel, str(e)))
    wholes = sorted({rel.rsplit(".part", 1)[0] for rel in files if ".part" in rel})
    for whole in wholes:
        if not any(rel.startswith(whole + ".part") for rel, _ in problems):
            try:
                data.verified_bytes(whole, root)
            except data.DataError as e:
                problems.append((whole, str(e)))
    if problems:
        names = ", ".join(rel for rel, _ in problems)
        detail = f"data: {len(problems)} of {len(files)} files fail their sha256: {names}; {problems[0][1]}"
        return False, detail, "git checkout -- " + " ".join(f"data/{rel}*" for rel, _ in problems)
    return (
        True,
        f"data: {len(files)} files match {data.MANIFEST}" + (f" ({len(wholes)} reassembled)" if wholes else ""),
        "",
    )


def check_models(root: Path | None = None) -> Result:
    """Every shipped model: weights and card against the manifest and against each other (dlib.checkpoint)."""
    from dlib import checkpoint, data

    _clear_verify_cache()
    root = Path(root) if root else data.data_dir()
    try:
        names = checkpoint.shipped_models(root)
    except data.DataError as e:
        return False, f"models: {e}", "git checkout -- data/"
    bad = []
    for name in names:
        try:
            checkpoint.load_state_dict(name, root)
        except (data.DataError, ValueError) as e:
            bad.append((name, str(e)))
    if bad:
        detail = f"models: {len(bad)} of {len(names)} fail: {', '.join(n for n, _ in bad)}; {bad[0][1]}"
        return False, detail, "git checkout -- " + " ".join(f"data/models/{n}.*" for n, _ in bad)
    return True, f"models: {len(names)} shipped checkpoints verified", ""


def check_notebook(path: Path = QUICK_NOTEBOOK, timeout: int = 600) -> Result:
    """Execute one small notebook at the smoke budget into a temporary folder with the course kernel, timed."""
    fix = "make venv; then run it by hand to see the error: DLIB_BUDGET=smoke .venv/bin/jupyter lab"
    try:
        import nbformat
        from kernel_channels import install
        from nbclient import NotebookClient
    except Exception as e:  # noqa: BLE001
        return False, f"nbclient/nbformat missing ({e})", FIX_VENV
    install()  # no lost-wakeup hang on the widget cells (tools/kernel_channels.py)
    nb = nbformat.read(path, as_version=4)
    previous = os.environ.get("DLIB_BUDGET")
    os.environ["DLIB_BUDGET"] = "smoke"  # the kernel inherits it
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="doctor-") as tmp:
            client = NotebookClient(nb, kernel_name=KERNEL, timeout=timeout, resources={"metadata": {"path": tmp}})
            with open(Path(tmp) / "kernel.log", "w") as log:  # the kernel's own warnings stay out of the report
                try:
                    client.execute(stderr=log)
                except Exception as e:  # noqa: BLE001 - a failed cell, a missing kernel, a time-out
                    lines = str(e).strip().splitlines()
                    detail = f"notebook {path.name} at smoke failed: {type(e).__name__}: {lines[-1] if lines else ''}"
                    return False, detail, fix
            nbformat.write(nb, Path(tmp) / path.name)
    finally:
        if previous is None:
            os.environ.pop("DLIB_BUDGET", None)
        else:
            os.environ["DLIB_BUDGET"] = previous
    seconds = time.perf_counter() - start
    detail = f"notebook {path.parent.name}/{path.name} at smoke in {seconds:.1f} s"
    reference = reference_seconds(path.name[:2], "smoke")
    if reference:  # how much slower or faster than the machine the README's run times were measured on
        detail += f" (README's reference machine: {reference:g} s, so x{seconds / reference:.1f} here)"
    return True, detail, ""


def reference_seconds(number: str, budget: str) -> float | None:
    """The README's measured run time of a notebook at a budget, or None (tools/build_notebooks.py parses it)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from build_notebooks import measured_times

        return float(measured_times()[number][budget])
    except (ImportError, KeyError, ValueError, IndexError, OSError):
        return None
    finally:
        sys.path.remove(str(ROOT / "tools"))


def check_browser() -> Result:
    """Optional: a Chromium for building the course site or printing handouts to PDF."""
    found = [b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)]
    playwright = importlib.util.find_spec("playwright") is not None
    parts = ([f"browser {found[0]}"] if found else ["no chromium"]) + (["playwright"] if playwright else [])
    return bool(found), ", ".join(parts) + " (optional: site and PDF handouts only)", "apt-get install chromium"


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[], Result]
    optional: bool = False  # a failure prints WARN and does not change the exit status
    slow: bool = False  # skipped by --quick


def checks(data_root: Path | None = None) -> list[Check]:
    return [
        Check("python", check_python),
        Check("disk", check_disk),
        Check("venv", check_venv),
        Check("dlib", check_dlib),
        Check("torch", check_torch),
        Check("kernel", check_kernel),
        Check("data", lambda: check_data(data_root)),
        Check("models", lambda: check_models(data_root)),
        Check("notebook", check_notebook, slow=True),
        Check("browser", check_browser, optional=True),
    ]


def run_check(c: Check) -> tuple[str, str, str]:
    """(status, detail, fix); a check that raises is a FAIL with its error."""
    try:
        ok, detail, fix = c.run()
    except Exception as e:  # noqa: BLE001
        ok, detail, fix = False, f"{c.name}: the check itself failed: {type(e).__name__}: {e}", FIX_VENV
    return ("PASS" if ok else "WARN" if c.optional else "FAIL"), detail, fix


def format_line(status: str, detail: str, fix: str) -> str:
    return f"{status:<4}  {detail}" + (f" -> fix: {fix}" if status != "PASS" and fix else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the notebook run")
    parser.add_argument("--data", type=Path, help="the data folder to verify (default: $DLIB_DATA or data/)")
    args = parser.parse_args(argv)
    selected = [c for c in checks(args.data) if not (args.quick and c.slow)]
    failed = 0
    for c in selected:
        status, detail, fix = run_check(c)
        print(format_line(status, detail, fix), flush=True)
        failed += status == "FAIL"
    print(f"{failed} check(s) failed: fix them before the workshop" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
