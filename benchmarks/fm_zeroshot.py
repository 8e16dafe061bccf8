"""Zero-shot forecasting speed: seconds per prediction point, the batched path vs the one before it.

The old path is ``model/generate.py`` as it was before the batched rollouts (read from git at
``--old-rev``): one point at a time, the cache re-copied whenever a sample stops, full-vocabulary logits at
every prefill position. The new path batches points, shares each history's prefill cache, projects only
the last position, and (second figure) stops sampling a point once its intervals are narrower than
``--ci-width``. Both run in this process on the same points; the estimates are compared by interval overlap
(the samplers differ: the old one used torch.multinomial, the new one per-sample uniforms).

    python benchmarks/fm_zeroshot.py --run RUN --dataset MEDS --points 16 --samples 64 --horizon-days 365
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from clinfm.data.store import SubjectDatabase
from clinfm.model.checkpoint import load_checkpoint
from clinfm.model.generate import forecast_points

REPO = Path(__file__).resolve().parents[1]
OUTCOMES = ("death", "admission")


def old_generate(rev: str) -> types.ModuleType:
    """The pre-speed-up ``clinfm.model.generate`` module, from git history."""
    src = subprocess.run(["git", "show", f"{rev}:src/clinfm/model/generate.py"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("clinfm_generate_old")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, "generate_old.py", "exec"), mod.__dict__)
    return mod


def pick_points(db: SubjectDatabase, n: int) -> list[tuple[int, dt.datetime]]:
    """Held-out subjects with at least a year of record, cut one year before their last event."""
    out = []
    splits = db.splits()
    for sid in sorted(s for s, split in splits.items() if split == "held_out"):
        times = [e.time for e in db[sid].events if e.time]
        if len(times) >= 10 and times[-1] - times[0] > dt.timedelta(days=730):
            out.append((sid, times[-1] - dt.timedelta(days=365)))
        if len(out) == n:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--horizon-days", type=float, default=365.0)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--ci-width", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--old-rev", default="3a312b6")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok, _ = load_checkpoint(args.run)
    db = SubjectDatabase(args.dataset)
    points = pick_points(db, args.points)
    tables = [(db.table(sid), when) for sid, when in points]
    old = old_generate(args.old_rev)
    kw = {"outcomes": OUTCOMES, "horizon_days": args.horizon_days, "n_samples": args.samples, "max_new_tokens": args.max_new_tokens}
    forecast_points(model, tok, tables[:1], **kw)  # warm-up
    result = {"run": str(args.run), "points": len(points), "samples": args.samples, "horizon_days": args.horizon_days,
              "threads": args.threads, "params": model.num_params()}  # fmt: skip
    cpu = {}
    t0, c0 = time.perf_counter(), time.process_time()
    olds = [old.forecast_subject(model, tok, table, when, **kw) for table, when in tables]
    t_old, cpu["old"] = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    news = forecast_points(model, tok, tables, **kw)
    t_new, cpu["new"] = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    early = forecast_points(model, tok, tables, ci_width=args.ci_width, **kw)
    t_early, cpu["early_stop"] = time.perf_counter() - t0, time.process_time() - c0
    n = len(points)
    overlap = total = 0
    for a, b in zip(olds, news):
        for oa, ob in zip(a.outcomes, b.outcomes):
            total += 1
            overlap += oa.ci_low <= ob.ci_high and ob.ci_low <= oa.ci_high
    result.update({
        "old_s_per_point": t_old / n, "new_s_per_point": t_new / n, "early_stop_s_per_point": t_early / n,
        "cpu_s_per_point": {k: v / n for k, v in cpu.items()}, "load_average": os.getloadavg(),
        "speedup": t_old / t_new, "speedup_early_stop": t_old / t_early,
        "early_stop_mean_samples": sum(f.samples for f in early) / n, "ci_width": args.ci_width,
        "intervals_overlapping": f"{overlap}/{total}",
        "mean_new_tokens_old": sum(f.mean_new_tokens for f in olds) / n, "mean_new_tokens_new": sum(f.mean_new_tokens for f in news) / n,
        "stop_reasons_new": {r: sum(f.stop_reasons.get(r, 0) for f in news) for r in ("death", "horizon", "budget")},
        "stop_reasons_old": {r: sum(f.stop_reasons.get(r, 0) for f in olds) for r in ("death", "horizon", "budget")},
    })  # fmt: skip
    print(f"{n} points x {args.samples} samples, {args.horizon_days:g}-day horizon, {args.threads} thread(s)")
    print(f"  old path (per point):     {t_old / n:.3f} s/point")
    print(f"  new path (batched):       {t_new / n:.3f} s/point  = {t_old / t_new:.1f}x")
    print(f"  new + early stop ({args.ci_width}): {t_early / n:.3f} s/point  = {t_old / t_early:.1f}x "
          f"({result['early_stop_mean_samples']:.1f} samples/point)")  # fmt: skip
    print(f"  CPU seconds per point: old {cpu['old'] / n:.3f}, new {cpu['new'] / n:.3f}, early stop {cpu['early_stop'] / n:.3f}"
          f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")  # fmt: skip
    print(f"  95% intervals overlapping old vs new: {overlap}/{total}; stop reasons old {result['stop_reasons_old']} "
          f"new {result['stop_reasons_new']}")  # fmt: skip
    write_result("fm_zeroshot", result)


if __name__ == "__main__":
    main()
