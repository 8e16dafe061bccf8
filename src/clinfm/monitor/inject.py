"""Drift drills: a copy of a MEDS dataset where, from a given moment on, a lab changes assay (its values scaled)
or codes are recorded under new names (a site changing its code list), to rehearse that monitoring catches it.

Only the copy changes; the source dataset is read, never written. Metadata files are copied as they are.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from clinfm import schema


def inject_drift(
    source: str | Path,
    out: str | Path,
    after: dt.datetime,
    *,
    lab_scale: float = 1.0,
    lab_code: str | None = None,
    rename: dict[str, str] | None = None,
) -> Path:
    """Write to ``out`` a copy of ``source`` where, from ``after`` on, the values of ``lab_code`` are multiplied
    by ``lab_scale`` and the codes of ``rename`` are recorded under their new names; returns ``out``."""
    source, out = Path(source), Path(out)
    shards = sorted((source / "data").glob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"{str(source)!r} has no data/*.parquet shards: not a MEDS dataset")
    if out.exists():
        raise FileExistsError(f"{str(out)!r} exists: choose a new folder for the drifted copy")
    if lab_scale != 1.0 and lab_code is None:
        raise ValueError(f"lab_scale={lab_scale} needs the lab_code whose values to scale")
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("data"))
    (out / "data").mkdir()
    later = pl.col(schema.TIME) >= after
    scaled = later & (pl.col(schema.CODE) == lab_code) if lab_code is not None else pl.lit(False)
    for shard in shards:
        events = pl.read_parquet(shard).with_columns(
            pl.when(scaled)
            .then(pl.col(schema.NUMERIC_VALUE) * lab_scale)
            .otherwise(pl.col(schema.NUMERIC_VALUE))
            .alias(schema.NUMERIC_VALUE),
            pl.when(later)
            .then(pl.col(schema.CODE).replace(rename or {}))
            .otherwise(pl.col(schema.CODE))
            .alias(schema.CODE),
        )
        pq.write_table(events.to_arrow().cast(schema.EVENT_SCHEMA), out / "data" / shard.name)
    return out


__all__ = ["inject_drift"]
