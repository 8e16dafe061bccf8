"""Scaling of ingest + de-identification on a generated FHIR NDJSON dataset (default 2 GB).

Runs the same job three ways in one run: local engine with 1 worker, local with 2 workers, Ray with 2 workers
(a local Ray instance started by the job). Prints wall time, MB/s and the speed-up ratios against 1 worker,
the per-task overhead of each engine (time on a tiny input), and a projection to a 100-node cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from fhir_ingest import generate  # noqa: E402

from clinfm.data.dataset import build_dataset  # noqa: E402
from clinfm.data.ingest import fhir  # noqa: E402
from clinfm.deid.structured import deidentify_dataset  # noqa: E402
from clinfm.engine import Engine

SECRET = b"scale-benchmark-secret".ljust(32, b"x")


def run(folder: Path, work: Path, workers: int, engine: str, chunk_mb: int) -> dict:
    out, deid = work / f"meds-{engine}-{workers}", work / f"deid-{engine}-{workers}"
    t0 = time.perf_counter()
    summary = build_dataset(fhir.plan(folder, chunk_bytes=chunk_mb * 2**20), out, engine=Engine(engine, workers))
    t1 = time.perf_counter()
    deidentify_dataset(out, deid, SECRET, scrubber=None, engine=Engine(engine, workers))
    t2 = time.perf_counter()
    shutil.rmtree(out), shutil.rmtree(deid)
    return {"engine": engine, "workers": workers, "events": summary.events, "shards": summary.shards,
            "ingest_s": round(t1 - t0, 2), "deid_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=2048, help="size of the generated NDJSON input")
    ap.add_argument("--chunk-mb", type=int, default=64, help="bytes per ingest task")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory(dir=os.environ.get("CLINFM_BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        folder = tmp / "ndjson"
        folder.mkdir()
        t = time.perf_counter()
        generate(folder, args.mb, seed=0)
        size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        print(f"generated {size_mb:,.0f} MB of NDJSON in {time.perf_counter() - t:.0f} s")
        tiny = tmp / "tiny"
        tiny.mkdir()
        generate(tiny, 1, seed=1)
        overhead = {f"{e}-{w}": run(tiny, tmp, w, e, args.chunk_mb)["total_s"] for e, w in (("local", 1), ("local", 2), ("ray", 2))}
        runs = [run(folder, tmp, w, e, args.chunk_mb) for e, w in (("local", 1), ("local", 2), ("ray", 2))]
    base = runs[0]["total_s"]
    for r in runs:
        r["mb_per_s"] = round(size_mb / r["total_s"], 1)
        r["speedup_vs_1_worker"] = round(base / r["total_s"], 2)
    per_core_mb_s = runs[0]["mb_per_s"]
    # Projection: ingest and de-id are embarrassingly parallel over files and shards; the merge is per bucket.
    cosmos_tb = 115e9 * 100 / 1e12  # ~100 bytes of NDJSON-equivalent per event is optimistic; FHIR is ~800
    result = {
        "input_mb": round(size_mb), "runs": runs, "fixed_overhead_s_on_1mb": overhead,
        "projection": {
            "assumption": "100 nodes x 16 cores, near-linear scaling measured here (2 workers) holds while tasks "
                          "outnumber cores; shared filesystem throughput not the bottleneck",
            "mb_per_s_per_core": per_core_mb_s,
            "cluster_mb_per_s": round(per_core_mb_s * 1600 * min(1.0, runs[2]["speedup_vs_1_worker"] / 2)),
            "cosmos_115e9_events_fhir_tb": round(115e9 * 800 / 1e12, 1),
            "cosmos_hours": round(115e9 * 800 / 2**20 / (per_core_mb_s * 1600 * min(1.0, runs[2]["speedup_vs_1_worker"] / 2)) / 3600, 1),
            "note_compact_events_tb": round(cosmos_tb, 1),
        },
    }
    for r in runs:
        print(f"{r['engine']:<5} {r['workers']} worker(s): ingest {r['ingest_s']:6.1f} s + de-id {r['deid_s']:5.1f} s = "
              f"{r['total_s']:6.1f} s  {r['mb_per_s']:6.1f} MB/s  x{r['speedup_vs_1_worker']} vs 1 worker")
    print(f"fixed overhead on a 1 MB input: {overhead}")
    p = result["projection"]
    print(f"projection: {p['cluster_mb_per_s']:,} MB/s on 100 x 16 cores; Cosmos-sized FHIR (~{p['cosmos_115e9_events_fhir_tb']} TB) "
          f"in ~{p['cosmos_hours']} h")
    write_result("scale_ingest_deid", result)
    print(json.dumps(result["projection"], indent=2))


if __name__ == "__main__":
    main()
