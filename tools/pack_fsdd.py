"""Pack the Free Spoken Digit Dataset's 3,000 WAV files into one compact, lossless file for ``data/``.

    python tools/pack_fsdd.py path/to/free-spoken-digit-dataset/recordings

reads every ``{digit}_{speaker}_{index}.wav`` (8 kHz, mono, 16-bit), checks there are 50 recordings
of each digit per speaker, and writes ``data/fsdd/fsdd.npz`` (``numpy.savez_compressed``, zlib):

- ``audio``: every recording's int16 samples, concatenated in sorted file-name order;
- ``offsets`` (3001,): recording i is ``audio[offsets[i]:offsets[i + 1]]``;
- ``digit``, ``speaker`` (an index into ``speakers``), ``index`` (3000,) each.

The samples are the WAV files' own, bit for bit (21.0 MB of int16 in a 15.4 MB file); ``--verify``
reads the pack back and compares every recording with its WAV file. The tool then records the pack's
sha256 in ``data/MANIFEST.sha256``; ``dlib.data.load_fsdd`` checks it on every first read.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path

import numpy as np
from scipy.io import wavfile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlib.data import MANIFEST, data_dir, read_manifest, sha256  # noqa: E402

NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
RELATIVE = "fsdd/fsdd.npz"


def read_recordings(folder: Path) -> list[tuple[int, str, int, np.ndarray]]:
    rows = []
    for path in sorted(folder.glob("*.wav")):
        m = NAME.match(path.name)
        if m is None:
            raise ValueError(f"{path.name} is not named {{digit}}_{{speaker}}_{{index}}.wav")
        rate, audio = wavfile.read(path)
        if rate != 8000 or audio.dtype != np.int16 or audio.ndim != 1:
            raise ValueError(f"{path.name}: expected 8 kHz mono int16, got {rate} Hz {audio.dtype} shape {audio.shape}")
        rows.append((int(m[1]), m[2], int(m[3]), audio))
    speakers = sorted({r[1] for r in rows})
    for s in speakers:
        for d in range(10):
            indices = sorted(r[2] for r in rows if r[1] == s and r[0] == d)
            if indices != list(range(50)):
                raise ValueError(f"speaker {s!r}, digit {d}: expected recordings 0..49, found {len(indices)}")
    return rows


def pack(rows: list[tuple[int, str, int, np.ndarray]]) -> bytes:
    speakers = sorted({r[1] for r in rows})
    lengths = np.array([len(r[3]) for r in rows])
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        audio=np.concatenate([r[3] for r in rows]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        digit=np.array([r[0] for r in rows], dtype=np.int64),
        speaker=np.array([speakers.index(r[1]) for r in rows], dtype=np.int64),
        index=np.array([r[2] for r in rows], dtype=np.int64),
        speakers=np.array(speakers),
    )
    return buf.getvalue()


def verify(path: Path, rows: list[tuple[int, str, int, np.ndarray]]) -> None:
    with np.load(path) as z:
        audio, offsets, speakers = z["audio"], z["offsets"], list(z["speakers"])
        for i, (digit, speaker, index, samples) in enumerate(rows):
            got = audio[offsets[i] : offsets[i + 1]]
            same = (z["digit"][i], speakers[z["speaker"][i]], z["index"][i]) == (digit, speaker, index)
            if not same or not np.array_equal(got, samples):
                raise ValueError(f"recording {digit}_{speaker}_{index} differs in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recordings", type=Path, help="the dataset's recordings/ folder of WAV files")
    parser.add_argument("--verify", action="store_true", help="compare the written pack with every WAV file")
    args = parser.parse_args()
    rows = read_recordings(args.recordings)
    root = data_dir()
    out = root / RELATIVE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pack(rows))
    if args.verify:
        verify(out, rows)
    manifest = read_manifest(root)
    manifest[RELATIVE] = sha256(out)
    lines = [f"{digest}  {name}" for name, digest in sorted(manifest.items())]
    (root / MANIFEST).write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} recordings -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
