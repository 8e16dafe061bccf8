"""Adopt an existing MEDS dataset: validate every shard, re-shard by subject, keep its splits and codes.

Rows with a null subject id, code, or an unparseable type are quarantined; a shard that is not a MEDS
table at all (missing a required column, unreadable Parquet) is quarantined whole with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from clinfm import schema
from clinfm.data.ingest.base import IngestTask, RecordCounts, ShardOutput, SourcePlan

BATCH_ROWS = 1_000_000
TABLE = "data"


def plan(path: str | Path) -> SourcePlan:
    """Plan the adoption of the MEDS dataset at ``path`` (a folder with ``data/**/*.parquet``)."""
    root = Path(path)
    shards = sorted((root / schema.DATA_DIR).rglob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"{root / schema.DATA_DIR} holds no *.parquet file: not a MEDS dataset")
    tasks = [IngestTask(str(p.relative_to(root)), TABLE, options=(("root", str(root)),)) for p in shards]
    descriptions: dict[str, str] = {}
    codes = root / schema.CODES_FILE
    if codes.exists():
        df = pl.read_parquet(codes).select("code", "description").drop_nulls()
        descriptions = dict(zip(df["code"].to_list(), df["description"].to_list()))
    splits: dict[int, str] = {}
    splits_file = root / schema.SPLITS_FILE
    if splits_file.exists():
        df = pl.read_parquet(splits_file)
        splits = dict(zip(df[schema.SUBJECT_ID].to_list(), df["split"].to_list()))
    return SourcePlan(
        "meds", str(root), tasks, convert, sum(p.stat().st_size for p in shards), descriptions, splits
    )


def convert(task: IngestTask) -> Iterator[ShardOutput]:
    path = Path(str(task.option("root"))) / task.source_file
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # any unreadable file is one quarantined record, never a crash
        yield _rejected(task, "whole file", f"not a readable Parquet file ({type(exc).__name__}: {exc})", 1)
        return
    names = parquet.schema_arrow.names
    missing = [c for c in (schema.SUBJECT_ID, schema.TIME, schema.CODE) if c not in names]
    if missing:
        reason = f"missing required MEDS column(s) {missing}; columns found: {names}"
        yield _rejected(task, "whole file", reason, parquet.metadata.num_rows)
        return
    row = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        yield _convert_batch(task, schema.frame(batch), row)
        row += batch.num_rows


def _convert_batch(task: IngestTask, df: pl.DataFrame, first_row: int) -> ShardOutput:
    df = df.with_row_index("_row", offset=first_row + 1)
    for column in (schema.NUMERIC_VALUE, schema.TEXT_VALUE, schema.UNIT):
        if column not in df.columns:
            df = df.with_columns(pl.lit(None).alias(column))
    cast = df.select(
        "_row",
        pl.col(schema.SUBJECT_ID).cast(pl.Int64, strict=False).alias("sid"),
        pl.col(schema.SUBJECT_ID).cast(pl.String).alias("sid_raw"),
        pl.col(schema.TIME).cast(pl.Datetime("us"), strict=False).alias("t"),
        pl.col(schema.TIME).is_not_null().alias("t_given"),
        pl.col(schema.CODE).cast(pl.String),
        pl.col(schema.NUMERIC_VALUE).cast(pl.Float32, strict=False),
        pl.col(schema.TEXT_VALUE).cast(pl.String),
        pl.col(schema.UNIT).cast(pl.String),
    )
    reason = (
        pl.when(pl.col("sid").is_null())
        .then(pl.lit("subject_id ") + pl.col("sid_raw").fill_null("null") + pl.lit(" is not an int64"))
        .when(pl.col(schema.CODE).is_null() | (pl.col(schema.CODE) == ""))
        .then(pl.lit("code is empty (expected VOCABULARY//value)"))
        .when(pl.col("t").is_null() & pl.col("t_given"))
        .then(pl.lit("time is not a timestamp[us]"))
    )
    cast = cast.with_columns(reason.alias("reason"))
    bad = cast.filter(pl.col("reason").is_not_null())
    good = cast.filter(pl.col("reason").is_null())
    events = pa.table(
        {
            schema.SUBJECT_ID: good["sid"].to_arrow(),
            schema.TIME: good["t"].to_arrow(),
            schema.CODE: good[schema.CODE].to_arrow(),
            schema.NUMERIC_VALUE: good[schema.NUMERIC_VALUE].to_arrow(),
            schema.TEXT_VALUE: good[schema.TEXT_VALUE].to_arrow(),
            schema.UNIT: good[schema.UNIT].to_arrow(),
        }
    ).cast(schema.EVENT_SCHEMA)
    quarantine = schema.quarantine_table(task.source_file, TABLE, [f"row {r}" for r in bad["_row"].to_list()],
                                         bad["reason"].to_list())  # fmt: skip
    counts = {TABLE: RecordCounts(read=df.height, converted=good.height, quarantined=bad.height)}
    return ShardOutput(events, quarantine, counts)


def _rejected(task: IngestTask, locator: str, reason: str, n: int) -> ShardOutput:
    quarantine = schema.quarantine_table(task.source_file, TABLE, [locator], [reason], [n])
    return ShardOutput(schema.empty_events(), quarantine, {TABLE: RecordCounts(read=n, quarantined=n)})
