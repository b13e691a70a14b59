"""Execute solutions/ notebooks at the gpu budget, several at once, each under a time limit; report seconds and status.

    python tools/gpu_notebooks.py --limit 480 --out build/gpu 02_noise_schedules.ipynb 08_editing.ipynb

It runs what `make test-gpu`'s papermill half runs (`build_notebooks.run_papermill`: the `BUDGET` parameter,
DLIB_REQUIRE_SOLVED=1), one process per notebook, with two differences for a GPU that is lent for minutes rather
than hours: the notebooks run at the same time, so each one's time is an upper bound on its time alone; and a
notebook that fails, or is stopped at the limit, still leaves its executed copy (papermill saves it cell by cell),
so the run shows how far it got. Writes OUT/NAME (each executed notebook), OUT/NAME.log and OUT/timings.json
({name: {"seconds": ..., "status": "ok" | "failed: ..." | "stopped at the limit"}}). The README's gpu column quotes
the seconds of the notebooks whose status is "ok", with the machine and how many ran at once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"


def run_one(name: str, out: Path, budget: str) -> dict:
    """Execute solutions/NAME at ``budget`` into OUT/NAME; return its seconds and status."""
    sys.path.insert(0, str(ROOT / "tools"))
    from build_notebooks import run_papermill

    start, status = time.perf_counter(), "ok"
    try:
        run_papermill(SOLUTIONS / name, out / name, budget)
    except Exception as e:  # the executed copy shows the failing cell; keep the error's last lines
        status = f"failed: {type(e).__name__}: {str(e).strip()[-2000:]}"
    return {"seconds": round(time.perf_counter() - start, 1), "status": status}


def run_all(names: list[str], out: Path, budget: str, limit: float) -> dict:
    """Start one process per notebook, all at once; stop any still running after ``limit`` seconds."""
    out.mkdir(parents=True, exist_ok=True)
    procs, start = {}, time.perf_counter()
    for name in names:
        with open(out / f"{name}.log", "w") as log:
            cmd = [sys.executable, __file__, "--one", name, "--out", str(out), "--budget", budget]
            procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    results = {}
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(0.0, limit - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        done = out / f"{name}.json"
        if done.exists():
            results[name] = json.loads(done.read_text())
        else:
            results[name] = {"seconds": round(time.perf_counter() - start, 1), "status": "stopped at the limit"}
    (out / "timings.json").write_text(json.dumps(results, indent=1))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="file names in solutions/ (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gpu")
    parser.add_argument("--limit", type=float, default=3600.0, help="seconds for the whole run")
    parser.add_argument("--budget", default="gpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the per-notebook worker
    args = parser.parse_args(argv)
    if args.one:
        (args.out / f"{args.one}.json").write_text(json.dumps(run_one(args.one, args.out, args.budget)))
        return 0
    names = args.notebooks or [p.name for p in sorted(SOLUTIONS.glob("*.ipynb"))]
    missing = [n for n in names if not (SOLUTIONS / n).exists()]
    if missing:
        raise SystemExit(f"not in solutions/: {', '.join(missing)}")
    results = run_all(names, args.out, args.budget, args.limit)
    for name, r in results.items():
        print(f"{r['seconds']:8.1f} s  {name}: {r['status'].splitlines()[0][:160]}")
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
