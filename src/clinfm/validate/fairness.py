"""Subgroup performance (by sex, age band, race and ethnicity) with fairlearn's ``MetricFrame``, the gap
between the best and worst subgroup, and the four-fifths rule on selection rates at the operating threshold.

Operating threshold: the score above which the model flags as many test patients as the training
prevalence predicts will have the outcome, i.e. the (1 - prevalence) quantile of the tuning-split scores
(of the test scores when there is no tuning split). It is a neutral choice that needs no clinical cost
ratio; a deployment should replace it with the threshold its clinicians pick (the decision curve helps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from fairlearn.metrics import MetricFrame

from clinfm.validate import metrics as M

MIN_CLASS_FOR_CI = 10
"""A subgroup with fewer positives or negatives than this is reported as too small for a CI (no AUROC)."""
FOUR_FIFTHS = 0.8
ATTRIBUTES = ("sex", "age_band", "race", "ethnicity")


def operating_threshold(
    tuning_scores: np.ndarray | None, test_scores: np.ndarray, prevalence: float
) -> float:
    """The (1 - prevalence) quantile of the tuning scores (test scores if none); see the module docstring."""
    scores = tuning_scores if tuning_scores is not None and len(tuning_scores) else test_scores
    return float(np.quantile(scores, 1 - min(max(prevalence, 0.0), 1.0)))


@dataclass(slots=True)
class SubgroupRow:
    model: str
    attribute: str
    group: str
    n: int
    positives: int
    prevalence: float
    selection_rate: float
    auroc: M.Estimate | None
    too_small: bool

    def as_dict(self) -> dict:
        return {
            "model": self.model, "attribute": self.attribute, "group": self.group, "n": self.n,
            "positives": self.positives, "prevalence": self.prevalence, "selection_rate": self.selection_rate,
            "auroc": self.auroc.as_dict() if self.auroc else None,
            "status": f"too small for a CI (< {MIN_CLASS_FOR_CI} positives or negatives)" if self.too_small else "ok",
        }  # fmt: skip


def _safe_auroc(y, p) -> float:
    y = np.asarray(y)
    return M.auroc(y, p) if 0 < y.sum() < y.size else float("nan")


def subgroup_table(
    model: str, y: np.ndarray, p: np.ndarray, attributes: pl.DataFrame, threshold: float,
    n_resamples: int = 1000, seed: int = 0, groups_for_ci: np.ndarray | None = None,
) -> tuple[list[SubgroupRow], dict]:  # fmt: skip
    """Per attribute and group: counts, prevalence, selection rate at ``threshold`` and AUROC (with a CI
    only when the group has at least :data:`MIN_CLASS_FOR_CI` of each class). Returns the rows and, per
    attribute, the AUROC gap (best - worst among groups large enough) and the selection-rate ratio."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=np.float64)
    rows: list[SubgroupRow] = []
    summary: dict[str, dict] = {}
    for attr in ATTRIBUTES:
        groups = attributes[attr].to_numpy()
        frame = MetricFrame(
            metrics={
                "n": lambda yt, yp: len(yt),
                "positives": lambda yt, yp: int(np.sum(yt)),
                "selection_rate": lambda yt, yp: float(np.mean(np.asarray(yp) >= threshold)),
                "auroc": _safe_auroc,
            },
            y_true=y, y_pred=p, sensitive_features=groups,
        )  # fmt: skip
        table = frame.by_group
        ok_aurocs: dict[str, float] = {}
        rates: dict[str, float] = {}
        for group, r in table.iterrows():
            n, pos = int(r["n"]), int(r["positives"])
            too_small = min(pos, n - pos) < MIN_CLASS_FOR_CI
            mask = groups == group
            est = (
                None
                if too_small
                else M.estimate(
                    y[mask],
                    p[mask],
                    M.auroc_w,
                    n_resamples,
                    seed,
                    None if groups_for_ci is None else groups_for_ci[mask],
                )
            )
            if est is not None:  # None exactly when the group is too small
                ok_aurocs[str(group)] = est.value
            rates[str(group)] = float(r["selection_rate"])
            rows.append(
                SubgroupRow(
                    model, attr, str(group), n, pos, pos / n, float(r["selection_rate"]), est, too_small
                )
            )
        ratio = _selection_ratio(rates)
        summary[attr] = {
            "auroc_gap": (max(ok_aurocs.values()) - min(ok_aurocs.values())) if len(ok_aurocs) >= 2 else None,
            "auroc_best": max(ok_aurocs, key=ok_aurocs.__getitem__) if len(ok_aurocs) >= 2 else None,
            "auroc_worst": min(ok_aurocs, key=ok_aurocs.__getitem__) if len(ok_aurocs) >= 2 else None,
            "selection_rate_ratio": ratio,
            "four_fifths_flag": ratio is not None and ratio < FOUR_FIFTHS,
            "groups_too_small": [r.group for r in rows if r.attribute == attr and r.too_small],
        }
    return rows, summary


def _selection_ratio(rates: dict[str, float]) -> float | None:
    """min / max selection rate across groups (None when no group is selected at all)."""
    values = [v for v in rates.values() if np.isfinite(v)]
    if len(values) < 2 or max(values) == 0:
        return None
    return min(values) / max(values)


def fairness_summary(per_model: dict[str, dict]) -> dict:
    """The governance view: any four-fifths flag, and the worst AUROC gap (model, attribute, value)."""
    flag, worst = False, None
    for model, attrs in per_model.items():
        for attr, s in attrs.items():
            flag = flag or bool(s["four_fifths_flag"])
            if s["auroc_gap"] is not None and (worst is None or s["auroc_gap"] > worst["value"]):
                worst = {"model": model, "attribute": attr, "value": s["auroc_gap"],
                         "best_group": s["auroc_best"], "worst_group": s["auroc_worst"]}  # fmt: skip
    return {
        "four_fifths_flag": flag,
        "worst_gap": worst,
        "threshold_rule": __doc__.split("Operating threshold: ")[1].split("\n\n")[0].replace("\n", " "),
    }
