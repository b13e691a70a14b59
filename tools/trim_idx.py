"""Rebuild the shipped Fashion-MNIST training files from the published ones.

The published ``train-images-idx3-ubyte.gz`` is 26 MB, over the repository's 20 MB limit per file,
so the course ships the first 30,000 of the 60,000 training examples (classes stay balanced to
within a few percent), re-gzipped deterministically. Given the published files, this script
checks their sha256, writes the subset and prints the new sha256s (they match data/MANIFEST.sha256):

    python tools/trim_idx.py PUBLISHED_DIR OUT_DIR
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

KEEP = 30_000
PUBLISHED = {  # sha256 of the files published by Zalando Research (github.com/zalandoresearch/fashion-mnist)
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
}


def trim(raw: bytes, keep: int) -> bytes:
    """The first ``keep`` records of an uncompressed IDX file of unsigned bytes, header updated."""
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if raw[:3] != b"\x00\x00\x08" or dims[0] < keep:
        raise ValueError(
            f"expected an IDX file of unsigned bytes with at least {keep} records, got header {raw[:4].hex()} {dims}"
        )
    record = 1
    for d in dims[1:]:
        record *= d
    header = raw[:4] + keep.to_bytes(4, "big") + raw[8 : 4 + 4 * ndim]
    start = 4 + 4 * ndim
    return header + raw[start : start + keep * record]


def main(src: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, expected in PUBLISHED.items():
        blob = (src / name).read_bytes()
        if hashlib.sha256(blob).hexdigest() != expected:
            raise SystemExit(f"{src / name} is not the published file (sha256 differs from {expected})")
        # mtime=0 and no file name make the gzip bytes, and so the sha256, reproducible
        small = gzip.compress(trim(gzip.decompress(blob), KEEP), compresslevel=9, mtime=0)
        (out / name).write_bytes(small)
        print(f"{hashlib.sha256(small).hexdigest()}  fashion-mnist/{name}  ({len(small):,} bytes)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
