"""Export the interview question bank as Anki flash cards.

    python tools/export_flashcards.py                        # writes build/flashcards.csv
    python tools/export_flashcards.py --out my/cards.csv

The file is Anki's plain-text import (File > Import): tab-separated Front, Back, Tags, HTML, LaTeX rendered by MathJax.
The bank is docs/interview/questions.yaml, checked and resolved by ``dlib.interview.load_bank``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from dlib.interview import REPO_ROOT, flashcards_csv, load_bank


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "flashcards.csv", help="the CSV to write")
    parser.add_argument(
        "--bank", type=Path, default=None, help="the YAML bank (default: docs/interview/questions.yaml)"
    )
    args = parser.parse_args(argv)
    bank = load_bank(args.bank)
    count = flashcards_csv(bank, args.out)
    levels = ", ".join(f"{n} {level}" for level, n in sorted(Counter(q.level for q in bank).items()))
    print(f"wrote {count} cards to {args.out} ({levels})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
