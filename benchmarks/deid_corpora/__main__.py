"""Write the evaluation corpora as JSONL: `python -m deid_corpora [--out DIR] [--notes N]` from `benchmarks/`."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import CORPORA, DATA, write_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument(
        "--notes", type=int, default=None, help="notes per corpus (default: each corpus's own)"
    )
    args = parser.parse_args()
    for name, generate in CORPORA.items():
        notes = generate() if args.notes is None else generate(args.notes)
        count = write_jsonl(notes, args.out / f"{name}.jsonl")
        print(f"wrote {count} notes to {args.out / f'{name}.jsonl'}")


if __name__ == "__main__":
    main()
