"""Load: 32 concurrent async clients send 5,000 ``POST /v1/predict`` to a local uvicorn (127.0.0.1 only).

Requests draw from ``--subjects`` distinct subjects: the first request for a subject runs the model (rollouts),
repeats are served from the result cache; ``miss_latency`` reports the model calls on their own.

Reports p50/p99 latency, errors and requests/s, against ``GET /health`` under the same concurrency in the same
run (the cost of HTTP alone). Targets: p50 < 50 ms, p99 < 250 ms, 0 errors. Stops by itself: a fixed number of
requests and a wall-clock cap.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import write_result
from serve_env import MODEL, free_port, prepare, start_server, stop_server


async def hammer(url: str, key: str, bodies: list[dict | None], concurrency: int, cap_s: float, timeout_s: float = 30) -> dict:
    latencies: list[float] = []
    first_seen: list[float] = []  # the first request for each subject: the ones that run the model
    seen: set = set()
    errors: dict[str, int] = {}
    queue: asyncio.Queue = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    deadline = time.perf_counter() + cap_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=timeout_s) as client:

        async def worker() -> None:
            while not queue.empty() and time.perf_counter() < deadline:
                body = queue.get_nowait()
                subject = body["subject_id"] if body else None
                first = subject is not None and subject not in seen
                seen.add(subject)
                t0 = time.perf_counter()
                try:
                    r = await (client.post("/v1/predict", json=body) if body is not None else client.get("/health"))
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if first:
                    first_seen.append(latencies[-1])
                if status != "200":
                    errors[status] = errors.get(status, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    lat = sorted(latencies)
    return {
        "requests": len(lat), "errors": sum(errors.values()), "errors_by_status": errors, "wall_s": round(wall, 3),
        "requests_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(1000 * lat[len(lat) // 2], 2), "p99_ms": round(1000 * lat[int(len(lat) * 0.99) - 1], 2),
        "mean_ms": round(1000 * statistics.fmean(lat), 2),
        "miss_latency": {"requests": len(first_seen), "p50_ms": round(1000 * statistics.median(first_seen), 1),
                         "max_ms": round(1000 * max(first_seen), 1)} if first_seen else None,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--subjects", type=int, default=40, help="distinct subjects the requests are drawn from")
    ap.add_argument("--samples", type=int, default=32, help="sampled futures per prediction (CLINFM_ROLLOUT_SAMPLES)")
    ap.add_argument("--cap-s", type=float, default=300.0, help="stop after this many seconds whatever is left")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="clinfm-serve-load-") as tmp:
        setup = prepare(Path(tmp))
        from clinfm.data.store import SubjectDatabase

        ids = sorted(SubjectDatabase(setup["dataset"]))
        rng = random.Random(args.seed)
        pool = rng.sample(ids, min(args.subjects, len(ids)))
        bodies = [{"subject_id": rng.choice(pool)} for _ in range(args.requests)]
        port = free_port()
        proc = start_server({**setup["env"], "CLINFM_ROLLOUT_SAMPLES": str(args.samples)}, port)
        try:
            url = f"http://127.0.0.1:{port}"
            baseline = asyncio.run(hammer(url, setup["key"], [None] * min(args.requests, 2000), args.concurrency, args.cap_s))
            # Model calls: one request per distinct subject (each a cache miss running rollouts), measured apart.
            misses = asyncio.run(hammer(url, setup["key"], [{"subject_id": s} for s in pool], args.concurrency,
                                        args.cap_s, timeout_s=args.cap_s))  # fmt: skip
            result = asyncio.run(hammer(url, setup["key"], bodies, args.concurrency, args.cap_s))
        finally:
            stop_server(proc)
    targets = {"p50_ms": 50, "p99_ms": 250, "errors": 0}
    out = {
        "benchmark": "serve_load", "model": MODEL, "concurrency": args.concurrency,
        "requests_sent": args.requests, "distinct_subjects": len(pool), "rollout_samples": args.samples,
        "model_calls": misses,
        "cache": "results are cached per (model version, subject, prediction time, horizon, outcomes, samples); "
                 "each distinct subject is one model call (a miss), every repeat a hit", "predict": result, "health_baseline": baseline,
        "p50_ratio_vs_health": round(result["p50_ms"] / max(baseline["p50_ms"], 1e-6), 2), "targets": targets,
        "meets_targets": result["p50_ms"] < 50 and result["p99_ms"] < 250 and result["errors"] == 0,
    }  # fmt: skip
    print(f"predict: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, {result['requests_per_s']} req/s, "
          f"{result['errors']} errors over {result['requests']} requests ({len(pool)} subjects, model: {out['model']})")
    print(f"model calls (first request per subject): p50 {misses['p50_ms']} ms, p99 {misses['p99_ms']} ms, "
          f"{misses['requests_per_s']} req/s, {misses['errors']} errors")
    print(f"health baseline: p50 {baseline['p50_ms']} ms; predict/health p50 ratio {out['p50_ratio_vs_health']}x")
    write_result("serve_load", out)


if __name__ == "__main__":
    main()
