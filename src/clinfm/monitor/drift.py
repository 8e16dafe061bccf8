"""Input and prediction drift: a reference profile of the training data, the same counts for each monitoring
window, and the population stability index (PSI) between them.

PSI = sum_i (a_i - e_i) ln(a_i / e_i) over bins with expected shares ``e`` (reference) and actual shares ``a``
(window), each floored at :data:`PSI_FLOOR`. Rule of thumb: < 0.1 stable, 0.1-0.2 moderate, > 0.2 a shift.
Codes: the reference's top-K codes plus one ``__other__`` bin. Labs: the reference deciles of ``numeric_value``
for its most frequent numeric codes. Scores: the reference deciles of the model's scores on held-out data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from clinfm import schema

SID, TIME, CODE, VALUE = schema.SUBJECT_ID, schema.TIME, schema.CODE, schema.NUMERIC_VALUE
OTHER = "__other__"
PSI_FLOOR = 1e-4


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
) -> dict[str, Any]:
    """The training data's profile: ``events`` are the reference window's events (training subjects, before
    the training cutoff), ``vocabulary`` the codes the model can see, ``scores`` its scores on held-out points."""
    timed = _timed(events)
    vocab = set(vocabulary)
    counts = timed.group_by(CODE).len().sort(["len", CODE], descending=[True, False])
    top = counts.head(top_codes)
    n = timed.height
    code_counts = dict(zip(top[CODE].to_list(), top["len"].to_list()))
    code_counts[OTHER] = n - sum(code_counts.values())
    known = timed.filter(pl.col(CODE).is_in(list(vocab))).height if vocab else 0
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
    top = [c for c in reference["codes"] if c != OTHER]
    codes = {c: int(by_code.get(c, 0)) for c in top}
    codes[OTHER] = int(timed.height - sum(codes.values()))
    unknown = int(sum(n for c, n in by_code.items() if c not in vocab))
    labs = {}
    for code, ref in reference["labs"].items():
        values = timed.filter((pl.col(CODE) == code) & pl.col(VALUE).is_not_null())[VALUE].to_numpy()
        labs[code] = histogram(values, ref["edges"])
    return {"n_events": int(timed.height), "codes": codes, "unknown": unknown, "labs": labs}


def merge_counts(windows: Sequence[dict]) -> dict:
    """Sum several windows' counts (weekly replay steps into one monitoring window)."""
    out: dict[str, Any] = {"n_events": 0, "codes": {}, "unknown": 0, "labs": {}}
    for w in windows:
        out["n_events"] += w["n_events"]
        out["unknown"] += w["unknown"]
        for c, n in w["codes"].items():
            out["codes"][c] = out["codes"].get(c, 0) + n
        for c, hist in w["labs"].items():
            prev = out["labs"].get(c)
            out["labs"][c] = list(hist) if prev is None else [a + b for a, b in zip(prev, hist)]
    return out


def code_psi(reference: dict, counts: dict) -> float:
    keys = list(reference["codes"])
    return psi([reference["codes"][k] for k in keys], [counts["codes"].get(k, 0) for k in keys])


def lab_psi(reference: dict, counts: dict) -> dict[str, tuple[float, int]]:
    """Per lab code: (PSI, number of values in the window)."""
    out = {}
    for code, ref in reference["labs"].items():
        hist = counts["labs"].get(code) or [0] * len(ref["counts"])
        out[code] = (psi(ref["counts"], hist), int(sum(hist)))
    return out


def score_psi(reference: dict, scores: np.ndarray) -> float:
    ref = reference["scores"]
    return psi(ref["counts"], histogram(scores, ref["edges"]))


__all__ = [
    "OTHER", "build_reference", "code_psi", "histogram", "lab_psi", "merge_counts", "psi", "quantile_edges",
    "score_psi", "window_counts",
]  # fmt: skip
