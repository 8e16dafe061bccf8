"""Performance over time: per monitoring window, once outcomes are known, AUROC with a bootstrap CI (subjects
resampled), calibration slope (with its CI), calibration-in-the-large and observed vs expected event rates (``clinfm.validate.metrics``)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from clinfm.validate import metrics as M


@dataclass(frozen=True, slots=True)
class WindowPerformance:
    start: dt.datetime
    end: dt.datetime
    predictions: int
    labels: int
    positives: int
    auroc: M.Estimate | None
    calibration_intercept: float | None
    calibration_slope: M.Estimate | None
    observed: float | None
    expected: float | None
    evaluated: bool  # enough labels and positives to judge

    @property
    def observed_expected(self) -> float | None:
        if self.observed is None or not self.expected:
            return None
        return self.observed / self.expected

    def as_dict(self) -> dict:
        return {
            "start": self.start.isoformat(), "end": self.end.isoformat(), "predictions": self.predictions,
            "labels": self.labels, "positives": self.positives, "evaluated": self.evaluated,
            "auroc": self.auroc.as_dict() if self.auroc else None,
            "calibration_slope": self.calibration_slope.as_dict() if self.calibration_slope else None,
            "calibration_intercept": _num(self.calibration_intercept), "observed": _num(self.observed),
            "expected": _num(self.expected), "observed_expected": _num(self.observed_expected),
        }  # fmt: skip


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def window_performance(
    predictions: pl.DataFrame, start: dt.datetime, end: dt.datetime, *, min_labels: int = 50,
    min_positives: int = 10, n_resamples: int = 500, seed: int = 0,
) -> WindowPerformance:  # fmt: skip
    """Performance of the predictions made in ``[start, end)`` whose outcome is known (columns of
    :meth:`PredictionStore.predictions`)."""
    window = predictions.filter((pl.col("prediction_time") >= start) & (pl.col("prediction_time") < end))
    known = window.filter(pl.col("outcome").is_not_null() & pl.col("score").is_not_null())
    y = known["outcome"].to_numpy().astype(np.float64)
    p = known["score"].to_numpy().astype(np.float64)
    pos = int(y.sum())
    enough = y.size >= min_labels and min(pos, y.size - pos) >= min_positives
    auroc = cit = slope = None
    if enough:
        groups = known["subject_id"].to_numpy()
        auroc = M.estimate(y, p, M.auroc_w, n_resamples, seed, groups)
        slope = M.estimate(y, p, M.calibration_slope_w, n_resamples, seed, groups)
        cit = M.calibration_intercept(y, p)
    return WindowPerformance(
        start=start, end=end, predictions=window.height, labels=int(y.size), positives=pos, auroc=auroc,
        calibration_intercept=cit, calibration_slope=slope, observed=float(y.mean()) if y.size else None,
        expected=float(p.mean()) if p.size else None, evaluated=enough,
    )  # fmt: skip


__all__ = ["WindowPerformance", "window_performance"]
