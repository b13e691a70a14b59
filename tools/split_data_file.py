"""Store a shipped data file that is over the repository's per-file size limit as byte-range parts.

    python tools/split_data_file.py data/fashion-mnist/train-images-idx3-ubyte.gz \\
        --sha256 3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84

checks the whole file against its published sha256 (given on the command line, not computed
from the file), cuts its bytes into the fewest equal parts under ``--max-mb`` (``NAME.part1``,
``NAME.part2``, ...), writes ``NAME.sha256`` (the published hash, in ``sha256sum`` format),
replaces the file's line in ``data/MANIFEST.sha256`` by lines for the parts and the note,
checks that the parts concatenate back to the published bytes, and deletes the whole file.
``dlib.data`` reassembles and verifies the parts when it reads ``NAME``; by hand,
``cat NAME.part1 NAME.part2 > NAME`` rebuilds the published file. The same file and
``--max-mb`` always give the same parts.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlib.data import MANIFEST, DataError, data_dir, read_manifest  # noqa: E402


def split(path: Path, published_sha256: str, max_bytes: int, root: Path) -> list[Path]:
    blob = path.read_bytes()
    actual = hashlib.sha256(blob).hexdigest()
    if actual != published_sha256.lower():
        raise DataError(f"{path} has sha256 {actual}, not the published {published_sha256}; not splitting it")
    relative = path.resolve().relative_to(root.resolve()).as_posix()
    n = math.ceil(len(blob) / max_bytes)
    size = math.ceil(len(blob) / n)
    parts = [path.with_name(f"{path.name}.part{i + 1}") for i in range(n)]
    for i, part in enumerate(parts):
        part.write_bytes(blob[i * size : (i + 1) * size])
    note = path.with_name(f"{path.name}.sha256")
    note.write_text(f"{actual}  {path.name}\n")
    if hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest() != actual:
        raise DataError(f"the parts of {path} do not concatenate back to the published bytes")

    manifest = read_manifest(root)
    manifest.pop(relative, None)
    for k in [k for k in manifest if k.startswith(f"{relative}.part")]:  # parts of an earlier split
        del manifest[k]
        if (root / k).resolve() not in [p.resolve() for p in parts]:
            (root / k).unlink(missing_ok=True)
    for p in [*parts, note]:
        manifest[p.resolve().relative_to(root.resolve()).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    lines = [f"{digest}  {rel}" for rel, digest in sorted(manifest.items())]
    tmp = root / f"{MANIFEST}.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(root / MANIFEST)
    path.unlink()
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path, help="the whole file, inside the data folder")
    ap.add_argument("--sha256", required=True, help="the file's published sha256")
    ap.add_argument("--max-mb", type=float, default=19.0, help="largest part, in MB of 10^6 bytes (default 19)")
    ap.add_argument("--data-dir", type=Path, default=None, help="the data folder (default: dlib's data/)")
    args = ap.parse_args()
    root = args.data_dir or data_dir()
    try:
        parts = split(args.file, args.sha256, int(args.max_mb * 1e6), root)
    except (DataError, OSError) as e:
        sys.exit(f"error: {e}")
    for part in parts:
        print(f"{hashlib.sha256(part.read_bytes()).hexdigest()}  {part} ({part.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
