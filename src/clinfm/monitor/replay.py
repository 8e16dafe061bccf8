"""Prospective replay: walk a dataset forward in time as if the model were live (silent mode on history).

At each step's moment ``t`` only events at or before ``t`` exist (each subject's record is cut at ``t``); the
task's prediction times in ``(t - every, t]`` are scored and stored with an input summary; the step's new events
of the population the model scores (the subjects of the task's cohort) are profiled for input drift, with the
missingness of the model's key inputs among the scored points; and an outcome is attached to a stored prediction once ``t`` has passed the end of
its outcome window. Which prediction times exist comes from the task's labeler run with hindsight, so cohort
exclusions that need the future (a stay's length, later follow-up) are applied as in validation.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from clinfm import schema
from clinfm.engine import ProgressFn
from clinfm.monitor.drift import missing_inputs, window_counts
from clinfm.monitor.labels import KNOWN_AT, labels_with_known_at
from clinfm.monitor.policy import MonitoringPolicy, load_policy
from clinfm.monitor.scorer import (
    CountScorer,
    Scorer,
    load_registered_scorer,
    observation_lookback,
    register_scorer,
    train_scorer,
)
from clinfm.monitor.store import InputWindow, PredictionRecord, PredictionStore, prediction_id
from clinfm.tasks.config import TaskConfig, load_task, parse_duration
from clinfm.tasks.labelers import LABEL, PRED, SID, load_events

log = logging.getLogger(__name__)

TIME, CODE = schema.TIME, schema.CODE


class LeakageError(AssertionError):
    """An event after the replay clock reached the scorer (a bug, never a data problem)."""


@dataclass(slots=True)
class ReplaySummary:
    model_version: str
    task: str
    start: dt.datetime
    end: dt.datetime
    every: dt.timedelta
    steps: int
    predictions: int
    outcomes_attached: int
    positives: int
    pending_outcomes: int
    input_events: int
    seconds: float
    registered_version: str | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(start=self.start.isoformat(), end=self.end.isoformat(), every=str(self.every),
                   seconds=round(self.seconds, 2))  # fmt: skip
        return out


def _step_moments(start: dt.datetime, end: dt.datetime, every: dt.timedelta) -> list[dt.datetime]:
    if every <= dt.timedelta(0):
        raise ValueError(f"every={every} must be a positive duration such as '7d'")
    if end <= start:
        raise ValueError(f"replay end {end} is not after start {start}")
    moments, t = [], start
    while t < end:
        t = min(t + every, end)
        moments.append(t)
    return moments


def _resolve_scorer(
    model: str | Scorer | None, dataset_dir: Path, task: TaskConfig, start: dt.datetime, events: pl.DataFrame,
    labels: pl.DataFrame, policy: MonitoringPolicy, seed: int, db,
) -> tuple[Scorer, str]:  # fmt: skip
    if model is None:
        scorer = train_scorer(dataset_dir, task, before=start, seed=seed, events=events, labels=labels,
                              reference=policy.reference)  # fmt: skip
        return scorer, f"{scorer.name}@{start:%Y-%m-%d}"
    if isinstance(model, str):
        scorer, version = load_registered_scorer(model, db=db)
        if scorer.task.name != task.name:
            raise ValueError(
                f"model version {model!r} was trained for task {scorer.task.name!r}, not {task.name!r}"
            )
        return scorer, version.id
    return model, model.name


def replay(
    dataset_dir: str | Path,
    model_version_or_scorer: str | Scorer | None,
    task: str | Path | TaskConfig,
    start: dt.datetime,
    end: dt.datetime,
    every: str | dt.timedelta = "7d",
    store: PredictionStore | str | Path | None = None,
    *,
    policy: MonitoringPolicy | str | Path | None = None,
    register_as: str | None = None,
    run_dir: str | Path | None = None,
    actor: str = "clinfm-replay",
    db=None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> ReplaySummary:
    """Replay ``task`` on ``dataset_dir`` from ``start`` to ``end`` in steps of ``every`` into ``store``.

    ``model_version_or_scorer``: a registered version id (its run folder is loaded and checked against the
    registry), a fitted scorer, or None to train count-feature LightGBM on the ``train`` subjects' labels known
    before ``start``. With ``register_as`` (and ``run_dir``) a freshly trained scorer is registered in ``draft``
    under that name, and the store keys its predictions by the new version id so ``monitor_report`` and
    ``attach_summary`` can follow. A re-run replaces the version's earlier replayed rows.
    """
    started = time.perf_counter()
    dataset_dir = Path(dataset_dir)
    task = task if isinstance(task, TaskConfig) else load_task(task)
    step = parse_duration(every) if isinstance(every, str) else every
    policy = load_policy(policy)
    store = store if isinstance(store, PredictionStore) else PredictionStore(store)
    moments = _step_moments(start, end, step)

    events = load_events(dataset_dir)
    truth = labels_with_known_at(task, dataset_dir, events)
    scorer, version = _resolve_scorer(model_version_or_scorer, dataset_dir, task, start, events, truth, policy,
                                      seed, db)  # fmt: skip
    registered = None
    if register_as is not None:
        if not isinstance(scorer, CountScorer) or run_dir is None:
            raise ValueError("register_as needs a trained count scorer and a run_dir to save it in")
        registered = register_scorer(scorer, run_dir, dataset_dir, actor=actor, name=register_as, db=db).id
        version = registered
    store.clear(version, "replay")
    store.set_reference(version, scorer.reference)
    vocabulary = scorer.vocabulary

    timed = events.filter(pl.col(TIME).is_not_null()).sort(TIME)
    times = timed[TIME]
    cohort = truth.filter((pl.col(PRED) > start) & (pl.col(PRED) <= end)).sort(PRED)
    # the population the model scores: the feed of the cohort's subjects (as the reference: the validation cohort)
    population = cohort[SID].unique().implode()
    key_inputs = list(scorer.reference.get("missing", {}))
    lookback = observation_lookback(task)
    pending: dict[str, tuple[bool, dt.datetime | None]] = {}
    n_pred = n_attached = n_pos = n_input = 0
    previous = start
    for k, moment in enumerate(moments, 1):
        # the record as it stood at `moment`: static rows and every event up to it
        visible_to = times.search_sorted(moment, side="right")
        visible = pl.concat([events.filter(pl.col(TIME).is_null()), timed.slice(0, visible_to)])
        since = times.search_sorted(previous, side="right")
        new_events = timed.slice(since, visible_to - since).filter(pl.col(SID).is_in(population))
        counts = window_counts(new_events, scorer.reference, vocabulary)
        n_input += new_events.height

        points = cohort.filter((pl.col(PRED) > previous) & (pl.col(PRED) <= moment))
        if points.height:
            latest = visible[TIME].max()
            if latest is not None and latest > moment:
                raise LeakageError(f"an event at {latest} is visible at replay moment {moment}")
            scores = scorer.score(visible, points.select(SID, PRED))
            summary = _input_summary(visible, points, vocabulary)
            records = []
            for row, p, (n_ev, n_unk) in zip(points.iter_rows(named=True), scores, summary):
                pid = prediction_id(version, row[SID], row[PRED])
                records.append(PredictionRecord(
                    id=pid, model_version=version, subject_id=row[SID], prediction_time=row[PRED], score=float(p),
                    outputs={"probability": float(p), "task": task.name}, n_events=n_ev, n_unknown_codes=n_unk,
                    withheld=True, recorded_at=row[PRED],
                ))  # fmt: skip
                pending[pid] = (bool(row[LABEL]), row[KNOWN_AT])
            n_pred += store.add_predictions(records)
            counts["scored"] = points.height
            counts["missing"] = missing_inputs(visible, points, key_inputs, lookback)
        store.add_input_window(InputWindow(version, previous, moment, counts))

        due = [
            (pid, y, known) for pid, (y, known) in pending.items() if known is not None and known <= moment
        ]
        if due:
            n_attached += store.attach_outcomes(due, attached_at=moment)
            n_pos += sum(y for _, y, _ in due)
            for pid, _, _ in due:
                del pending[pid]
        previous = moment
        if progress is not None:
            progress(k, len(moments))
    log.info("replay %s: %d steps, %d predictions, %d outcomes attached, %d pending",
             version, len(moments), n_pred, n_attached, len(pending))  # fmt: skip
    return ReplaySummary(
        model_version=version, task=task.name, start=start, end=end, every=step, steps=len(moments),
        predictions=n_pred, outcomes_attached=n_attached, positives=n_pos, pending_outcomes=len(pending),
        input_events=n_input, seconds=time.perf_counter() - started, registered_version=registered,
    )  # fmt: skip


def _input_summary(
    visible: pl.DataFrame, points: pl.DataFrame, vocabulary: set[str]
) -> list[tuple[int, int]]:
    """Per point: events in the subject's record at or before the prediction time, and how many of them carry a
    code the model cannot see."""
    keys = points.select(SID, PRED).with_row_index("row")
    timed = visible.filter(pl.col(TIME).is_not_null()).select(SID, TIME, CODE)
    hist = keys.join(timed, on=SID).filter(pl.col(TIME) <= pl.col(PRED))
    counts = hist.group_by("row").agg(
        pl.len().alias("n"), (~pl.col(CODE).is_in(list(vocabulary))).sum().alias("unknown")
    )
    full = keys.select("row").join(counts, on="row", how="left").sort("row").fill_null(0)
    return list(zip(full["n"].cast(int).to_list(), full["unknown"].cast(int).to_list()))


__all__ = ["LeakageError", "ReplaySummary", "replay"]
