"""Labelers: one per task kind, each turning a dataset's events into ``(subject_id, prediction_time, label)``.

Output frames follow MEDS ``LabelSchema`` (``subject_id``, ``prediction_time``, ``boolean_value``). Every
labeler works on all subjects at once with polars and counts what each exclusion removed.
"""

from __future__ import annotations

import datetime as dt
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clinfm import schema
from clinfm.tasks.config import TaskConfig, _fmt, check_codes, match_codes

log = logging.getLogger(__name__)

SID, TIME, CODE, VALUE = schema.SUBJECT_ID, schema.TIME, schema.CODE, schema.NUMERIC_VALUE
PRED, LABEL = "prediction_time", "boolean_value"
LABEL_COLUMNS = (SID, PRED, LABEL)


@dataclass(slots=True)
class LabelingResult:
    """The labels of one task on one dataset, and how the cohort was reached."""

    task: str
    labels: pl.DataFrame  # subject_id, prediction_time, boolean_value
    candidates: int
    excluded: dict[str, int] = field(default_factory=dict)
    outcome_codes: list[str] = field(default_factory=list)

    @property
    def positives(self) -> int:
        return int(self.labels[LABEL].sum()) if self.labels.height else 0

    @property
    def negatives(self) -> int:
        return self.labels.height - self.positives

    def summary(self) -> dict:
        return {
            "task": self.task,
            "candidates": self.candidates,
            "excluded": self.excluded,
            "labels": self.labels.height,
            "subjects": self.labels[SID].n_unique() if self.labels.height else 0,
            "positives": self.positives,
            "negatives": self.negatives,
            "outcome_codes": self.outcome_codes,
        }


def load_events(dataset_dir: str | Path) -> pl.DataFrame:
    """Every event of a MEDS dataset (the shards are sorted by subject and time)."""
    return pl.read_parquet(Path(dataset_dir) / schema.DATA_DIR / "*.parquet")


def stays(events: pl.DataFrame, visit_types: list[str]) -> pl.DataFrame:
    """One row per visit of ``visit_types``: subject_id, admission, discharge (each START paired with the
    first END of the same type at or after it)."""
    frames = []
    for vt in visit_types:
        start = events.filter(pl.col(CODE) == schema.visit_code(vt, "START")).select(
            SID, pl.col(TIME).alias("admission")
        )
        end = events.filter(pl.col(CODE) == schema.visit_code(vt, "END")).select(
            SID, pl.col(TIME).alias("discharge")
        )
        joined = start.sort("admission").join_asof(
            end.sort("discharge"),
            left_on="admission",
            right_on="discharge",
            by=SID,
            strategy="forward",
            check_sortedness=False,
        )
        frames.append(joined.drop_nulls("discharge").with_columns(pl.lit(vt).alias("visit_type")))
    if not frames:
        return pl.DataFrame(
            schema={SID: pl.Int64, "admission": pl.Datetime("us"), "discharge": pl.Datetime("us")}
        )
    return pl.concat(frames).unique().sort(SID, "admission")


def first_time(events: pl.DataFrame, codes: list[str], alias: str) -> pl.DataFrame:
    """subject_id -> the first time any of ``codes`` occurs."""
    return (
        events.filter(pl.col(CODE).is_in(codes) & pl.col(TIME).is_not_null())
        .group_by(SID)
        .agg(pl.col(TIME).min().alias(alias))
    )


class Labeler(ABC):
    """Base: build candidate prediction times, apply the task's exclusions, attach the label."""

    def __init__(self, task: TaskConfig) -> None:
        self.task = task

    @abstractmethod
    def candidates(
        self, events: pl.DataFrame, outcome_codes: list[str]
    ) -> tuple[pl.DataFrame, dict[str, int]]:
        """Candidates: subject_id, prediction_time, boolean_value (+ helper columns), and exclusion counts."""

    def label(
        self, events: pl.DataFrame, dataset_name: str = "dataset", outcome_codes: list[str] | None = None
    ) -> LabelingResult:
        """Labels from ``events``. ``outcome_codes``: the outcome codes already resolved against the whole
        dataset (a job labelling one shard at a time passes them; a shard may lack some)."""
        if outcome_codes is None:
            codes = sorted(events[CODE].unique().to_list())
            outcome_codes = check_codes(self.task, codes, dataset_name) if self.task.outcome.codes else []
        frame, excluded = self.candidates(events, outcome_codes)
        n_candidates = frame.height + sum(excluded.values())
        frame = self._common_exclusions(events, frame, outcome_codes, excluded)
        labels = frame.select(SID, pl.col(PRED).cast(pl.Datetime("us")), pl.col(LABEL).cast(pl.Boolean))
        labels = labels.unique([SID, PRED], keep="first").sort(SID, PRED)
        result = LabelingResult(self.task.name, labels, n_candidates, excluded, outcome_codes)
        log.info("task %s: %d labels, %d positives", self.task.name, labels.height, result.positives)
        return result

    def _common_exclusions(
        self, events: pl.DataFrame, frame: pl.DataFrame, outcome_codes: list[str], excluded: dict[str, int]
    ) -> pl.DataFrame:
        ex = self.task.exclusions
        if ex.death_before_prediction:
            deaths = first_time(events, [schema.DEATH], "_x_death")
            frame = _drop(frame.join(deaths, on=SID, how="left"), pl.col("_x_death") <= pl.col(PRED),
                          "died at or before the prediction time", excluded)  # fmt: skip
        if ex.min_age is not None:
            births = first_time(events, [schema.BIRTH], "_x_birth")
            age = (pl.col(PRED) - pl.col("_x_birth")).dt.total_days() / 365.25
            frame = _drop(frame.join(births, on=SID, how="left"), age.fill_null(-1) < ex.min_age,
                          f"younger than {ex.min_age:g} years (or no birth date)", excluded)  # fmt: skip
        if ex.prior_outcome:
            prior = first_time(events, outcome_codes, "_x_first_outcome")
            frame = _drop(frame.join(prior, on=SID, how="left"), pl.col("_x_first_outcome") <= pl.col(PRED),
                          "outcome already present at the prediction time", excluded)  # fmt: skip
        if ex.require_history:
            frame = self._require_events(events, frame, excluded)
        if ex.require_follow_up and self.task.outcome_window.end is not None:
            last = (
                events.filter(pl.col(TIME).is_not_null())
                .group_by(SID)
                .agg(pl.col(TIME).max().alias("_x_last"))
            )
            end = pl.col(PRED) + self.task.outcome_window.end
            frame = _drop(frame.join(last, on=SID, how="left"), ~pl.col(LABEL) & (pl.col("_x_last") <= end),
                          "no follow-up past the outcome window (censored)", excluded)  # fmt: skip
        return frame

    def _require_events(
        self, events: pl.DataFrame, frame: pl.DataFrame, excluded: dict[str, int]
    ) -> pl.DataFrame:
        """Keep prediction times with at least one timed event (other than birth) in the observation window."""
        ow = self.task.observation_window
        timed = events.filter(pl.col(TIME).is_not_null() & (pl.col(CODE) != schema.BIRTH)).select(SID, TIME)
        keys = frame.select(SID, PRED).unique()
        hit = (
            keys.join(timed, on=SID)
            .filter(
                (pl.col(TIME) <= pl.col(PRED) + (ow.end or dt.timedelta(0)))
                & ((pl.col(TIME) > pl.col(PRED) + ow.start) if ow.start is not None else pl.lit(True))
            )
            .select(SID, PRED)
            .unique()
            .with_columns(pl.lit(True).alias("_x_has_history"))
        )
        frame = frame.join(hit, on=[SID, PRED], how="left")
        return _drop(
            frame, pl.col("_x_has_history").is_null(), "no event in the observation window", excluded
        )

    def _outcome_window(self, pred: pl.Expr, discharge: pl.Expr | None = None) -> tuple[pl.Expr, pl.Expr]:
        ow = self.task.outcome_window
        start = pred + (ow.start or dt.timedelta(0))
        if ow.until_discharge:
            if discharge is None:
                raise ValueError(
                    f"task {self.task.name!r}: outcome_window.until_discharge needs a stay-based anchor"
                )
            end = discharge if ow.end is None else pl.min_horizontal(discharge, pred + ow.end)
        else:
            end = pred + ow.end
        return start, end


def _drop(frame: pl.DataFrame, condition: pl.Expr, reason: str, excluded: dict[str, int]) -> pl.DataFrame:
    """Drop rows where ``condition`` holds (nulls keep the row) and count them under ``reason``."""
    keep = frame.filter(~condition.fill_null(False))
    excluded[reason] = excluded.get(reason, 0) + frame.height - keep.height
    # columns joined in only to decide an exclusion are named "_x_..." and go once it is applied
    return keep.select([c for c in keep.columns if not c.startswith("_x_")])


class _StayLabeler(Labeler):
    """Shared by tasks anchored on a hospital stay."""

    def _stays(self, events: pl.DataFrame, excluded: dict[str, int]) -> pl.DataFrame:
        pt = self.task.prediction_time
        s = stays(events, pt.visit_types)
        anchor = pl.col("discharge") if pt.anchor == "discharge" else pl.col("admission")
        s = s.with_columns((anchor + pt.offset).alias(PRED))
        if self.task.exclusions.min_stay is not None:
            s = s.with_columns(
                (pl.col("discharge") <= pl.col("admission") + self.task.exclusions.min_stay).alias("_x_short")
            )
            s = _drop(
                s, pl.col("_x_short"), f"stay of {_fmt(self.task.exclusions.min_stay)} or shorter", excluded
            )
        return s


class InpatientMortalityLabeler(_StayLabeler):
    """Death (``outcome.codes``, usually ``MEDS_DEATH``) after the prediction time and before discharge."""

    def candidates(self, events, outcome_codes):
        excluded: dict[str, int] = {}
        s = self._stays(events, excluded)
        deaths = events.filter(pl.col(CODE).is_in(outcome_codes)).select(SID, pl.col(TIME).alias("_death_t"))
        start, end = self._outcome_window(pl.col(PRED), pl.col("discharge"))
        hits = (
            s.join(deaths, on=SID)
            .filter((pl.col("_death_t") > start) & (pl.col("_death_t") <= end))
            .select(SID, PRED).unique().with_columns(pl.lit(True).alias(LABEL))
        )  # fmt: skip
        s = s.join(hits, on=[SID, PRED], how="left").with_columns(pl.col(LABEL).fill_null(False))
        return s, excluded


class ReadmissionLabeler(_StayLabeler):
    """At discharge: does another stay of the same types start within the outcome window?"""

    def candidates(self, events, outcome_codes):
        excluded: dict[str, int] = {}
        s = self._stays(events, excluded)
        if self.task.exclusions.in_hospital_death:
            deaths = first_time(events, [schema.DEATH], "_x_death")
            s = _drop(s.join(deaths, on=SID, how="left"), pl.col("_x_death") <= pl.col("discharge"),
                      "died in hospital", excluded)  # fmt: skip
        admissions = s.select(SID, pl.col("admission").alias("_next"))
        start, end = self._outcome_window(pl.col(PRED))
        hits = (
            s.join(admissions, on=SID)
            .filter((pl.col("_next") > start) & (pl.col("_next") <= end))
            .select(SID, PRED).unique().with_columns(pl.lit(True).alias(LABEL))
        )  # fmt: skip
        s = s.join(hits, on=[SID, PRED], how="left").with_columns(pl.col(LABEL).fill_null(False))
        return s, excluded


class LongLengthOfStayLabeler(_StayLabeler):
    """Is the stay longer than ``outcome.min_stay`` (known at discharge, predicted ``offset`` after admission)?"""

    def candidates(self, events, outcome_codes):
        excluded: dict[str, int] = {}
        s = self._stays(events, excluded)
        long = (pl.col("discharge") - pl.col("admission")) > self.task.outcome.min_stay
        return s.with_columns(long.alias(LABEL)), excluded


class NewDiagnosisLabeler(Labeler):
    """A first occurrence of one of ``outcome.codes`` in the outcome window (prior cases are excluded by
    ``exclusions.prior_outcome``), predicted at visits or on fixed index dates."""

    def candidates(self, events, outcome_codes):
        excluded: dict[str, int] = {}
        pt = self.task.prediction_time
        if pt.anchor == "index_dates":
            subjects = events.select(SID).unique()
            dates = pl.DataFrame({PRED: [d for d in pt.index_dates]}).with_columns(
                pl.col(PRED).cast(pl.Datetime("us"))
            )
            frame = subjects.join(dates, how="cross").with_columns(pl.col(PRED) + pt.offset)
            births = first_time(events, [schema.BIRTH], "_x_birth")
            frame = _drop(frame.join(births, on=SID, how="left"), pl.col("_x_birth") > pl.col(PRED),
                          "born after the index date", excluded)  # fmt: skip
        else:
            s = stays(events, pt.visit_types)
            anchor = pl.col("discharge") if pt.anchor == "discharge" else pl.col("admission")
            frame = s.select(SID, (anchor + pt.offset).alias(PRED)).unique()
        first = first_time(events, outcome_codes, "_first")
        start, end = self._outcome_window(pl.col(PRED))
        frame = frame.join(first, on=SID, how="left").with_columns(
            ((pl.col("_first") > start) & (pl.col("_first") <= end)).fill_null(False).alias(LABEL)
        )
        return frame.drop("_first"), excluded


class AbnormalNextLabLabeler(Labeler):
    """At each result of the lab, is the next result (within the outcome window) abnormal?

    Several results at one time count as one, with the most abnormal value. A result with no next one
    inside the outcome window gives no label (counted under its exclusion).
    """

    def candidates(self, events, outcome_codes):
        excluded: dict[str, int] = {}
        o = self.task.outcome
        of_lab = events.filter(pl.col(CODE).is_in(outcome_codes) & pl.col(TIME).is_not_null())
        labs = of_lab.filter(pl.col(VALUE).is_not_null())
        # counted in results, not prediction times: a lab without numbers (Eunomia) gives no labels at all
        excluded["results without a numeric value"] = of_lab.height - labs.height
        if o.unit is not None:
            labs = labs.filter(
                pl.col(schema.UNIT).is_null() | (pl.col(schema.UNIT).str.to_lowercase() == o.unit.lower())
            )
        worst = pl.col(VALUE).max() if o.above is not None else pl.col(VALUE).min()
        results = labs.group_by(SID, TIME).agg(worst.alias("_value")).sort(SID, TIME)
        results = results.with_columns(
            pl.col(TIME).shift(-1).over(SID).alias("_next_time"),
            pl.col("_value").shift(-1).over(SID).alias("_next"),
        ).rename({TIME: PRED})
        start, end = self._outcome_window(pl.col(PRED))
        in_window = (pl.col("_next_time") > start) & (pl.col("_next_time") <= end)
        results = _drop(
            results, ~in_window.fill_null(False), "no next result within the outcome window", excluded
        )
        abnormal = pl.lit(False)
        if o.above is not None:
            abnormal = abnormal | (pl.col("_next") > o.above)
        if o.below is not None:
            abnormal = abnormal | (pl.col("_next") < o.below)
        return results.with_columns(abnormal.alias(LABEL)), excluded


LABELERS: dict[str, type[Labeler]] = {
    "inpatient_mortality": InpatientMortalityLabeler,
    "readmission": ReadmissionLabeler,
    "long_length_of_stay": LongLengthOfStayLabeler,
    "new_diagnosis": NewDiagnosisLabeler,
    "abnormal_next_lab": AbnormalNextLabLabeler,
}


def labeler_for(task: TaskConfig) -> Labeler:
    return LABELERS[task.kind](task)


def label_dataset(
    task: TaskConfig, dataset_dir: str | Path, events: pl.DataFrame | None = None
) -> LabelingResult:
    """Label every subject of a MEDS dataset for ``task``."""
    events = load_events(dataset_dir) if events is None else events
    return labeler_for(task).label(events, Path(dataset_dir).name)


__all__ = [
    "LABELERS", "LABEL_COLUMNS", "Labeler", "LabelingResult", "label_dataset", "labeler_for", "load_events",
    "match_codes", "stays",
]  # fmt: skip
