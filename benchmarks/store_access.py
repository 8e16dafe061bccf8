"""Single-subject access: p50/p99 time to load one subject's timeline over 1,000 random subjects.

Target p50 < 5 ms. Baseline in the same run: filtering the Parquet shards with polars for each subject.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from clinfm.data.dataset import build_dataset  # noqa: E402
from clinfm.data.ingest import omop  # noqa: E402
from clinfm.data.store import SubjectDatabase  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", nargs="?", help="MEDS dataset (default: Eunomia, ingested here)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--baseline-n", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.dataset) if args.dataset else build_dataset(omop.plan(), Path(tmp) / "meds").path
        start = time.perf_counter()
        db = SubjectDatabase(path, cache_dir=Path(tmp) / "cache")
        open_s = time.perf_counter() - start
        rng = random.Random(0)
        ids = rng.choices(list(db), k=args.n)
        ours, events = [], 0
        for sid in ids:
            t = time.perf_counter()
            events += len(db[sid].events)
            ours.append(time.perf_counter() - t)
        shards = sorted((path / "data").glob("*.parquet"))
        base = []
        for sid in ids[: args.baseline_n]:
            t = time.perf_counter()
            pl.scan_parquet(shards).filter(pl.col("subject_id") == sid).collect().to_dicts()
            base.append(time.perf_counter() - t)
    p50, p99, b50 = statistics.median(ours) * 1e3, percentile(ours, 0.99) * 1e3, statistics.median(base) * 1e3
    result = {
        "dataset": str(args.dataset or "eunomia"),
        "subjects_sampled": args.n,
        "mean_events_per_subject": events / args.n,
        "open_and_index_seconds": round(open_s, 3),
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "baseline_polars_filter_p50_ms": round(b50, 3),
        "speedup_vs_baseline": round(b50 / p50, 1),
        "target_p50_ms": 5,
        "meets_target": p50 < 5,
    }
    print(
        f"single-subject load over {args.n} random subjects: p50 {p50:.3f} ms, p99 {p99:.3f} ms "
        f"(polars filter baseline p50 {b50:.2f} ms, {result['speedup_vs_baseline']}x faster); "
        f"target p50 < 5 ms: {'met' if result['meets_target'] else 'MISSED'}"
    )
    write_result("store_access", result)


if __name__ == "__main__":
    main()
