"""Splits never put one subject on both sides."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from clinfm.tasks.config import load_task
from clinfm.tasks.labelers import label_dataset
from clinfm.tasks.splits import (
    SplitError,
    assert_subject_disjoint,
    cross_validation_folds,
    external_split,
    subject_split,
    temporal_split,
)
from tests.tasks.synthetic import T0, hospital


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    path = hospital(tmp_path_factory.mktemp("h"), n=90)
    return path, label_dataset(load_task("readmission_30d"), path).labels


def test_subject_temporal_and_cv_splits_are_disjoint(labeled):
    path, labels = labeled
    s = subject_split(labels, path)
    assert set(s["split"]) == {"train", "tuning", "test"}
    cutoff = T0 + dt.timedelta(days=150)
    t = temporal_split(labels, path, cutoff)
    assert t.filter(pl.col("split") == "test")["prediction_time"].min() >= cutoff
    assert t.filter(pl.col("split") != "test")["prediction_time"].max() < cutoff
    folds = cross_validation_folds(labels, path, k=3)
    tested = pl.concat([f.filter(pl.col("split") == "test") for f in folds])
    assert tested.height == labels.height and tested.select("subject_id", "prediction_time").is_unique().all()
    for frame in [s, t, *folds]:
        assert_subject_disjoint(frame)


def test_shared_subject_is_refused(labeled):
    path, labels = labeled
    bad = labels.with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0)
        .then(pl.lit("train"))
        .otherwise(pl.lit("test"))
        .alias("split")
    )
    with pytest.raises(SplitError, match="more than one split"):
        assert_subject_disjoint(bad)
    with pytest.raises(SplitError, match="occur in both datasets"):
        external_split(labels, labels, path)
    ext = external_split(labels, labels.with_columns(pl.col("subject_id") + 10_000), path)
    assert ext.filter(pl.col("source") == "test_dataset")["split"].unique().to_list() == ["test"]
