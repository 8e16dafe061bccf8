"""Count features at a prediction time, as in EHRSHOT: how often each code occurred in several lookback
windows, plus age and sex, as a scipy sparse matrix. Only events at or before the prediction time count.

The prediction-time cut is the one guard against leakage for every count model: ``_history`` is the only
place events meet labels, and it keeps ``time <= prediction_time`` (static codes have no time and always
count).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import scipy.sparse as sp

from clinfm import schema

SID, TIME, CODE = schema.SUBJECT_ID, schema.TIME, schema.CODE
PRED = "prediction_time"

DEFAULT_WINDOWS: tuple[dt.timedelta | None, ...] = (
    dt.timedelta(days=1), dt.timedelta(days=7), dt.timedelta(days=30), dt.timedelta(days=365), None,
)  # fmt: skip
"""Lookback windows ``(prediction_time - w, prediction_time]``; ``None`` is all history."""


def _window_name(w: dt.timedelta | None) -> str:
    return "all" if w is None else f"{w.days}d" if w.days else f"{w.total_seconds() / 3600:g}h"


def history(events: pl.DataFrame, points: pl.DataFrame, lookback: dt.timedelta | None = None) -> pl.DataFrame:
    """Each point's (row, code, age of the event) for the timed events in ``(t - lookback, t]``.

    ``points`` holds subject_id and prediction_time; its row order defines ``row``.
    """
    keys = points.select(SID, PRED).with_row_index("row")
    timed = events.filter(pl.col(TIME).is_not_null() & (pl.col(CODE) != schema.BIRTH)).select(SID, TIME, CODE)
    pairs = keys.join(timed, on=SID).filter(pl.col(TIME) <= pl.col(PRED))
    if lookback is not None:
        pairs = pairs.filter(pl.col(TIME) > pl.col(PRED) - lookback)
    return pairs.select("row", CODE, (pl.col(PRED) - pl.col(TIME)).alias("age"))


class CountFeaturizer:
    """Codes counted in lookback windows, plus age (years) and sex; ``fit`` learns the code vocabulary
    from the training points only (codes seen before at least ``min_points`` training prediction times).

    >>> f = CountFeaturizer().fit(events, train_labels)          # doctest: +SKIP
    >>> X = f.transform(events, test_labels)                     # scipy.sparse.csr_matrix
    """

    def __init__(
        self, windows: tuple[dt.timedelta | None, ...] = DEFAULT_WINDOWS, min_points: int = 2,
        lookback: dt.timedelta | None = None,
    ) -> None:  # fmt: skip
        self.windows = windows
        self.min_points = min_points
        self.lookback = lookback  # the task's observation window: nothing older is seen at all

    def fit(self, events: pl.DataFrame, points: pl.DataFrame) -> CountFeaturizer:
        seen = history(events, points, self.lookback).select("row", CODE).unique()
        static = _static(events, points).select("row", CODE)
        counts = pl.concat([seen, static]).group_by(CODE).len()
        codes = counts.filter(pl.col("len") >= self.min_points).sort(CODE)[CODE].to_list()
        self.vocabulary_ = {c: i for i, c in enumerate(codes)}
        self.feature_names_ = ["age_years", "sex_female", "sex_male"] + [
            f"{c}@{_window_name(w)}" for c in codes for w in self.windows
        ]
        return self

    def transform(self, events: pl.DataFrame, points: pl.DataFrame) -> sp.csr_matrix:
        if not hasattr(self, "vocabulary_"):
            raise RuntimeError("CountFeaturizer is not fitted yet: call fit(events, train_points) first")
        n, n_win = points.height, len(self.windows)
        vocab = pl.DataFrame({CODE: list(self.vocabulary_), "col": list(self.vocabulary_.values())},
                             schema={CODE: pl.String, "col": pl.Int64})  # fmt: skip
        pairs = history(events, points, self.lookback).join(vocab, on=CODE)
        aggs = [
            (pl.len() if w is None else (pl.col("age") < w).sum()).cast(pl.Float64).alias(f"w{i}")
            for i, w in enumerate(self.windows)
        ]
        counts = pairs.group_by("row", "col").agg(aggs)
        rows, cols, vals = [], [], []
        for i in range(n_win):
            block = counts.filter(pl.col(f"w{i}") > 0)
            rows.append(block["row"].to_numpy())
            cols.append(3 + block["col"].to_numpy() * n_win + i)
            vals.append(block[f"w{i}"].to_numpy())
        static = _static(events, points).join(vocab, on=CODE)  # race, ethnicity: present in every window
        for i in range(n_win):
            rows.append(static["row"].to_numpy())
            cols.append(3 + static["col"].to_numpy() * n_win + i)
            vals.append(np.ones(static.height))
        demo = _demographics(events, points)
        for j, name in enumerate(("age_years", "sex_female", "sex_male")):
            rows.append(np.arange(n))
            cols.append(np.full(n, j))
            vals.append(demo[name].to_numpy().astype(np.float64))
        shape = (n, 3 + len(self.vocabulary_) * n_win)
        return sp.csr_matrix(
            (
                np.concatenate(vals),
                (np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)),
            ),
            shape=shape,
        )


def _static(events: pl.DataFrame, points: pl.DataFrame) -> pl.DataFrame:
    keys = points.select(SID).with_row_index("row")
    static = events.filter(pl.col(TIME).is_null()).select(SID, CODE).unique()
    return keys.join(static, on=SID).select("row", CODE)


def _demographics(events: pl.DataFrame, points: pl.DataFrame) -> pl.DataFrame:
    """Age in years at the prediction time (0 when unknown) and sex indicators, one row per point."""
    births = events.filter(pl.col(CODE) == schema.BIRTH).group_by(SID).agg(pl.col(TIME).min().alias("_birth"))
    sex = (
        events.filter(pl.col(CODE).str.starts_with("GENDER//"))
        .group_by(SID)
        .agg(pl.col(CODE).first().alias("_sex"))
    )
    return (
        points.select(SID, PRED).with_row_index("row")
        .join(births, on=SID, how="left").join(sex, on=SID, how="left")
        .sort("row")
        .select(
            ((pl.col(PRED) - pl.col("_birth")).dt.total_days() / 365.25).fill_null(0.0).alias("age_years"),
            (pl.col("_sex") == "GENDER//F").fill_null(False).alias("sex_female"),
            (pl.col("_sex") == "GENDER//M").fill_null(False).alias("sex_male"),
        )
    )  # fmt: skip


def subject_attributes(events: pl.DataFrame, points: pl.DataFrame) -> pl.DataFrame:
    """Per point: sex, age band and race/ethnicity, for subgroup analysis (never features of their own)."""
    static = events.filter(pl.col(TIME).is_null() | (pl.col(CODE) == schema.BIRTH))

    def first_of(prefix: str, alias: str) -> pl.DataFrame:
        return (
            static.filter(pl.col(CODE).str.starts_with(prefix))
            .group_by(SID)
            .agg(pl.col(CODE).sort().first().str.replace(f"^{prefix}", "").alias(alias))
        )

    births = static.filter(pl.col(CODE) == schema.BIRTH).group_by(SID).agg(pl.col(TIME).min().alias("_birth"))
    age = (pl.col(PRED) - pl.col("_birth")).dt.total_days() / 365.25
    band = (
        pl.when(age.is_null()).then(pl.lit("unknown"))
        .when(age < 18).then(pl.lit("0-17")).when(age < 45).then(pl.lit("18-44"))
        .when(age < 65).then(pl.lit("45-64")).when(age < 75).then(pl.lit("65-74"))
        .otherwise(pl.lit("75+"))
    )  # fmt: skip
    out = (
        points.select(SID, PRED).with_row_index("row")
        .join(first_of("GENDER//", "sex"), on=SID, how="left")
        .join(first_of("RACE//", "race"), on=SID, how="left")
        .join(first_of("ETHNICITY//", "ethnicity"), on=SID, how="left")
        .join(births, on=SID, how="left")
        .sort("row")
        .with_columns(band.alias("age_band"), age.alias("age"))
    )  # fmt: skip
    return out.select(
        "age", "age_band",
        pl.col("sex").fill_null("UNKNOWN"), pl.col("race").fill_null("UNKNOWN"),
        pl.col("ethnicity").fill_null("UNKNOWN"),
    )  # fmt: skip
