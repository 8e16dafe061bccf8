"""EHRSHOT-style k-shot curves: AUROC (95% bootstrap CI) of count_gbm, count_lr and the foundation-model probe
(one or more pretrained runs: plain, time-to-event head, fused tokens) when trained on k labels per class,
k = 16, 32, 64, 128 and all, on task groups (operational outcomes, lab anticipation, new diagnoses); one
table of where each FM run wins or loses against count_gbm at the same k.

    python benchmarks/fm_kshot.py --dataset MEDS --run plain=RUN_A --run tte=RUN_B --tasks new_stroke \\
        --split cv --resamples 200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from clinfm.tasks.config import TaskConfigError
from clinfm.validate.evaluate import InsufficientPositivesError, evaluate

GROUPS = {
    "operational": ("long_length_of_stay", "readmission_30d", "in_hospital_mortality"),
    "lab_anticipation": ("hyperkalemia_next",),
    "new_diagnoses": ("new_stroke", "new_heart_failure", "new_type2_diabetes", "new_chronic_kidney_disease",
                      "new_coronary_disease"),
}  # fmt: skip
GROUP_OF = {t: g for g, ts in GROUPS.items() for t in ts}


def _curve(result, model: str) -> dict[str, dict]:
    return {str(p["per_class"]): p["auroc"] for p in result.models[model].learning_curve} if model in result.models else {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--run", action="append", default=[], help="NAME=RUN_DIR, a pretrained FM run (repeatable)")
    ap.add_argument("--tasks", nargs="+", default=[t for ts in GROUPS.values() for t in ts])
    ap.add_argument("--k", default="16,32,64,128,all")
    ap.add_argument("--split", default="subject")
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    runs = dict(r.split("=", 1) for r in args.run)
    sizes = [None if k == "all" else int(k) for k in args.k.split(",")]
    rows, skipped = [], {}
    for task in args.tasks:
        curves: dict[str, dict[str, dict]] = {}
        try:
            for i, (name, run) in enumerate(runs.items() or [("", None)]):
                models = (["count_gbm", "count_lr"] if i == 0 else []) + (["fm_probe"] if run else [])
                r = evaluate(args.dataset, task, models=models, fm_run_dir=run, split=args.split,
                             n_resamples=args.resamples, seed=args.seed, learning_curve_sizes=sizes)  # fmt: skip
                for m in models:
                    curves[f"fm_probe[{name}]" if m == "fm_probe" else m] = _curve(r, m)
        except (InsufficientPositivesError, TaskConfigError) as exc:
            skipped[task] = str(exc)
            print(f"{task}: skipped ({exc})")
            continue
        for k in [str(s) if s else "all" for s in sizes]:
            gbm = curves.get("count_gbm", {}).get(k)
            for model, curve in curves.items():
                if k in curve:
                    est = curve[k]
                    rows.append({"task": task, "group": GROUP_OF.get(task, "other"), "k": k, "model": model,
                                 "auroc": est["value"], "ci": est["ci"] or [None, None],
                                 "vs_gbm": None if gbm is None or model == "count_gbm" else est["value"] - gbm["value"]})  # fmt: skip
    print(f"\n{'task':<24} {'k':>4} {'model':<22} {'AUROC':>6} {'95% CI':>15} {'vs gbm':>7}")
    for r in rows:
        diff = "" if r["vs_gbm"] is None else f"{r['vs_gbm']:+.3f}"
        ci = "" if None in r["ci"] else f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
        print(f"{r['task']:<24} {r['k']:>4} {r['model']:<22} {r['auroc']:.3f} {ci:>15} {diff:>7}")
    fm = [r for r in rows if r["model"].startswith("fm_") and r["vs_gbm"] is not None]
    for name in {r["model"] for r in fm}:
        few = [r for r in fm if r["model"] == name and r["k"] != "all"]
        wins = sum(r["vs_gbm"] >= 0 for r in few)
        print(f"{name}: >= count_gbm at k <= 128 in {wins}/{len(few)} (task, k) cells")
    write_result("fm_kshot", {"dataset": str(args.dataset), "split": args.split, "runs": runs, "rows": rows, "skipped": skipped})


if __name__ == "__main__":
    main()
