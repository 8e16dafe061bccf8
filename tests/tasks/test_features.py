"""Count features: windowed counts by hand, and no event after the prediction time reaches any input."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from clinfm.tasks.config import load_task
from clinfm.tasks.features import CountFeaturizer, subject_attributes
from clinfm.tasks.labelers import label_dataset, load_events
from tests.tasks.synthetic import T0, hospital, write_dataset

D = dt.timedelta(days=1)


def test_counts_per_window(tmp_path):
    rows = [
        (1, None, "GENDER//F"),
        (1, T0 - 3650 * D, "MEDS_BIRTH"),
        (1, T0 - 0.5 * D, "A"),
        (1, T0 - 3 * D, "A"),
        (1, T0 - 100 * D, "A"),
        (1, T0 - 10 * D, "B"),
        (2, T0 - 2 * D, "A"),
        (2, T0 - 2 * D, "B"),
    ]
    path = write_dataset(tmp_path / "ds", rows)
    events = load_events(path)
    points = pl.DataFrame({"subject_id": [1, 2], "prediction_time": [T0, T0]})
    f = CountFeaturizer().fit(events, points)
    X = f.transform(events, points).toarray()
    col = {n: i for i, n in enumerate(f.feature_names_)}
    assert [X[0, col[f"A@{w}"]] for w in ("1d", "7d", "30d", "365d", "all")] == [1, 2, 2, 3, 3]
    assert X[0, col["B@7d"]] == 0 and X[0, col["B@30d"]] == 1
    assert X[0, col["sex_female"]] == 1 and abs(X[0, col["age_years"]] - 3650 / 365.25) < 1e-6
    assert "GENDER//F@all" not in col  # seen at one point only (min_points=2)


def test_no_event_after_the_prediction_time_reaches_the_features(tmp_path):
    """Plant events after every prediction time (new codes, repeats of known ones, a death, a later stay):
    labels are recomputed identically and the feature matrix does not change by a single entry."""
    base = hospital(tmp_path / "base", n=60)
    events = load_events(base)
    task = load_task("in_hospital_mortality")
    labels = label_dataset(task, base, events).labels
    # after each subject's last prediction time (an event between two of them is legitimately seen by the later)
    planted = (
        labels.group_by("subject_id")
        .agg(pl.col("prediction_time").max())
        .select(
            "subject_id",
            (pl.col("prediction_time") + dt.timedelta(minutes=1)).alias("time"),
            pl.lit("SNOMED//RISK").alias("code"),
        )
    )
    future = pl.concat(
        [
            planted,
            planted.with_columns(pl.lit("SNOMED//FUTURE_ONLY").alias("code")),
            planted.with_columns(pl.col("time") + 400 * D, pl.lit("SNOMED//BACKGROUND").alias("code")),
        ]
    )
    leaked = pl.concat(
        [
            events,
            future.with_columns(
                pl.lit(None, pl.Float32).alias("numeric_value"),
                pl.lit(None, pl.String).alias("text_value"),
                pl.lit(None, pl.String).alias("unit"),
            ),
        ],
        how="diagonal_relaxed",
    )
    f = CountFeaturizer().fit(events, labels)
    clean, dirty = f.transform(events, labels), f.transform(leaked, labels)
    assert (clean != dirty).nnz == 0
    g = CountFeaturizer().fit(leaked, labels)  # the vocabulary cannot learn future-only codes either
    assert not any(n.startswith("SNOMED//FUTURE_ONLY") for n in g.feature_names_)
    assert (g.transform(leaked, labels) != f.transform(events, labels)).nnz == 0
    attrs = subject_attributes(leaked, labels)
    assert attrs.equals(subject_attributes(events, labels))
    assert np.isfinite(clean.toarray()).all()
