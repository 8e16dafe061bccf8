"""When each label becomes known: the end of its outcome window (``prediction_time + outcome_window.end``, or
the discharge of the stay for windows that close at discharge, whichever comes first).

Monitoring and retraining may only use an outcome once the clock has passed this moment; before it, the
label is a peek into the future.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from clinfm.tasks.config import TaskConfig
from clinfm.tasks.labelers import LABEL, PRED, SID, label_dataset, load_events, stays

KNOWN_AT = "known_at"


def labels_with_known_at(
    task: TaskConfig, dataset_dir: str | Path, events: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The task's labels on the whole dataset (hindsight), with ``known_at``: subject_id, prediction_time,
    boolean_value, known_at."""
    events = load_events(dataset_dir) if events is None else events
    labels = label_dataset(task, dataset_dir, events).labels
    ow, pt = task.outcome_window, task.prediction_time
    if not ow.until_discharge:
        return labels.with_columns((pl.col(PRED) + ow.end).alias(KNOWN_AT))
    anchor = pl.col("discharge") if pt.anchor == "discharge" else pl.col("admission")
    discharges = (
        stays(events, pt.visit_types)
        .select(SID, (anchor + pt.offset).cast(pl.Datetime("us")).alias(PRED), "discharge")
        .group_by(SID, PRED)
        .agg(pl.col("discharge").min())
    )
    out = labels.join(discharges, on=[SID, PRED], how="left")
    known = pl.col("discharge") if ow.end is None else pl.min_horizontal("discharge", pl.col(PRED) + ow.end)
    # a stay-based label always finds its stay; if not, known_at stays null and the label is never used
    return out.with_columns(known.cast(pl.Datetime("us")).alias(KNOWN_AT)).select(SID, PRED, LABEL, KNOWN_AT)


__all__ = ["KNOWN_AT", "labels_with_known_at"]
