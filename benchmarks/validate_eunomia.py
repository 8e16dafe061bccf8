"""Local validation end to end: the time of one full evaluation on Eunomia (all available models; target
< 2 min on 2 cores), and every task x model on Eunomia and on the MIMIC-IV demo, with 95% CIs, where a
task has enough positives (otherwise the reason is recorded: too few positives, outcome code absent).

Both datasets have held-out splits too small for any task (Eunomia 10% of 2,694 subjects; MIMIC 10 of 100
patients), so the table uses 5-fold subject-level cross-validation (pooled out-of-fold predictions); the
subject-split outcome is recorded beside it.

    python benchmarks/validate_eunomia.py [--fm-run-dir RUN]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import write_result

from clinfm.data.dataset import build_dataset
from clinfm.data.ingest import mimic, omop
from clinfm.tasks.config import TaskConfigError, available_tasks
from clinfm.validate.evaluate import InsufficientPositivesError, evaluate

MIMIC_DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "mimic-iv-demo-2.2"
TIMED_TASK = "new_stroke"


def _datasets(tmp: Path) -> dict[str, Path]:
    out = {"eunomia": tmp / "eunomia"}
    build_dataset(omop.plan(), out["eunomia"])
    if MIMIC_DEMO.exists():
        out["mimic_demo"] = tmp / "mimic"
        build_dataset(mimic.plan(MIMIC_DEMO), out["mimic_demo"])
    else:
        print(f"MIMIC-IV demo absent at {MIMIC_DEMO}: skipped")
    return out


def _row(dataset: str, task: str, path: Path, reports: Path, fm_run_dir, split: str) -> list[dict]:
    t0 = time.perf_counter()
    try:
        r = evaluate(
            path,
            task,
            report_path=reports / f"{dataset}-{task}-{split}.html",
            fm_run_dir=fm_run_dir,
            split=split,
            n_resamples=1000,
        )
    except InsufficientPositivesError as exc:
        return [
            {
                "dataset": dataset,
                "task": task,
                "split": split,
                "status": f"too few positives in the {exc.split} split",
                "positives": exc.positives,
                "negatives": exc.negatives,
                "detail": str(exc),
            }
        ]
    except TaskConfigError as exc:
        return [
            {"dataset": dataset, "task": task, "split": split, "status": "not applicable", "detail": str(exc)}
        ]
    seconds = time.perf_counter() - t0
    rows = []
    for name, m in r.models.items():
        rows.append(
            {
                "dataset": dataset,
                "task": task,
                "split": split,
                "model": name,
                "status": "ok",
                "labels": int(m.y.size),
                "positives": int(m.y.sum()),
                "seconds": round(seconds, 1),
                **{k: e.as_dict() for k, e in m.metrics.items()},
            }
        )
    for name, why in r.skipped.items():
        rows.append(
            {
                "dataset": dataset,
                "task": task,
                "split": split,
                "model": name,
                "status": "skipped",
                "detail": why,
            }
        )
    return rows


def _fmt(row: dict) -> str:
    if row["status"] != "ok":
        extra = (
            f"{row.get('positives', '')} pos / {row.get('negatives', '')} neg" if "positives" in row else ""
        )
        return f"{row['dataset']:<11} {row['task']:<27} {row.get('model', '-'):<11} {row['status']} {extra}"
    a, p = row["auroc"], row["auprc"]
    ci = lambda d: (
        f"{d['value']:.3f} [{d['ci'][0]:.3f}, {d['ci'][1]:.3f}]" if d["ci"] else f"{d['value']:.3f}"
    )
    return (
        f"{row['dataset']:<11} {row['task']:<27} {row['model']:<11} n={row['labels']:<6} pos={row['positives']:<4} "
        f"AUROC {ci(a)}  AUPRC {ci(p)}  Brier {row['brier']['value']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fm-run-dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        datasets = _datasets(tmp)
        reports = tmp / "reports"
        t0 = time.perf_counter()
        timed = evaluate(
            datasets["eunomia"],
            TIMED_TASK,
            report_path=reports / "timed.html",
            fm_run_dir=args.fm_run_dir,
            split="cv",
            n_resamples=1000,
        )
        timed_s = time.perf_counter() - t0
        print(
            f"full evaluation of {TIMED_TASK} on Eunomia (5-fold CV, models {list(timed.models)}, "
            f"skipped {list(timed.skipped)}, 1000 resamples): {timed_s:.1f} s (target < 120 s)"
        )
        rows = []
        for dataset, path in datasets.items():
            for task in available_tasks():
                subject = _row(dataset, task, path, reports, args.fm_run_dir, "subject")
                rows += subject if subject[0]["status"] != "ok" else []
                rows += _row(dataset, task, path, reports, args.fm_run_dir, "cv")
        print("\nsubject split (held-out test) and 5-fold CV, 95% subject-bootstrap CIs:")
        for row in rows:
            print(f"[{row['split']:<7}] " + _fmt(row))
    write_result(
        "validate_tasks",
        {
            "timed": {
                "task": TIMED_TASK,
                "dataset": "eunomia",
                "split": "cv",
                "seconds": round(timed_s, 1),
                "target_seconds": 120,
                "models": list(timed.models),
                "skipped": timed.skipped,
            },
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
