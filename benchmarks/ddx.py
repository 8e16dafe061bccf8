"""Differential diagnosis on simulated DDXPlus patients who answer cleanly, wrongly (4%) or know only 60%.

Per case kind (``reasoning.simulator``): the full-profile ceiling, top-1 / top-5 within the question budget (15),
questions asked, categorical questions asked, and the calibration of the stopping posterior (ECE over 10 bins,
reliability diagram PNG), for the engine's answer model against the baseline measured in the same run (answers
taken as certain, stop at 0.9: the engine before issue 21) and a random-question policy.

``--fit`` first fits the answer model (noise rates, temperature, threshold) on the *tuning* seed and writes it
to the packaged ``clinfm/defaults/ddx/answer-model.json``; the reported figures always come from the *evaluation*
seed, whose cases the fit never saw. Targets (evaluation cases): top-1 >= 0.96 clean, >= 0.92 noisy,
>= 0.80 incomplete, ECE <= 0.05 per kind.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402

from clinfm.defaults import packaged  # noqa: E402
from clinfm.reasoning.answer_model import EXACT, load_answer_model  # noqa: E402
from clinfm.reasoning.calibration import MAX_ECE, TARGETS, fit_answer_model, plot_reliability, reliability  # noqa: E402
from clinfm.reasoning.knowledge import load_knowledge_base  # noqa: E402
from clinfm.reasoning.simulator import KINDS, full_profile_ranks, run_interviews, sample_cases  # noqa: E402

TUNE_SEED, EVAL_SEED = 1000, 2000


def main(n_cases: int = 1000, tune_seed: int = TUNE_SEED, eval_seed: int = EVAL_SEED, budget: int = 15,
         fit: bool = False, data_dir: str | None = None) -> dict:
    if tune_seed == eval_seed:
        raise SystemExit(f"--tune-seed and --eval-seed are both {tune_seed}: evaluation cases must differ from tuning")
    start = time.perf_counter()
    kb = load_knowledge_base(data_dir)
    if fit:
        tuning = {k: sample_cases(kb, n_cases, tune_seed + i, k) for i, k in enumerate(KINDS)}
        model, _ = fit_answer_model(kb, tuning, budget)
        model = replace(model, fitted_on={**model.fitted_on, "tune_seeds": [tune_seed + i for i in range(len(KINDS))]})
        target = packaged("ddx/answer-model.json")
        target.write_text(model.to_json())
        print(f"fitted answer model written to {target}")
    model = load_answer_model()
    baseline = replace(EXACT, threshold=0.9)
    result: dict = {"kb_version": kb.version, "cases_per_kind": n_cases, "eval_seeds": {}, "budget": budget,
                    "answer_model": {"source": model.source, "profiles": [vars(p) for p in model.profiles],
                                     "temperature": model.temperature, "threshold": model.threshold,
                                     "fitted_on": model.fitted_on},
                    "kinds": {}, "seconds": {}}
    curves, base_curves = {}, {}
    for i, kind in enumerate(KINDS):
        seed = eval_seed + i
        result["eval_seeds"][kind] = seed
        if model.fitted_on.get("tune_seeds") and seed in model.fitted_on["tune_seeds"]:
            raise SystemExit(f"evaluation seed {seed} was used to fit the answer model: pick another --eval-seed")
        cases = sample_cases(kb, n_cases, seed, kind)
        t = time.perf_counter()
        runs = {"engine": run_interviews(kb, cases, model, budget=budget),
                "baseline_exact_0.9": run_interviews(kb, cases, baseline, budget=budget),
                "random_questions": run_interviews(kb, cases, model, budget=budget, policy="random", seed=seed)}
        result["seconds"][kind] = round(time.perf_counter() - t, 2)
        row = {"full_profile_top1": float(np.mean(full_profile_ranks(kb, cases, model) == 0)),
               "full_profile_top1_baseline": float(np.mean(full_profile_ranks(kb, cases, baseline) == 0))}
        for name, r in runs.items():
            rel = reliability(r.confidence, r.correct)
            row[name] = {"top1": float(r.correct.mean()), "top5": float(np.mean(r.ranks[:, -1] < 5)),
                         "mean_questions": float(r.questions.mean()),
                         "categorical_questions": float(r.categorical_asked.mean()),
                         "cases_asked_a_categorical": float(np.mean(r.categorical_asked > 0)),
                         "confident_stops": float(r.confident_stop.mean()), "ece": rel.ece,
                         "reliability": vars(rel)}
        curves[kind], base_curves[kind] = (reliability(runs[n].confidence, runs[n].correct)
                                           for n in ("engine", "baseline_exact_0.9"))
        result["kinds"][kind] = row
    png = plot_reliability(curves, RESULTS / "ddx_reliability.png",
                           f"Stopping posterior, engine ({n_cases} held-out cases per kind)")
    base_png = plot_reliability(base_curves, RESULTS / "ddx_reliability_baseline.png",
                                "Stopping posterior, answers taken as certain (baseline)")
    result["figures"] = [str(png.relative_to(RESULTS.parent)), str(base_png.relative_to(RESULTS.parent))]
    k = result["kinds"]
    result["targets"] = {
        **{f"{kind}_top1_within_{budget}_ge_{TARGETS[kind]}": k[kind]["engine"]["top1"] >= TARGETS[kind]
           for kind in KINDS},
        **{f"{kind}_ece_le_{MAX_ECE}": k[kind]["engine"]["ece"] <= MAX_ECE for kind in KINDS},
    }
    result["seconds"]["total"] = round(time.perf_counter() - start, 2)
    _print(result)
    write_result("ddx", result)
    return result


def _print(result: dict) -> None:
    m = result["answer_model"]
    print(f"{result['cases_per_kind']} held-out simulated DDXPlus cases per kind (seeds {result['eval_seeds']}), "
          f"knowledge base {result['kb_version']}; answer model {m['source']}: temperature {m['temperature']}, "
          f"threshold {m['threshold']}, profiles {m['profiles']}")
    print(f"{'kind':<12}{'policy':<20}{'full':>7}{'top-1':>8}{'top-5':>8}{'asked':>7}{'categ.':>8}{'ECE':>7}")
    for kind, row in result["kinds"].items():
        for name in ("engine", "baseline_exact_0.9", "random_questions"):
            r = row[name]
            full = row["full_profile_top1_baseline" if name.startswith("baseline") else "full_profile_top1"]
            print(f"{kind:<12}{name:<20}{full:>7.3f}{r['top1']:>8.3f}{r['top5']:>8.3f}{r['mean_questions']:>7.1f}"
                  f"{r['categorical_questions']:>8.2f}{r['ece']:>7.3f}")
        e, b = row["engine"], row["baseline_exact_0.9"]
        print(f"{'':<12}engine / baseline top-1 within {result['budget']}: {e['top1'] / max(b['top1'], 1e-9):.3f}x, "
              f"ECE {e['ece']:.3f} vs {b['ece']:.3f}")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in result["targets"].items()))
    print(f"reliability diagrams: {', '.join(result['figures'])}; runtime {result['seconds']['total']} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="cases per kind (tuning and evaluation each)")
    parser.add_argument("--tune-seed", type=int, default=TUNE_SEED)
    parser.add_argument("--eval-seed", type=int, default=EVAL_SEED)
    parser.add_argument("--budget", type=int, default=15)
    parser.add_argument("--fit", action="store_true", help="refit the packaged answer model on the tuning seed first")
    parser.add_argument("--data-dir", default=None, help="DDXPlus folder (default: $CLINFM_DDXPLUS_DIR, else the packaged copy)")
    args = parser.parse_args()
    main(args.cases, args.tune_seed, args.eval_seed, args.budget, args.fit, args.data_dir)
