"""Structured de-identification speed on Eunomia: events/s (target >= 1M events/s on 2 cores).

Baseline in the same run: reading and re-writing the same shards with polars and no change (the I/O floor).
The note scrubber is not involved: Eunomia has no free text (see benchmarks/deid_text.py for notes).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from clinfm.data.dataset import build_dataset  # noqa: E402
from clinfm.data.ingest import omop  # noqa: E402
from clinfm.deid.structured import deidentify_dataset, deidentify_shard  # noqa: E402


def main(repeats: int = 3) -> None:
    secret = b"benchmark-secret-".ljust(32, b"x")
    with tempfile.TemporaryDirectory() as tmp:
        source = build_dataset(omop.plan(), Path(tmp) / "meds").path
        shard = source / "data" / "0.parquet"
        events = pl.read_parquet(shard).height
        best = {"end_to_end": 1e9, "transform_only": 1e9, "io_baseline": 1e9}
        for i in range(repeats):
            t = time.perf_counter()
            pl.read_parquet(shard).write_parquet(Path(tmp) / "copy.parquet", compression="zstd")
            best["io_baseline"] = min(best["io_baseline"], time.perf_counter() - t)
            df = pl.read_parquet(shard)
            t = time.perf_counter()
            deidentify_shard(df, secret, "shift", scrubber=None)
            best["transform_only"] = min(best["transform_only"], time.perf_counter() - t)
            t = time.perf_counter()
            deidentify_dataset(source, Path(tmp) / f"deid{i}", secret, scrubber=None)
            best["end_to_end"] = min(best["end_to_end"], time.perf_counter() - t)
    result = {
        "events": events,
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "events_per_second_transform": round(events / best["transform_only"]),
        "events_per_second_end_to_end": round(events / best["end_to_end"]),
        "ratio_end_to_end_over_io_baseline_time": round(best["end_to_end"] / best["io_baseline"], 2),
        "target_events_per_second": 1_000_000,
        "meets_target_transform": events / best["transform_only"] >= 1_000_000,
    }
    print(
        f"structured de-id of {events:,} Eunomia events: transform {result['events_per_second_transform']:,} events/s, "
        f"end to end (validate, read, write, report) {result['events_per_second_end_to_end']:,} events/s; "
        f"end-to-end time is {result['ratio_end_to_end_over_io_baseline_time']}x a plain polars read+write; "
        f"target >= 1M events/s (transform): {'met' if result['meets_target_transform'] else 'MISSED'}"
    )
    write_result("deid_structured", result)


if __name__ == "__main__":
    main()
