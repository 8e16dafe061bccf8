"""OMOP ingest speed: the whole embedded Eunomia CDM to MEDS (target < 10 s on 2 cores).

Baseline in the same run: DuckDB copying the same source tables straight to Parquet with no mapping,
checks or sorting (the I/O floor). Prints events/s and the ratio of our time to the baseline's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import timer, write_result  # noqa: E402

from clinfm.data.dataset import build_dataset  # noqa: E402
from clinfm.data.ingest import omop  # noqa: E402
from clinfm.engine import Engine  # noqa: E402


def baseline_copy(out: Path) -> int:
    con = duckdb.connect(str(omop.eunomia_path()), read_only=True)
    rows = 0
    for table in omop.TABLES:
        con.execute(f"COPY {table} TO '{out / table}.parquet' (FORMAT parquet)")
        rows += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, float] = {}
    best: dict[str, float] = {"ours": float("inf"), "baseline": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            with timer(times, "baseline"):
                source_rows = baseline_copy(Path(tmp))
            with timer(times, "ours"):
                summary = build_dataset(omop.plan(), Path(tmp) / f"meds{i}", engine=Engine(workers=args.workers))
            best = {k: min(best[k], times[k]) for k in best}
    result = {
        "source_rows": source_rows,
        "events": summary.events,
        "subjects": summary.subjects,
        "workers": args.workers,
        "seconds_ours": round(best["ours"], 3),
        "seconds_baseline_duckdb_copy": round(best["baseline"], 3),
        "events_per_second": round(summary.events / best["ours"]),
        "ratio_ours_over_baseline_time": round(best["ours"] / best["baseline"], 2),
        "target_seconds": 10,
        "meets_target": best["ours"] < 10,
    }
    print(
        f"Eunomia -> MEDS: {summary.events:,} events in {best['ours']:.2f} s ({result['events_per_second']:,} events/s, "
        f"{args.workers} workers); DuckDB plain copy {best['baseline']:.2f} s; ours/baseline "
        f"{result['ratio_ours_over_baseline_time']}x; target < 10 s: {'met' if result['meets_target'] else 'MISSED'}"
    )
    write_result("omop_ingest", result)


if __name__ == "__main__":
    main()
