"""Train / tuning / test splits of a task's labels, always by subject: never one subject on both sides.

Three kinds: ``subject`` (the dataset's own ``metadata/subject_splits.parquet``), ``temporal`` (train
before a date, test after it) and ``external`` (train on one dataset, test on another).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from clinfm import schema

SID, PRED = schema.SUBJECT_ID, "prediction_time"
TRAIN, TUNING, TEST = schema.TRAIN, schema.TUNING, "test"


class SplitError(ValueError):
    """The split would put one subject on both sides, or leaves a side empty."""


def assert_subject_disjoint(labels: pl.DataFrame) -> None:
    """Raise :class:`SplitError` naming the subjects that appear in more than one split."""
    shared = labels.group_by(SID).agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1)
    if shared.height:
        raise SplitError(
            f"{shared.height} subject(s) are in more than one split, e.g. {shared[SID].head(3).to_list()}"
        )


def read_subject_splits(dataset_dir: str | Path) -> pl.DataFrame:
    path = Path(dataset_dir) / schema.SPLITS_FILE
    if not path.exists():
        raise SplitError(f"{path} is missing: the dataset has no subject splits")
    return schema.frame(pq.read_table(path)).select(pl.col(SID).cast(pl.Int64), "split")


def subject_split(labels: pl.DataFrame, dataset_dir: str | Path) -> pl.DataFrame:
    """The dataset's own split: train -> train, tuning -> tuning, held_out -> test."""
    splits = read_subject_splits(dataset_dir).with_columns(pl.col("split").replace({schema.HELD_OUT: TEST}))
    out = labels.join(splits, on=SID, how="left")
    missing = out.filter(pl.col("split").is_null())
    if missing.height:
        raise SplitError(
            f"{missing[SID].n_unique()} labelled subject(s) have no split, e.g. {missing[SID][0]}"
        )
    assert_subject_disjoint(out)
    return out


def temporal_split(labels: pl.DataFrame, dataset_dir: str | Path, cutoff: dt.datetime) -> pl.DataFrame:
    """Train on prediction times before ``cutoff``, test on those at or after it.

    A subject with prediction times on both sides stays in training and its later labels are dropped, so
    test subjects are unseen as well as later. The dataset's tuning subjects (before the cutoff) tune.
    """
    before = labels.filter(pl.col(PRED) < cutoff)
    seen = before.select(SID).unique()
    after = labels.filter(pl.col(PRED) >= cutoff).join(seen, on=SID, how="anti")
    tuning_ids = read_subject_splits(dataset_dir).filter(pl.col("split") == schema.TUNING).select(SID)
    before = before.join(
        tuning_ids.with_columns(pl.lit(TUNING).alias("split")), on=SID, how="left"
    ).with_columns(pl.col("split").fill_null(TRAIN))
    out = pl.concat([before, after.with_columns(pl.lit(TEST).alias("split"))]).sort(SID, PRED)
    assert_subject_disjoint(out)
    return out


def external_split(
    train_labels: pl.DataFrame, test_labels: pl.DataFrame, train_dataset_dir: str | Path
) -> pl.DataFrame:
    """All of ``test_labels`` (another dataset) is the test set; ``train_labels`` keep their own train/tuning
    split (held-out subjects of the training dataset are left out). Subject ids must not collide."""
    own = subject_split(train_labels, train_dataset_dir).filter(pl.col("split") != TEST)
    clash = own.select(SID).unique().join(test_labels.select(SID).unique(), on=SID)
    if clash.height:
        raise SplitError(f"{clash.height} subject id(s) occur in both datasets, e.g. {clash[SID][0]}: "
                         "cannot tell whether they are the same person")  # fmt: skip
    out = pl.concat([own.with_columns(pl.lit("train_dataset").alias("source")),
                     test_labels.with_columns(pl.lit(TEST).alias("split"), pl.lit("test_dataset").alias("source"))])  # fmt: skip
    assert_subject_disjoint(out)
    return out


def split_counts(labels: pl.DataFrame) -> dict[str, dict[str, int]]:
    """{split: {labels, subjects, positives}}."""
    rows = labels.group_by("split").agg(
        pl.len().alias("labels"),
        pl.col(SID).n_unique().alias("subjects"),
        pl.col("boolean_value").sum().alias("positives"),
    )
    return {
        r["split"]: {k: int(r[k]) for k in ("labels", "subjects", "positives")}
        for r in rows.iter_rows(named=True)
    }


def cross_validation_folds(
    labels: pl.DataFrame, dataset_dir: str | Path, k: int = 5, seed: int = 0
) -> list[pl.DataFrame]:
    """``k`` subject-level folds over all labelled subjects: in fold ``f`` the subjects hashed to ``f`` are the
    test set, the dataset's tuning subjects among the rest tune, and everyone else trains. Pooling the test
    predictions of all folds scores every label once (internal validation when the held-out split is too
    small, as on the 100-patient MIMIC-IV demo)."""
    if k < 2:
        raise SplitError(f"cross-validation needs k >= 2 folds, got k={k}")
    tuning_ids = read_subject_splits(dataset_dir).filter(pl.col("split") == schema.TUNING).select(SID)
    fold_of = (pl.col(SID).hash(seed) % k).alias("_fold")
    base = labels.with_columns(fold_of).join(
        tuning_ids.with_columns(pl.lit(True).alias("_tune")), on=SID, how="left"
    )
    folds = []
    for f in range(k):
        split = (
            pl.when(pl.col("_fold") == f).then(pl.lit(TEST))
            .when(pl.col("_tune").fill_null(False)).then(pl.lit(TUNING))
            .otherwise(pl.lit(TRAIN))
        )  # fmt: skip
        fold = base.with_columns(split.alias("split")).drop("_fold", "_tune")
        assert_subject_disjoint(fold)
        folds.append(fold)
    return folds
