"""Tiny synthetic MEDS datasets for task and validation tests, written in tmp_path by the schema's rules."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clinfm import schema

T0 = dt.datetime(2010, 1, 1)


def write_dataset(
    path: Path, rows: list[tuple], splits: dict[int, str] | None = None, name: str = "synthetic", shards: int = 1
) -> Path:
    """rows: (subject_id, time | None, code, numeric_value | None); sorted and written as ``shards`` shards
    (subject_id modulo ``shards``, as ingest buckets them)."""
    rows = sorted(rows, key=lambda r: (r[0], r[1] is not None, r[1] or T0, r[2]))
    (path / "data").mkdir(parents=True, exist_ok=True)
    (path / "metadata").mkdir(parents=True, exist_ok=True)
    table = schema.events_table(
        {
            schema.SUBJECT_ID: [r[0] for r in rows],
            schema.TIME: [r[1] for r in rows],
            schema.CODE: [r[2] for r in rows],
            schema.NUMERIC_VALUE: [r[3] if len(r) > 3 else None for r in rows],
        }
    )
    bucket = table.column(schema.SUBJECT_ID).to_numpy() % shards
    for i in range(shards):
        pq.write_table(table.filter(pa.array(bucket == i)), path / "data" / f"{i}.parquet")
    ids = sorted({r[0] for r in rows})
    splits = splits or {
        s: ("held_out" if i % 3 == 0 else "tuning" if i % 7 == 1 else "train") for i, s in enumerate(ids)
    }
    pq.write_table(
        pa.table(
            {schema.SUBJECT_ID: pa.array(list(splits), pa.int64()), "split": list(splits.values())},
            schema=schema.SPLITS_SCHEMA,
        ),
        path / schema.SPLITS_FILE,
    )
    (path / schema.DATASET_FILE).write_text(
        json.dumps(
            {
                "dataset_name": name,
                "clinfm": {"source": "synthetic", "clinfm_version": "test", "deid": {"policy": "shift"}},
            }
        )
    )
    return path


def hospital(path: Path, n: int = 240, seed: int = 0, first_id: int = 1) -> Path:
    """Subjects with one inpatient stay each. ``SNOMED//RISK`` (at admission) makes death, long stays, a
    30-day readmission, a later heart-failure diagnosis and a high next potassium likely."""
    rng = np.random.default_rng(seed)
    rows: list[tuple] = []
    for sid in range(first_id, first_id + n):
        risky = rng.random() < 0.4
        admit = T0 + dt.timedelta(days=int(rng.integers(0, 300)))
        stay = dt.timedelta(
            days=int(rng.integers(9, 15) if (risky and rng.random() < 0.8) else rng.integers(2, 6))
        )
        rows += [
            (sid, None, "GENDER//F" if sid % 2 else "GENDER//M"),
            (sid, None, f"RACE//{'A' if sid % 3 else 'B'}"),
            (sid, admit - dt.timedelta(days=365 * int(30 + sid % 50)), schema.BIRTH),
            (sid, admit - dt.timedelta(days=30), "SNOMED//BACKGROUND"),
            (sid, admit, "VISIT//IP//START"),
            (sid, admit + stay, "VISIT//IP//END"),
        ]
        if risky:
            rows.append((sid, admit + dt.timedelta(hours=2), "SNOMED//RISK"))
        k0 = 5.0 if risky else 4.0
        rows.append((sid, admit + dt.timedelta(hours=3), "MIMIC_LAB//50971", k0))
        rows.append(
            (
                sid,
                admit + dt.timedelta(days=1, hours=3),
                "MIMIC_LAB//50971",
                k0 + (1.0 if risky and rng.random() < 0.7 else 0.0),
            )
        )
        dies = risky and rng.random() < 0.5
        if dies:
            rows.append((sid, admit + stay - dt.timedelta(hours=1), schema.DEATH))
            continue
        if risky and rng.random() < 0.7:
            re = admit + stay + dt.timedelta(days=10)
            rows += [(sid, re, "VISIT//IP//START"), (sid, re + dt.timedelta(days=2), "VISIT//IP//END")]
        if risky and rng.random() < 0.7:
            rows.append((sid, admit + stay + dt.timedelta(days=100), "ICD10CM//I50.9"))
        rows.append((sid, admit + stay + dt.timedelta(days=500), "SNOMED//FOLLOWUP"))
    return write_dataset(path, rows)
