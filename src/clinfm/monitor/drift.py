"""Input and prediction drift: a reference profile of the data the model was validated on, the same counts for
each monitoring window, and the population stability index (PSI) between them.

Like is compared with like: the reference holds the events the model saw for its validation points (the
task's prediction-time cohort, each point's observation window, prediction times in the validation window
before the cutoff); a monitoring window holds the events of the subjects the model scores. Code shares are
measured on the codes the model uses (its vocabulary); codes it cannot see are counted apart (unknown share).

PSI = sum_i (a_i - e_i) ln(a_i / e_i) over bins with expected shares ``e`` (reference) and actual shares ``a``
(window), each floored at :data:`PSI_FLOOR`. Rule of thumb: < 0.1 stable, 0.1-0.2 moderate, > 0.2 a shift.
Codes: the reference's top-K codes plus one ``__other__`` bin. Labs: the reference deciles of ``numeric_value``
for its most frequent numeric codes. Scores: the reference deciles of the model's scores on held-out data.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import polars as pl

from clinfm import schema

SID, TIME, CODE, VALUE = schema.SUBJECT_ID, schema.TIME, schema.CODE, schema.NUMERIC_VALUE
PRED = "prediction_time"
OTHER = "__other__"
PSI_FLOOR = 1e-4
UNKNOWN_KEPT = 20
"""Per window, the most frequent codes the model cannot see are kept by name (what an incident shows)."""


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of ``actual`` against ``expected`` (counts or shares, same bins)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs the same bins: expected has {e.size}, actual {a.size}")
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    e = np.maximum(e / e.sum(), PSI_FLOOR)
    a = np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def chance_psi(bins: int, n: int) -> float:
    """PSI expected from sampling noise alone when ``n`` values fill ``bins`` bins with no shift at all:
    about (bins - 1) / n (PSI behaves like a chi-square statistic over n). Small windows need this margin,
    or 60 values in 10 deciles cross a 0.2 threshold by chance."""
    return (bins - 1) / n if n > 0 else math.inf


def noise_psi(bins: int, n: int, m: float = math.inf, quantile: float = 0.99) -> float:
    """The PSI that sampling noise alone stays under with probability ``quantile`` when a window of ``n``
    values and a reference of ``m`` values fill the same ``bins`` with no shift: n·m/(n+m) · PSI is about
    chi-square with ``bins - 1`` degrees of freedom (PSI is the symmetric chi-square divergence to second
    order). :func:`chance_psi` is its mean."""
    if n <= 0 or m <= 0:
        return math.inf
    from scipy.stats import chi2

    effective = n if math.isinf(m) else n * m / (n + m)
    return float(chi2.ppf(quantile, max(bins - 1, 1)) / effective)


def observation_events(
    events: pl.DataFrame, points: pl.DataFrame, lookback: dt.timedelta | None
) -> pl.DataFrame:
    """The timed events each point's model saw: its subject's events in ``(t - lookback, t]`` (all history
    before ``t`` when ``lookback`` is None), each event once even when two points' windows overlap."""
    timed = _timed(events)
    keys = points.select(SID, PRED).unique()
    pairs = keys.join(timed, on=SID).filter(pl.col(TIME) <= pl.col(PRED))
    if lookback is not None:
        pairs = pairs.filter(pl.col(TIME) > pl.col(PRED) - lookback)
    return pairs.select(timed.columns).unique(maintain_order=True)


def missing_inputs(
    events: pl.DataFrame, points: pl.DataFrame, codes: Sequence[str], lookback: dt.timedelta | None
) -> dict[str, int]:
    """Per key input code: how many of ``points`` have no event of it in their observation window."""
    if not codes or points.height == 0:
        return {c: 0 for c in codes}
    keys = points.select(SID, PRED).with_row_index("row")
    timed = _timed(events).filter(pl.col(CODE).is_in(list(codes))).select(SID, TIME, CODE)
    pairs = keys.join(timed, on=SID).filter(pl.col(TIME) <= pl.col(PRED))
    if lookback is not None:
        pairs = pairs.filter(pl.col(TIME) > pl.col(PRED) - lookback)
    present = dict(pairs.select("row", CODE).unique().group_by(CODE).len().iter_rows())
    return {c: int(points.height - present.get(c, 0)) for c in codes}


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Inner bin edges at the ``bins``-quantiles of ``values`` (ties merged, so possibly fewer bins)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return []
    inner = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(x) for x in np.unique(inner)]


def histogram(values: np.ndarray, edges: Sequence[float]) -> list[int]:
    """Counts in ``(-inf, e0], (e0, e1], ..., (e_last, inf)``: ``len(edges) + 1`` bins."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(int).tolist()


def _timed(events: pl.DataFrame) -> pl.DataFrame:
    """The events a data feed delivers: timed ones, without birth (a demographic dated decades back)."""
    return events.filter(pl.col(TIME).is_not_null() & (pl.col(CODE) != schema.BIRTH))


def build_reference(
    events: pl.DataFrame,
    vocabulary: Iterable[str],
    scores: np.ndarray,
    *,
    top_codes: int = 20,
    lab_codes: int = 10,
    bins: int = 10,
    min_lab_values: int = 50,
    missing: dict[str, int] | None = None,
    points: int = 0,
    window: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The validation data's profile: ``events`` are the events the model saw for its validation points
    (:func:`observation_events`), ``vocabulary`` the codes the model can see, ``scores`` its scores on those
    points, ``missing`` the key inputs' missing counts among the ``points`` (:func:`missing_inputs`).

    Code shares are over the events whose code is in ``vocabulary`` (all events when it is empty): a code the
    model does not use cannot move its inputs, and is counted in ``unknown_share`` instead."""
    timed = _timed(events)
    vocab = set(vocabulary)
    used = timed.filter(pl.col(CODE).is_in(list(vocab))) if vocab else timed
    counts = used.group_by(CODE).len().sort(["len", CODE], descending=[True, False])
    top = counts.head(top_codes)
    code_counts = dict(zip(top[CODE].to_list(), top["len"].to_list()))
    code_counts[OTHER] = used.height - sum(code_counts.values())
    n = timed.height
    known = used.height if vocab else 0
    numeric = timed.filter(pl.col(VALUE).is_not_null() & pl.col(VALUE).is_finite())
    lab_counts = numeric.group_by(CODE).len().filter(pl.col("len") >= min_lab_values)
    lab_counts = lab_counts.sort(["len", CODE], descending=[True, False]).head(lab_codes)
    labs = {}
    for code in lab_counts[CODE].to_list():
        values = numeric.filter(pl.col(CODE) == code)[VALUE].to_numpy()
        edges = quantile_edges(values, bins)
        labs[code] = {"edges": edges, "counts": histogram(values, edges)}
    score_edges = quantile_edges(scores, bins)
    return {
        "n_events": n,
        "codes": code_counts,
        "unknown_share": (n - known) / n if n else 0.0,
        "vocabulary": sorted(vocab),
        "labs": labs,
        "scores": {"edges": score_edges, "counts": histogram(scores, score_edges), "n": int(np.size(scores))},
        "missing": dict(missing or {}),
        "points": int(points),
        "window": window or {},
        "settings": {
            "top_codes": top_codes,
            "lab_codes": lab_codes,
            "bins": bins,
            "min_lab_values": min_lab_values,
        },
    }


def window_counts(
    events: pl.DataFrame, reference: dict[str, Any], vocabulary: set[str] | None = None
) -> dict:
    """The counts of one window's events in the reference's bins (JSON-ready, summable across windows)."""
    timed = _timed(events)
    vocab = vocabulary if vocabulary is not None else set(reference["vocabulary"])
    by_code = dict(timed.group_by(CODE).len().iter_rows())
    unknown = int(sum(n for c, n in by_code.items() if c not in vocab)) if vocab else 0
    top = [c for c in reference["codes"] if c != OTHER]
    codes = {c: int(by_code.get(c, 0)) for c in top}
    codes[OTHER] = int(timed.height - unknown - sum(codes.values()))
    unseen = sorted(((n, c) for c, n in by_code.items() if vocab and c not in vocab), reverse=True)[:UNKNOWN_KEPT]
    labs = {}
    for code, ref in reference["labs"].items():
        values = timed.filter((pl.col(CODE) == code) & pl.col(VALUE).is_not_null())[VALUE].to_numpy()
        labs[code] = histogram(values, ref["edges"])
    return {"n_events": int(timed.height), "codes": codes, "unknown": unknown, "labs": labs, "scored": 0,
            "missing": {}, "unknown_codes": {c: int(n) for n, c in unseen}}  # fmt: skip


def merge_counts(windows: Sequence[dict]) -> dict:
    """Sum several windows' counts (weekly replay steps into one monitoring window)."""
    out: dict[str, Any] = {"n_events": 0, "codes": {}, "unknown": 0, "labs": {}, "scored": 0, "missing": {},
                           "unknown_codes": {}}  # fmt: skip
    for w in windows:
        out["n_events"] += w["n_events"]
        out["unknown"] += w["unknown"]
        out["scored"] += w.get("scored", 0)
        for key in ("codes", "missing", "unknown_codes"):
            for c, n in w.get(key, {}).items():
                out[key][c] = out[key].get(c, 0) + n
        for c, hist in w["labs"].items():
            prev = out["labs"].get(c)
            out["labs"][c] = list(hist) if prev is None else [a + b for a, b in zip(prev, hist)]
    return out


def reference_counts(reference: dict) -> dict:
    """The reference profile in the shape of :func:`window_counts` (so a rolling or seasonal reference, a sum
    of earlier windows, and the validation reference are used alike)."""
    n = reference.get("n_events", 0)
    return {
        "n_events": n, "codes": dict(reference["codes"]),
        "unknown": round(reference.get("unknown_share", 0.0) * n),
        "labs": {c: list(v["counts"]) for c, v in reference.get("labs", {}).items()},
        "scored": reference.get("points", 0), "missing": dict(reference.get("missing", {})),
    }  # fmt: skip


def code_psi(reference: dict, counts: dict) -> float:
    """PSI of the code shares; ``reference`` is a profile or a counts dict (the bins are the profile's)."""
    keys = list(reference["codes"])
    return psi([reference["codes"][k] for k in keys], [counts["codes"].get(k, 0) for k in keys])


def lab_psi(reference: dict, counts: dict) -> dict[str, tuple[float, int]]:
    """Per lab code: (PSI, number of values in the window); ``reference`` is a profile or a counts dict."""
    out = {}
    for code, ref in reference["labs"].items():
        ref_hist = ref["counts"] if isinstance(ref, dict) else ref
        hist = counts["labs"].get(code) or [0] * len(ref_hist)
        out[code] = (psi(ref_hist, hist), int(sum(hist)))
    return out


@dataclass(frozen=True, slots=True)
class Change:
    """One bin that moved: a code's share of the model's codes, or a lab's decile, before and after."""

    what: str
    before: float
    after: float
    contribution: float  # its term of the PSI sum

    def as_dict(self) -> dict:
        return {"what": self.what, "before": round(self.before, 5), "after": round(self.after, 5),
                "contribution": round(self.contribution, 5)}  # fmt: skip


def _shares(x: Sequence[float]) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a / a.sum() if a.sum() > 0 else a


def top_changes(names: Sequence[str], expected: Sequence[float], actual: Sequence[float], k: int = 5) -> list[Change]:
    """The ``k`` bins contributing most to PSI, with their reference and window shares."""
    e, a = _shares(expected), _shares(actual)
    fe, fa = np.maximum(e, PSI_FLOOR), np.maximum(a, PSI_FLOOR)
    terms = (fa - fe) * np.log(fa / fe)
    order = np.argsort(-terms, kind="stable")[:k]
    return [Change(str(names[i]), float(e[i]), float(a[i]), float(terms[i])) for i in order if terms[i] > 0]


def lab_bins(edges: Sequence[float]) -> list[str]:
    """Names of a lab's decile bins: ``<= 0.8``, ``(0.8, 0.9]``, ..., ``> 1.6``."""
    if not edges:
        return ["all values"]
    names = [f"<= {edges[0]:g}"] + [f"({lo:g}, {hi:g}]" for lo, hi in pairwise(edges)]
    return names + [f"> {edges[-1]:g}"]


def score_psi(reference: dict, scores: np.ndarray) -> float:
    ref = reference["scores"]
    return psi(ref["counts"], histogram(scores, ref["edges"]))


__all__ = [
    "OTHER", "Change", "build_reference", "code_psi", "histogram", "lab_bins", "lab_psi", "merge_counts",
    "missing_inputs", "noise_psi", "observation_events", "psi", "quantile_edges", "reference_counts",
    "score_psi", "top_changes", "window_counts",
]  # fmt: skip
