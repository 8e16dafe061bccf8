"""Build a MEDS dataset from a source plan, atomically, and validate one on disk.

Two phases keep memory bounded by a shard: (1) each task's events are written to part files bucketed by
subject; (2) each bucket is sorted into one ``data/<i>.parquet``, so a subject never spans two shards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import meds
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from clinfm import __version__, schema
from clinfm.data.ingest.base import IngestTask, RecordCounts, ShardOutput, SourcePlan
from clinfm.engine import LOCAL, Engine, ProgressFn

SHARD_TARGET_BYTES = 256 * 2**20
"""About this much source input per output shard (sorting one shard must fit in memory)."""

SPLIT_FRACTIONS = {schema.TRAIN: 0.8, schema.TUNING: 0.1, schema.HELD_OUT: 0.1}

_SORT_KEYS = list(schema.EVENT_COLUMNS)
log = logging.getLogger(__name__)
_TABLE_COL = "_table"  # provenance of each event inside part files, dropped from the final shards


class IngestError(RuntimeError):
    """The run could not produce a consistent dataset; the previous dataset (if any) is untouched."""


@dataclass(slots=True)
class TaskResult:
    task: IngestTask
    counts: dict[str, RecordCounts]
    code_descriptions: dict[str, str]
    events: int
    quarantine_parts: list[str] = field(default_factory=list)


@dataclass(slots=True)
class DatasetSummary:
    """What a build or validation found, as stored in ``metadata/dataset.json``."""

    path: Path
    subjects: int
    events: int
    codes: int
    shards: int
    quarantined: int
    reconciliation: dict[str, RecordCounts]

    @property
    def balanced(self) -> bool:
        return all(c.balanced for c in self.reconciliation.values())



# --- phase 1: tasks -> bucketed part files -------------------------------------------------------------
def run_task(task: IngestTask, convert, parts_dir: str, n_buckets: int, task_index: int) -> TaskResult:
    """Convert one task and write its events into per-bucket part files. Same function for any engine."""
    counts: dict[str, RecordCounts] = {}
    descriptions: dict[str, str] = {}
    n_events, quarantine_parts = 0, []
    for batch_index, out in enumerate(convert(task)):
        tag = f"{task_index:06d}-{batch_index:05d}"
        n_events += _write_parts(out, Path(parts_dir), n_buckets, tag)
        if out.quarantine.num_rows:
            qpath = Path(parts_dir) / "quarantine" / f"{tag}.parquet"
            qpath.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(out.quarantine, qpath)
            quarantine_parts.append(str(qpath))
        for table, c in out.counts.items():
            counts.setdefault(table, RecordCounts()).add(c)
        for code, text in out.code_descriptions.items():
            descriptions.setdefault(code, text)
    return TaskResult(task, counts, descriptions, n_events, quarantine_parts)


def _write_parts(out: ShardOutput, parts_dir: Path, n_buckets: int, tag: str) -> int:
    events = out.events
    if events.num_rows == 0:
        return 0
    schema.validate_events(events)
    if out.event_tables is not None:
        tables = pl.Series(_TABLE_COL, out.event_tables, dtype=pl.String)
    else:  # one table per batch: the one that converted records
        majority = max(out.counts, key=lambda t: out.counts[t].converted) if out.counts else "unknown"
        tables = pl.Series(_TABLE_COL, [majority] * events.num_rows, dtype=pl.String)
    df = schema.frame(events).with_columns(tables, (pl.col(schema.SUBJECT_ID) % n_buckets).alias("_bucket"))
    for (bucket,), part in df.partition_by("_bucket", as_dict=True).items():
        path = parts_dir / f"bucket={bucket}" / f"{tag}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        part.drop("_bucket").write_parquet(path, compression="lz4")
    return events.num_rows


# --- phase 2: buckets -> sorted shards -----------------------------------------------------------------
def _merge_bucket(parts: list[Path], shard_path: Path, subject_table: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Sort one bucket into a shard; returns (per-subject summary, rows quarantined by subject checks)."""
    df = pl.concat([pl.read_parquet(p) for p in sorted(parts)], how="vertical")
    checks = [_check_subject_exists(subject_table)] if subject_table else []
    checks += [_check_one_birth, _check_birth_before_death]
    rejected_frames = []
    for check in checks:
        df, bad = check(df)
        if not bad.is_empty():
            rejected_frames.append(bad.select(schema.SUBJECT_ID, _TABLE_COL, "_reason"))
    rejected = pl.concat(rejected_frames) if rejected_frames else pl.DataFrame()
    df = df.sort(_SORT_KEYS, nulls_last=False, maintain_order=True)
    table = schema.events_table({c: [] for c in schema.EVENT_COLUMNS}) if df.is_empty() else None
    if table is None:
        table = df.select(schema.EVENT_COLUMNS).to_arrow().cast(schema.EVENT_SCHEMA)
    schema.validate_events(table)
    pq.write_table(table, shard_path, compression="zstd", row_group_size=100_000)
    return df.group_by(schema.SUBJECT_ID).len(), rejected


def _check_birth_before_death(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Death events dated before the subject's birth cannot both be right: quarantine the death."""
    births = df.filter(pl.col(schema.CODE) == schema.BIRTH).group_by(schema.SUBJECT_ID).agg(
        pl.col(schema.TIME).min().alias("_birth")
    )
    joined = df.with_row_index("_row").join(births, on=schema.SUBJECT_ID, how="left")
    bad = joined.filter((pl.col(schema.CODE) == schema.DEATH) & (pl.col(schema.TIME) < pl.col("_birth")))
    if bad.is_empty():
        return df, bad
    keep = joined.filter(~pl.col("_row").is_in(bad["_row"].implode())).drop("_row", "_birth")
    reasons = [f"{schema.DEATH} at {d} is before {schema.BIRTH} at {b} for subject {s}: birth after death"
               for s, d, b in zip(bad[schema.SUBJECT_ID], bad[schema.TIME], bad["_birth"])]  # fmt: skip
    bad = bad.with_columns(pl.Series("_reason", reasons, dtype=pl.String))
    return keep, bad


def _check_one_birth(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two different birth times for one subject (duplicate Patient records that disagree): neither can be trusted,
    so every birth event of that subject is quarantined."""
    births = df.filter(pl.col(schema.CODE) == schema.BIRTH)
    conflicted = births.group_by(schema.SUBJECT_ID).agg(pl.col(schema.TIME).n_unique().alias("_n")).filter(pl.col("_n") > 1)
    if conflicted.is_empty():
        return df, df.clear()
    is_bad = (pl.col(schema.CODE) == schema.BIRTH) & pl.col(schema.SUBJECT_ID).is_in(conflicted[schema.SUBJECT_ID].implode())
    bad = df.filter(is_bad).with_columns(pl.format("subject {} has conflicting birth dates from duplicate records "
                                                   "(conflict: none kept)", schema.SUBJECT_ID).alias("_reason"))  # fmt: skip
    return df.filter(~is_bad), bad


def _check_subject_exists(table: str) -> Callable[[pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]]:
    def check(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Events of subjects with no record in ``table``: referred to, never exported."""
        known = df.filter(pl.col(_TABLE_COL) == table)[schema.SUBJECT_ID].unique().implode()
        is_bad = ~pl.col(schema.SUBJECT_ID).is_in(known)
        bad = df.filter(is_bad).with_columns(pl.format(f"subject {{}} has no {table} record in the export: the "
                                                       "reference points to a patient that does not exist here",
                                                       schema.SUBJECT_ID).alias("_reason"))  # fmt: skip
        return df.filter(~is_bad), bad

    return check


def _rejections_as_quarantine(bad: pl.DataFrame) -> pa.Table:
    return schema.quarantine_table(
        "(cross-record check)", bad[_TABLE_COL].to_list(), [f"subject {s}" for s in bad[schema.SUBJECT_ID].to_list()],
        bad["_reason"].to_list(),
    )  # fmt: skip


# --- metadata ------------------------------------------------------------------------------------------
def assign_split(subject_id: int, seed: int = 0) -> str:
    """A subject's split from a seeded hash of its id: stable when subjects are added or shards change."""
    digest = hashlib.sha256(f"{seed}:{subject_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for split, fraction in SPLIT_FRACTIONS.items():
        edge += fraction
        if u < edge:
            return split
    return schema.HELD_OUT


def _codes_table(codes: Iterable[str], descriptions: dict[str, str]) -> pa.Table:
    all_codes = sorted(set(codes) | set(descriptions))
    parents = [[p] if (p := schema.parent_code(c)) else [] for c in all_codes]
    return pa.Table.from_pydict(
        {"code": all_codes, "description": [descriptions.get(c) for c in all_codes], "parent_codes": parents},
        schema=schema.CODES_SCHEMA,
    )


def _etl_time() -> str:
    """ETL time, or ``SOURCE_DATE_EPOCH`` when set, so a rebuild can be byte-identical throughout."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return moment.replace(microsecond=0).isoformat()


def _dataset_json(plan: SourcePlan, summary: DatasetSummary, seed: int) -> dict:
    created = _etl_time()
    meta = meds.DatasetMetadataSchema(
        dataset_name=Path(plan.source_path).name or plan.source,
        dataset_version=created,
        etl_name="clinfm",
        etl_version=__version__,
        meds_version=meds.__version__ if hasattr(meds, "__version__") else "0.4.1",
        created_at=created,
    ).to_dict()
    meta["clinfm"] = {
        "source": plan.source,
        "source_path": plan.source_path,
        "clinfm_version": __version__,
        "etl_time": created,
        "split_seed": seed,
        "not_converted": plan.not_converted,
        "row_counts": {
            "subjects": summary.subjects,
            "events": summary.events,
            "codes": summary.codes,
            "shards": summary.shards,
            "quarantined": summary.quarantined,
        },
        "reconciliation": {t: c.as_dict() for t, c in sorted(summary.reconciliation.items())},
    }
    return meta


# --- the build -----------------------------------------------------------------------------------------
def build_dataset(
    plan: SourcePlan,
    out_dir: str | Path,
    *,
    shards: int | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    engine: Engine = LOCAL,
) -> DatasetSummary:
    """Run ``plan`` and write a complete MEDS dataset to ``out_dir``, replacing it only on success.

    The tasks run on ``engine`` (this process, local processes or Ray), each the same top-level function, so
    the output is byte-identical whatever runs it.

    Output is assembled in a temporary sibling folder and renamed into place at the end, so a killed or
    failed run leaves any previous dataset at ``out_dir`` intact.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    n_buckets = shards or max(1, math.ceil(plan.input_bytes / SHARD_TARGET_BYTES))
    tmp = make_temp(out_dir)
    try:
        parts = tmp / "_parts"
        with engine.session():
            args = [(t, plan.convert, str(parts), n_buckets, i) for i, t in enumerate(plan.tasks)]
            results = engine.map(run_task, args, progress)
            summary = _assemble(plan, results, parts, tmp, n_buckets, seed, engine)
        shutil.rmtree(parts)
        validate_dataset(tmp)
        replace_atomically(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.path = out_dir
    return summary


def _assemble(
    plan: SourcePlan, results: list[TaskResult], parts: Path, tmp: Path, n_buckets: int, seed: int, engine: Engine,
) -> DatasetSummary:  # fmt: skip
    """Phase 2 (each bucket sorted into a shard, in parallel like phase 1) and the metadata."""
    reconciliation: dict[str, RecordCounts] = {}
    descriptions = dict(plan.code_descriptions)
    quarantine_parts: list[str] = []
    for r in results:
        for table, c in r.counts.items():
            reconciliation.setdefault(table, RecordCounts()).add(c)
        for code, text in r.code_descriptions.items():
            descriptions.setdefault(code, text)
        quarantine_parts += r.quarantine_parts

    (tmp / schema.DATA_DIR).mkdir()
    buckets = [b for b in (sorted((parts / f"bucket={i}").glob("*.parquet")) for i in range(n_buckets)) if b]
    merges = [(b, tmp / schema.DATA_DIR / f"{i}.parquet", plan.subject_table) for i, b in enumerate(buckets)]
    subject_frames, codes, rejected = [], set(), []
    for (per_subject, bad), (_, shard_path, _) in zip(engine.map(_merge_bucket, merges), merges):
        subject_frames.append(per_subject)
        codes |= set(pq.read_table(shard_path, columns=[schema.CODE]).column(0).unique().to_pylist())
        if not bad.is_empty():
            rejected.append(_rejections_as_quarantine(bad))
            for table in bad[_TABLE_COL].to_list():
                reconciliation[table].converted -= 1
                reconciliation[table].quarantined += 1

    quarantine = pa.concat_tables(
        [pq.read_table(p) for p in quarantine_parts] + rejected + [schema.QUARANTINE_SCHEMA.empty_table()]
    )
    pq.write_table(quarantine, tmp / schema.QUARANTINE_FILE)

    subjects = pl.concat(subject_frames) if subject_frames else pl.DataFrame({schema.SUBJECT_ID: []})
    subject_ids = sorted(subjects[schema.SUBJECT_ID].to_list())
    (tmp / "metadata").mkdir()
    splits = pa.Table.from_pydict(
        {schema.SUBJECT_ID: subject_ids, "split": [plan.subject_splits.get(s) or assign_split(s, seed) for s in subject_ids]},
        schema=schema.SPLITS_SCHEMA,
    )
    pq.write_table(splits, tmp / schema.SPLITS_FILE)
    pq.write_table(_codes_table(codes, descriptions), tmp / schema.CODES_FILE)

    summary = DatasetSummary(
        path=tmp,
        subjects=len(subject_ids),
        events=int(subjects["len"].sum()) if subject_frames else 0,
        codes=len(codes),
        shards=len(subject_frames),
        quarantined=quarantined_records(tmp),
        reconciliation=reconciliation,
    )
    unbalanced = {t: c.as_dict() for t, c in reconciliation.items() if not c.balanced}
    if unbalanced:
        raise IngestError(f"reconciliation does not hold (read != converted + quarantined): {unbalanced}")
    (tmp / schema.DATASET_FILE).write_text(json.dumps(_dataset_json(plan, summary, seed), indent=2) + "\n")
    return summary


IN_PROGRESS = ".in-progress"
"""A file in a folder being written (it holds the writer's pid): readers refuse the folder, the next run of a
writer removes it once that pid is gone."""


def make_temp(out_dir: Path) -> Path:
    """A fresh hidden sibling of ``out_dir`` to assemble output in, marked in progress; stale ones left by killed
    runs are removed first."""
    clean_stale_temp(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    (tmp / IN_PROGRESS).write_text(str(os.getpid()))
    return tmp


def clean_stale_temp(out_dir: Path) -> list[Path]:
    """Remove ``.<name>.tmp-*`` / ``.<name>.old-*`` folders beside ``out_dir`` whose writer is no longer running."""
    removed = []
    for folder in [*out_dir.parent.glob(f".{out_dir.name}.tmp-*"), *out_dir.parent.glob(f".{out_dir.name}.old-*")]:
        marker = folder / IN_PROGRESS
        try:
            pid = int(marker.read_text().strip()) if marker.exists() else None
        except (OSError, ValueError):
            pid = None
        if pid is not None and _running(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
        log.info("removed %s, left by an interrupted run", folder.name)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def refuse_in_progress(path: Path) -> None:
    """Raise when ``path`` is a folder a writer has not finished (or a killed run left half-written)."""
    if (path / IN_PROGRESS).exists() or ".tmp-" in path.name:
        raise ValueError(f"{path} is a half-written dataset (a run still writing it, or one that was killed): "
                         "read the finished dataset instead; the next run removes this folder")  # fmt: skip


def replace_atomically(tmp: Path, out_dir: Path) -> None:
    """Move a completed folder into place; the previous one is removed only after the rename."""
    (tmp / IN_PROGRESS).unlink(missing_ok=True)
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old)


# --- validation ----------------------------------------------------------------------------------------
def quarantined_records(path: str | Path) -> int:
    """Source records a dataset's quarantine holds: the sum of ``records`` (a whole-table rejection is one row
    standing for the table's row count); datasets written before that column count one per row."""
    q = Path(path) / schema.QUARANTINE_FILE
    if not q.exists():
        return 0
    if "records" not in pq.read_schema(q).names:
        return pq.read_metadata(q).num_rows
    return int(pl.scan_parquet(q).select(pl.col("records").sum()).collect().item() or 0)


def validate_dataset(path: str | Path) -> DatasetSummary:
    """Check a dataset on disk against MEDS and ClinFM's own rules; raise ``ValueError`` naming the problem.

    Rules: every shard passes ``meds.DataSchema``; rows are sorted by (subject_id, time) with static
    events first; no subject appears in two shards; codes, splits and dataset metadata pass their schemas;
    every subject has a split.
    """
    path = Path(path)
    shards = sorted((path / schema.DATA_DIR).glob("*.parquet"), key=lambda p: p.name)
    if not shards:
        raise ValueError(f"{path / schema.DATA_DIR} holds no *.parquet shard: not a MEDS dataset")
    seen: dict[int, str] = {}
    events = 0
    codes: set[str] = set()
    for shard in shards:
        table = pq.read_table(shard)
        try:
            meds.DataSchema.validate(table)
        except Exception as exc:
            raise ValueError(f"{shard} fails MEDS validation: {exc}") from exc
        df = schema.frame(table.select([schema.SUBJECT_ID, schema.TIME, schema.CODE]))
        keyed = df.select(
            pl.col(schema.SUBJECT_ID), pl.col(schema.TIME).is_not_null().alias("_timed"), pl.col(schema.TIME)
        )
        ordered = keyed.sort([schema.SUBJECT_ID, "_timed", schema.TIME], maintain_order=True, nulls_last=False)
        if not keyed.equals(ordered):
            raise ValueError(f"{shard} is not sorted by (subject_id, time)")
        for sid in df[schema.SUBJECT_ID].unique().to_list():
            if sid in seen:
                raise ValueError(f"subject {sid} appears in two shards: {seen[sid]} and {shard.name}")
            seen[sid] = shard.name
        events += table.num_rows
        codes |= set(df[schema.CODE].unique().to_list())
    for rel, meds_schema in ((schema.CODES_FILE, meds.CodeMetadataSchema), (schema.SPLITS_FILE, meds.SubjectSplitSchema)):
        if not (path / rel).exists():
            raise ValueError(f"{path / rel} is missing")
        try:
            meds_schema.validate(pq.read_table(path / rel))
        except Exception as exc:
            raise ValueError(f"{path / rel} fails MEDS validation: {exc}") from exc
    split_ids = set(pq.read_table(path / schema.SPLITS_FILE, columns=[schema.SUBJECT_ID]).column(0).to_pylist())
    missing = set(seen) - split_ids
    if missing:
        raise ValueError(f"{len(missing)} subjects have no split in {schema.SPLITS_FILE}, e.g. {min(missing)}")
    meta = json.loads((path / schema.DATASET_FILE).read_text()) if (path / schema.DATASET_FILE).exists() else {}
    if meta:
        known = {k: v for k, v in meta.items() if k in meds.DatasetMetadataSchema.__dataclass_fields__}
        meds.DatasetMetadataSchema(**known)
    clinfm_meta = meta.get("clinfm", {})
    reconciliation = {t: RecordCounts(**c) for t, c in clinfm_meta.get("reconciliation", {}).items()}
    return DatasetSummary(
        path=path,
        subjects=len(seen),
        events=events,
        codes=len(codes),
        shards=len(shards),
        quarantined=quarantined_records(path),
        reconciliation=reconciliation,
    )
