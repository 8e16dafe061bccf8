"""Discrimination, calibration and clinical-utility metrics, with vectorized bootstrap confidence intervals.

Every metric is written for case weights ``w`` of shape ``(B, n)``: row ``b`` holds how often each example
was drawn in bootstrap resample ``b`` (all ones for the point estimate). So one call scores all resamples
at once, with ranks computed once from a single sort of the scores (Mann-Whitney U for AUROC).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import overload

import numpy as np

EPS = 1e-6
ECE_BINS = 10
"""Expected calibration error uses 10 equal-width bins over [0, 1]: ECE = sum_b |sum_{i in b} (y_i - p_i)| / n."""

WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with a percentile bootstrap 95% CI (``ci`` is ``None`` when it could not be had)."""

    value: float
    ci: tuple[float, float] | None
    resamples: int = 0  # resamples where the metric was defined (both classes present)

    def as_dict(self) -> dict:
        return {"value": _num(self.value), "ci": [_num(c) for c in self.ci] if self.ci else None}


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _as_arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y has {y.size} values but the scores have {p.size}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must hold only 0/1 (False/True) labels")
    return y, p


def _ones(n: int) -> np.ndarray:
    return np.ones((1, n))


def _groups(p: np.ndarray, descending: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts ``p`` and the start of each run of tied scores in that order."""
    order = np.argsort(-p if descending else p, kind="mergesort")
    sp = p[order]
    starts = np.flatnonzero(np.r_[True, sp[1:] != sp[:-1]])
    return order, starts


# --- weighted metrics: (y (n,), p (n,), w (B, n)) -> (B,) ---------------------------------------------
def auroc_w(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC = P(score of a positive > score of a negative) + 0.5 P(tie), i.e. Mann-Whitney U / (n+ n-)."""
    order, starts = _groups(p)
    ws, ys = w[:, order], y[order]
    pos = np.add.reduceat(ws * ys, starts, axis=1)  # (B, G) positive weight per tied-score group
    neg = np.add.reduceat(ws, starts, axis=1) - pos
    below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each group
    u = (pos * (below + 0.5 * neg)).sum(axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def auprc_w(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average precision, sum_k (R_k - R_{k-1}) P_k over descending distinct thresholds (as scikit-learn)."""
    order, starts = _groups(p, descending=True)
    ws, ys = w[:, order], y[order]
    tp = np.cumsum(np.add.reduceat(ws * ys, starts, axis=1), axis=1)
    fp = np.cumsum(np.add.reduceat(ws * (1 - ys), starts, axis=1), axis=1)
    n_pos = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = tp / n_pos
        d_recall = np.diff(recall, axis=1, prepend=0.0)
        ap = (d_recall * precision).sum(axis=1)
    return np.where(n_pos[:, 0] > 0, ap, np.nan)


def brier_w(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ (p - y) ** 2) / w.sum(axis=1)


def ece_w(y: np.ndarray, p: np.ndarray, w: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Expected calibration error with ``bins`` equal-width bins (see :data:`ECE_BINS`)."""
    b = np.minimum((p * bins).astype(int), bins - 1)
    onehot = np.zeros((p.size, bins))
    onehot[np.arange(p.size), b] = 1.0
    gap = w @ (onehot * (y - p)[:, None])  # (B, bins): sum of (y - p) in each bin
    return np.abs(gap).sum(axis=1) / w.sum(axis=1)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def calibration_intercept_w(y: np.ndarray, p: np.ndarray, w: np.ndarray, iterations: int = 25) -> np.ndarray:
    """Calibration-in-the-large: ``a`` in ``logit P(y) = a + logit(p)`` (slope fixed at 1); 0 is ideal."""
    z = _logit(p)
    a = np.zeros(w.shape[0])
    for _ in range(iterations):  # Newton on one parameter per resample
        mu = _sigmoid(a[:, None] + z)
        grad = (w * (y - mu)).sum(axis=1)
        hess = (w * mu * (1 - mu)).sum(axis=1)
        step = grad / np.maximum(hess, 1e-12)
        a = a + step
        if not np.any(np.abs(step) > 1e-10):  # converged in every resample (NaN steps do not hold it up)
            break
    return a


def calibration_slope_w(y: np.ndarray, p: np.ndarray, w: np.ndarray, iterations: int = 25) -> np.ndarray:
    """``b`` in the logistic recalibration ``logit P(y) = a + b logit(p)``; 1 is ideal, < 1 overfitting."""
    z = _logit(p)
    a, b = np.zeros(w.shape[0]), np.ones(w.shape[0])
    for _ in range(iterations):  # Newton on (a, b), the 2x2 system solved in closed form per resample
        mu = _sigmoid(a[:, None] + b[:, None] * z)
        r, v = w * (y - mu), w * mu * (1 - mu)
        g0, g1 = r.sum(axis=1), (r * z).sum(axis=1)
        h00, h01, h11 = v.sum(axis=1), (v * z).sum(axis=1), (v * z * z).sum(axis=1)
        det = h00 * h11 - h01**2
        ok = np.abs(det) > 1e-12
        safe = np.where(ok, det, 1.0)
        da = np.where(ok, (h11 * g0 - h01 * g1) / safe, 0.0)
        db = np.where(ok, (h00 * g1 - h01 * g0) / safe, 0.0)
        a, b = a + da, b + db
        if not np.any(np.abs(da) + np.abs(db) > 1e-10):
            break
    return np.where(np.isfinite(b) & (np.abs(b) < 1e3), b, np.nan)


METRICS: dict[str, WeightedMetric] = {
    "auroc": auroc_w,
    "auprc": auprc_w,
    "brier": brier_w,
    "ece": ece_w,
    "calibration_slope": calibration_slope_w,
    "calibration_intercept": calibration_intercept_w,
}
"""Every metric reported per model, in report order."""


# --- plain (unweighted) versions ----------------------------------------------------------------------
def _point(metric: WeightedMetric, y, p) -> float:
    y, p = _as_arrays(y, p)
    return float(metric(y, p, _ones(y.size))[0])


def auroc(y, p) -> float:
    return _point(auroc_w, y, p)


def auprc(y, p) -> float:
    return _point(auprc_w, y, p)


def brier(y, p) -> float:
    return _point(brier_w, y, p)


def ece(y, p, bins: int = ECE_BINS) -> float:
    y, p = _as_arrays(y, p)
    return float(ece_w(y, p, _ones(y.size), bins)[0])


def calibration_slope(y, p) -> float:
    return _point(calibration_slope_w, y, p)


def calibration_intercept(y, p) -> float:
    return _point(calibration_intercept_w, y, p)


# --- bootstrap ----------------------------------------------------------------------------------------
def bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(B, n) indices drawn with replacement: resample ``b`` is ``idx[b]``."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def indices_to_weights(idx: np.ndarray, n: int) -> np.ndarray:
    """(B, n) indices -> (B, n) counts of each example in each resample (one bincount over all rows)."""
    b = idx.shape[0]
    flat = (np.arange(b)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _chunks(n: int, n_resamples: int, max_cells: int = 8_000_000) -> list[int]:
    per = max(1, max_cells // max(n, 1))
    return [min(per, n_resamples - s) for s in range(0, n_resamples, per)]


def _resample_weights(n: int, n_resamples: int, seed: int, groups: np.ndarray | None):
    """Chunks of (b, n) case weights; with ``groups`` whole groups are drawn (cluster bootstrap)."""
    if groups is None:
        inverse, n_units = None, n
    else:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        n_units = int(inverse.max()) + 1 if inverse.size else 0
    rng = np.random.default_rng(seed)
    for size in _chunks(n, n_resamples):
        w = indices_to_weights(rng.integers(0, n_units, size=(size, n_units)), n_units)
        yield w if inverse is None else w[:, inverse]


def bootstrap_all(
    y, scores: dict[str, np.ndarray], metrics: dict[str, WeightedMetric], n_resamples: int = 1000, seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[tuple[str, str], np.ndarray]:  # fmt: skip
    """Every metric of every score array on the same ``n_resamples`` resamples (paired): {(score, metric): (B,)}.

    With ``groups`` (e.g. subject ids) whole groups are resampled (cluster bootstrap), so several
    prediction times of one patient do not pass for independent evidence.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    arrays = {k: np.asarray(p, dtype=np.float64).ravel() for k, p in scores.items()}
    out: dict[tuple[str, str], list[np.ndarray]] = {(k, m): [] for k in arrays for m in metrics}
    for w in _resample_weights(y.size, n_resamples, seed, groups):
        for k, p in arrays.items():
            for m, fn in metrics.items():
                out[(k, m)].append(fn(y, p, w))
    return {key: np.concatenate(v) if v else np.empty(0) for key, v in out.items()}


@overload
def bootstrap(
    y, scores: dict[str, np.ndarray], metric: WeightedMetric, n_resamples: int = ..., seed: int = ...,
    groups: np.ndarray | None = ...,
) -> dict[str, np.ndarray]: ...


@overload
def bootstrap(
    y, scores: np.ndarray, metric: WeightedMetric, n_resamples: int = ..., seed: int = ...,
    groups: np.ndarray | None = ...,
) -> np.ndarray: ...


def bootstrap(
    y, scores: dict[str, np.ndarray] | np.ndarray, metric: WeightedMetric, n_resamples: int = 1000, seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray] | np.ndarray:
    """One metric on ``n_resamples`` resamples, the same resamples for every score array (paired)."""
    named = scores if isinstance(scores, dict) else {"_": scores}
    values = {k: v for (k, _), v in bootstrap_all(y, named, {"m": metric}, n_resamples, seed, groups).items()}
    return values if isinstance(scores, dict) else values["_"]


def _percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[tuple[float, float] | None, int]:
    ok = values[np.isfinite(values)]
    if ok.size < 20:
        return None, int(ok.size)
    lo, hi = np.percentile(ok, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return (float(lo), float(hi)), int(ok.size)


def estimate(y, p, metric: WeightedMetric, n_resamples: int = 1000, seed: int = 0, groups=None) -> Estimate:
    """Point estimate and percentile-bootstrap 95% CI (resamples with one class only are dropped)."""
    y, p = _as_arrays(y, p)
    value = float(metric(y, p, _ones(y.size))[0])
    ci, used = (
        _percentile_ci(bootstrap(y, p, metric, n_resamples, seed, groups)) if n_resamples else (None, 0)
    )
    return Estimate(value, ci, used)


def all_metrics(y, p, n_resamples: int = 1000, seed: int = 0, groups=None) -> dict[str, Estimate]:
    """Every metric of :data:`METRICS` with its CI; all metrics share the same resamples."""
    y, p = _as_arrays(y, p)
    boot = bootstrap_all(y, {"p": p}, METRICS, n_resamples, seed, groups) if n_resamples else {}
    out = {}
    for name, m in METRICS.items():
        ci, used = _percentile_ci(boot[("p", name)]) if n_resamples else (None, 0)
        out[name] = Estimate(float(m(y, p, _ones(y.size))[0]), ci, used)
    return out


@dataclass(frozen=True, slots=True)
class Comparison:
    """Model A minus model B on one metric, on the same resamples (paired bootstrap)."""

    metric: str
    model_a: str
    model_b: str
    difference: float
    ci: tuple[float, float] | None
    p_value: float | None  # two-sided, from the bootstrap distribution of the difference

    def as_dict(self) -> dict:
        return {
            "metric": self.metric, "model_a": self.model_a, "model_b": self.model_b,
            "difference": _num(self.difference), "ci": [_num(c) for c in self.ci] if self.ci else None,
            "p_value": _num(self.p_value) if self.p_value is not None else None,
        }  # fmt: skip


def paired_difference(
    y,
    p_a,
    p_b,
    metric: str = "auroc",
    names: tuple[str, str] = ("a", "b"),
    n_resamples: int = 1000,
    seed: int = 0,
    groups=None,
) -> Comparison:
    m = METRICS[metric]
    y, p_a = _as_arrays(y, p_a)
    _, p_b = _as_arrays(y, p_b)
    diff = float(m(y, p_a, _ones(y.size))[0] - m(y, p_b, _ones(y.size))[0])
    boot = bootstrap(y, {"a": p_a, "b": p_b}, m, n_resamples, seed, groups)
    d = boot["a"] - boot["b"]
    ci, _ = _percentile_ci(d)
    d = d[np.isfinite(d)]
    p_value = float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))) if d.size else None
    return Comparison(metric, names[0], names[1], diff, ci, p_value)


# --- curves -------------------------------------------------------------------------------------------
def roc_curve(y, p) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0)."""
    y, p = _as_arrays(y, p)
    order, starts = _groups(p, descending=True)
    ends = np.r_[starts[1:], y.size] - 1
    tp = np.cumsum(y[order])[ends]
    fp = np.cumsum(1 - y[order])[ends]
    return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def pr_curve(y, p) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct threshold."""
    y, p = _as_arrays(y, p)
    order, starts = _groups(p, descending=True)
    ends = np.r_[starts[1:], y.size] - 1
    tp = np.cumsum(y[order])[ends]
    fp = np.cumsum(1 - y[order])[ends]
    return tp / max(tp[-1], 1), tp / (tp + fp)


def calibration_curve(y, p, bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin: mean predicted risk, observed rate, count."""
    y, p = _as_arrays(y, p)
    b = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(b, minlength=bins)
    ok = count > 0
    mean_p = np.bincount(b, weights=p, minlength=bins)[ok] / count[ok]
    rate = np.bincount(b, weights=y, minlength=bins)[ok] / count[ok]
    return mean_p, rate, count[ok]


def net_benefit(y, p, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Decision curve: net benefit NB(t) = TP/n - FP/n * t/(1-t) of the model, of treating everyone and of
    treating no one (always 0), at each threshold probability t."""
    y, p = _as_arrays(y, p)
    t = np.asarray(thresholds, dtype=np.float64)
    n, prevalence = y.size, y.mean()
    treat = p[None, :] >= t[:, None]  # (T, n)
    tp = (treat & (y[None, :] == 1)).sum(axis=1) / n
    fp = (treat & (y[None, :] == 0)).sum(axis=1) / n
    odds = t / (1 - t)
    return {
        "threshold": t,
        "model": tp - fp * odds,
        "treat_all": prevalence - (1 - prevalence) * odds,
        "treat_none": np.zeros_like(t),
    }
