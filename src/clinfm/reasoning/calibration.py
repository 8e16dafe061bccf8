"""Calibration of the interview's stopping posterior: reliability bins, ECE, and fitting the answer model.

``fit_answer_model`` chooses the answer-noise rates, the temperature and the stopping threshold on *tuning*
cases (one seed set of simulated clean, noisy and incomplete patients); the figures that count are then taken
on cases drawn from another seed (``benchmarks/ddx.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from clinfm.reasoning.answer_model import AnswerModel, AnswerProfile
from clinfm.reasoning.knowledge import KnowledgeBase
from clinfm.reasoning.simulator import CaseBatch, run_interviews

BINS = 10
TARGETS = {"clean": 0.96, "noisy": 0.92, "incomplete": 0.80}
"""Top-1 within 15 questions the fit aims above, per case kind (issue 21)."""
MAX_ECE = 0.05


@dataclass(frozen=True)
class Reliability:
    """Equal-width confidence bins: mean confidence, accuracy and count per bin, and the expected calibration error."""

    confidence: list[float]
    accuracy: list[float]
    count: list[int]
    ece: float


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> Reliability:
    """ECE = sum over bins of (share of cases) x |accuracy - mean confidence|; empty bins are skipped."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    if confidence.shape != correct.shape or confidence.ndim != 1 or not len(confidence):
        raise ValueError(f"confidence {confidence.shape} and correct {correct.shape} must be equal, non-empty 1-D")
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    conf, acc, cnt, ece = [], [], [], 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            conf.append(float(confidence[inside].mean()))
            acc.append(float(correct[inside].mean()))
            cnt.append(int(inside.sum()))
            ece += inside.mean() * abs(acc[-1] - conf[-1])
    return Reliability(conf, acc, cnt, float(ece))


def plot_reliability(curves: dict[str, Reliability], path: str | Path, title: str) -> Path:
    """A reliability diagram (accuracy against confidence, one line per case kind) written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, r in curves.items():
        ax.plot(r.confidence, r.accuracy, marker="o", label=f"{name} (ECE {r.ece:.3f}, n={sum(r.count)})")
    ax.set(xlabel="stopping posterior of the leading pathology", ylabel="share right (top-1)", xlim=(0, 1),
           ylim=(0, 1))
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- fitting ----------------------------------------------------------------------------------------------------

RATE_GRID = {"false_denial": (0.06, 0.1, 0.15), "false_claim": (0.02, 0.03, 0.05), "dont_know_present": (0.1, 0.2)}
DONT_KNOW_ABSENT = 0.005
"""Kept small and fixed: a "don't know" to a finding one lacks is rare and the tuning cases never say it."""
TEMPERATURES = (0.7, 0.8, 0.9, 1.0)
THRESHOLDS = (0.97, 0.98, 0.99, 0.995)


@dataclass(frozen=True)
class FitScore:
    model: AnswerModel
    top1: dict[str, float]
    ece: dict[str, float]
    questions: dict[str, float]

    @property
    def margin(self) -> float:
        """The worst slack, in probability units: the smallest top-1 excess over its target or ECE room under
        MAX_ECE, over every case kind. The fit maximizes it, so no single target is bought with another."""
        return min(min(self.top1[k] - TARGETS[k] for k in self.top1), min(MAX_ECE - e for e in self.ece.values()))


def score(kb: KnowledgeBase, cases: dict[str, CaseBatch], model: AnswerModel, budget: int = 15) -> FitScore:
    runs = {kind: run_interviews(kb, c, model, budget=budget) for kind, c in cases.items()}
    return FitScore(model, {k: float(r.correct.mean()) for k, r in runs.items()},
                    {k: reliability(r.confidence, r.correct).ece for k, r in runs.items()},
                    {k: float(r.questions.mean()) for k, r in runs.items()})


def fit_answer_model(kb: KnowledgeBase, tuning: dict[str, CaseBatch], budget: int = 15,
                     progress: bool = True) -> tuple[AnswerModel, list[FitScore]]:
    """Grid search on tuning cases: first the error rates (T = 1, threshold 0.97), then temperature x threshold.

    The best model has the largest ``FitScore.margin`` (ties: fewer questions). Returns it and every score.
    """
    from tqdm import tqdm

    def models_from_rates() -> Iterable[AnswerModel]:
        for fd, fc, dk in itertools.product(*RATE_GRID.values()):
            yield AnswerModel((AnswerProfile("patient", 1.0, fd, fc, dk, DONT_KNOW_ABSENT),), 1.0, 0.97)

    def best(candidates: list[AnswerModel], stage: str) -> FitScore:
        scores = [score(kb, tuning, m, budget) for m in tqdm(candidates, desc=stage, disable=not progress)]
        history.extend(scores)
        return max(scores, key=lambda s: (round(s.margin, 4), -sum(s.questions.values())))

    history: list[FitScore] = []
    rates = best(list(models_from_rates()), "answer-noise rates")
    grid = [replace(rates.model, temperature=t, threshold=h) for t, h in itertools.product(TEMPERATURES, THRESHOLDS)]
    chosen = best(grid, "temperature x threshold")
    fitted = {"cases_per_kind": {k: len(c) for k, c in tuning.items()}, "budget": budget,
              "tuning_top1": chosen.top1, "tuning_ece": chosen.ece, "kb_version": kb.version}
    return replace(chosen.model, fitted_on=fitted), history
