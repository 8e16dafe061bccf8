"""Batch jobs over a whole dataset: embedding export and risk scoring, one task per shard.

Each task reads one shard's subjects, finds their prediction points and writes one part file; parts are
joined in (subject_id, prediction_time) order. Tasks run here, on local processes or on Ray through
:class:`clinfm.engine.Engine`, always the same function, so every engine writes the same bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from clinfm import schema
from clinfm.engine import LOCAL, Engine, ProgressFn

if TYPE_CHECKING:
    from clinfm.tasks.config import TaskConfig

SID, PRED = schema.SUBJECT_ID, "prediction_time"
POINT_SCHEMA: dict[str, pl.DataType] = {SID: pl.Int64(), PRED: pl.Datetime("us")}
Shard = tuple[str, list[int]]  # a shard's parquet file and its subject ids


class BatchError(ValueError):
    """A batch job cannot start: a bad model reference, cohort or points file; the message says which."""


@dataclass(frozen=True, slots=True)
class Cohort:
    """Where a job's prediction points come from: a points file, one time for everyone, or a task's
    labeler (its prediction times). Exactly one is set."""

    points_file: str | None = None
    at: dt.datetime | None = None
    task: dict | None = None  # TaskConfig as JSON
    outcome_codes: tuple[str, ...] = ()  # the task's outcome codes resolved against the whole dataset

    def points(self, shard: Shard, events: pl.DataFrame | None = None) -> pl.DataFrame:
        """subject_id, prediction_time of one shard's subjects, sorted (``events``: the shard, when already read)."""
        if self.points_file is not None:
            ids = pl.Series(SID, shard[1], dtype=pl.Int64)
            frame = _read_points(self.points_file).filter(pl.col(SID).is_in(ids.implode()))
        else:
            events = pl.read_parquet(shard[0]) if events is None else events
            if self.at is not None:
                seen = events.filter(pl.col(schema.TIME) <= self.at)[SID].unique()
                frame = pl.DataFrame({SID: seen, PRED: [self.at] * len(seen)}, schema=POINT_SCHEMA)
            else:
                from clinfm.tasks.config import TaskConfig
                from clinfm.tasks.labelers import labeler_for

                task = TaskConfig.model_validate(self.task)
                frame = labeler_for(task).label(events, outcome_codes=list(self.outcome_codes)).labels
        return frame.select(SID, pl.col(PRED).cast(pl.Datetime("us"))).unique().sort(SID, PRED)


def _read_points(path: str | Path) -> pl.DataFrame:
    frame = (
        pl.read_parquet(path) if str(path).endswith(".parquet") else pl.read_csv(path, try_parse_dates=True)
    )
    missing = [c for c in (SID, PRED) if c not in frame.columns]
    if missing:
        raise BatchError(f"points file {str(path)!r} lacks column(s) {missing}; expected {SID}, {PRED}")
    return frame.select(pl.col(SID).cast(pl.Int64), pl.col(PRED).cast(pl.Datetime("us")))


def task_cohort(task: TaskConfig, dataset_dir: str | Path) -> Cohort:
    """A task's prediction times on a dataset, its outcome codes resolved once against every code of it."""
    from clinfm.tasks.config import check_codes

    codes: list[str] = []
    if task.outcome.codes:
        scan = pl.scan_parquet(Path(dataset_dir) / schema.DATA_DIR / "*.parquet").select(schema.CODE).unique()
        codes = check_codes(task, sorted(scan.collect()[schema.CODE].to_list()), Path(dataset_dir).name)
    return Cohort(task=task.model_dump(mode="json"), outcome_codes=tuple(codes))


@contextlib.contextmanager
def _torch_threads(n: int):
    """One intra-op thread per task, on every engine: results then do not depend on the thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- models --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model to score with: its kind (``count`` or ``fm``), run folder and, when registered, the file
    manifest every task checks before loading."""

    kind: str
    run_dir: str
    files: dict | None = None
    version_id: str | None = None
    task: dict | None = None  # a count model's own task
    org: str | None = None  # the registered version's organization


def resolve_model(ref: str | Path, db=None) -> ModelRef:
    """A run folder path or a registered version id -> :class:`ModelRef`."""
    path = Path(ref)
    version_id, files, org = None, None, None
    if not path.exists():
        from clinfm.govern.registry import get_model

        try:
            version = get_model(str(ref), db=db)
        except LookupError as exc:
            raise BatchError(
                f"model {str(ref)!r} is neither a run folder nor a registered version id"
            ) from exc
        path, version_id, files = Path(version.run_dir), version.id, version.artifacts.get("files") or None
        org = version.org_id
    if files:  # a registered version: its files must be the ones registered
        from clinfm.govern.registry import sha256_file

        changed = [n for n, f in files.items() if (path / n).is_file() and sha256_file(path / n) != f["sha256"]]
        if changed:
            raise BatchError(f"run folder {str(path)!r}: {changed} differ from version {version_id}'s SHA-256")
    if (path / "model.safetensors").exists():
        return ModelRef("fm", str(path), files, version_id, org=org)
    if (path / "model.txt").exists():
        meta = json.loads((path / "training_config.json").read_text())
        return ModelRef("count", str(path), files, version_id, meta["task_config"], org)
    raise BatchError(
        f"{str(path)!r} holds neither model.safetensors (foundation model) nor model.txt (count model)"
    )


# --- the per-shard tasks ----------------------------------------------------------------------------------
def embed_shard(
    run_dir: str, dataset_dir: str, shard: Shard, cohort: Cohort, batch_size: int, out_file: str
) -> int:
    """Embed one shard's prediction points with :func:`clinfm.model.embed.embed`; returns the row count."""
    from clinfm.model.embed import embed

    points = cohort.points(shard)
    with _torch_threads(1):
        frame = embed(run_dir, dataset_dir, list(points.iter_rows()), batch_size=batch_size)
    frame.write_parquet(out_file)
    return frame.height


def score_shard(
    model: ModelRef, dataset_dir: str, shard: Shard, cohort: Cohort, options: dict, out_file: str
) -> int:
    """Score one shard's prediction points with a count model or the foundation model's zero-shot risk."""
    if model.kind == "count":
        from clinfm.monitor.scorer import load_scorer

        scorer = load_scorer(model.run_dir, model.files)
        events = pl.read_parquet(shard[0])  # read once: the cohort and the features both need it
        points = cohort.points(shard, events)
        scores: list[float] | np.ndarray = scorer.score(events, points) if points.height else []
    else:
        from clinfm.tasks.config import TaskConfig
        from clinfm.validate.models import FMZeroShot

        points = cohort.points(shard)
        task = TaskConfig.model_validate(options["task"])
        fm = FMZeroShot(model.run_dir, dataset_dir, task, seed=options["seed"], n_samples=options["samples"])
        with _torch_threads(1):
            scores = fm.fit([], np.array([])).predict_proba(list(points.iter_rows())) if points.height else []
    points.with_columns(pl.Series("score", scores, dtype=pl.Float64)).write_parquet(out_file)
    return points.height


# --- running a job -----------------------------------------------------------------------------------------
def _run(fn: Callable[..., int], lead: tuple, trail: tuple, dataset_dir: str | Path, out: str | Path,
         engine: Engine, progress: ProgressFn | None) -> pl.DataFrame:  # fmt: skip
    """Map ``fn(*lead, shard, *trail, part_file)`` over the dataset's shards, then join the parts
    into ``out`` (written atomically)."""
    from clinfm.data.store import SubjectDatabase

    dataset_dir, out = Path(dataset_dir), Path(out)
    shards = [
        (str(f), ids) for f, ids in SubjectDatabase(dataset_dir).shards() if ids
    ]  # builds the cache once
    parts = out.parent / f".{out.name}.parts"
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    try:
        files = [str(parts / f"{i:05d}.parquet") for i in range(len(shards))]
        args = [(*lead, shard, *trail, f) for shard, f in zip(shards, files)]
        with engine.session():
            engine.map(fn, args, progress)
        frame = pl.concat([pl.read_parquet(f) for f in files], how="vertical").sort(SID, PRED)
        tmp = parts / "joined.parquet"
        frame.write_parquet(tmp)
        tmp.replace(out)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return frame


def export_embeddings(
    run_dir: str | Path,
    dataset_dir: str | Path,
    cohort: Cohort,
    out: str | Path,
    *,
    batch_size: int = 32,
    engine: Engine = LOCAL,
    progress: ProgressFn | None = None,
) -> pl.DataFrame:
    """Embeddings (``last`` and ``mean`` hidden states) at every point of ``cohort``, written to ``out``."""
    if not (Path(run_dir) / "model.safetensors").exists():
        raise BatchError(f"{str(run_dir)!r} holds no model.safetensors: not a trained foundation-model run")
    lead, trail = (str(run_dir), str(dataset_dir)), (cohort, batch_size)
    return _run(embed_shard, lead, trail, dataset_dir, out, engine, progress)


def score_dataset(
    model: ModelRef,
    dataset_dir: str | Path,
    out: str | Path,
    *,
    task: TaskConfig | None = None,
    cohort: Cohort | None = None,
    samples: int = 32,
    seed: int = 0,
    engine: Engine = LOCAL,
    progress: ProgressFn | None = None,
    actor: str = "cli",
) -> pl.DataFrame:
    """Score every point of ``cohort`` (default: the task's prediction times) and write subject_id,
    prediction_time, score to ``out``. A count model brings its own task; the foundation model's zero-shot
    risk needs ``task`` (its outcome codes and horizon), rolled out ``samples`` times per point. Scoring a
    registered version leaves a ``batch.score`` entry in the audit log, by ``actor``."""
    from clinfm.tasks.config import TaskConfig

    if model.kind == "count":
        if task is not None:
            raise BatchError("a count model scores its own task; leave out --task")
        task = TaskConfig.model_validate(model.task)
    elif task is None:
        raise BatchError("the foundation model needs --task: its outcome codes and horizon define the risk")
    cohort = cohort or task_cohort(task, dataset_dir)
    options = {"task": task.model_dump(mode="json"), "samples": samples, "seed": seed}
    lead, trail = (model, str(dataset_dir)), (cohort, options)
    frame = _run(score_shard, lead, trail, dataset_dir, out, engine, progress)
    if model.version_id is not None:
        _audit_scoring(model, task, dataset_dir, out, frame, actor)
    return frame


def _audit_scoring(model: ModelRef, task: TaskConfig, dataset_dir, out, frame: pl.DataFrame, actor: str) -> None:
    """One audit entry per batch run of a registered version: who scored how many patients, with what, into
    which file (by hash); no subject ids or dates."""
    from clinfm.govern import audit
    from clinfm.govern.registry import sha256_file

    details = {
        "task": task.name, "dataset": Path(dataset_dir).name, "points": frame.height,
        "subjects": frame[SID].n_unique() if frame.height else 0, "output_sha256": sha256_file(Path(out)),
    }  # fmt: skip
    audit.record("batch.score", actor=actor, org=model.org, model_version_id=model.version_id,
                 purpose="batch scoring", details=details)  # fmt: skip
