"""Adopting an existing MEDS dataset: splits and descriptions kept, bad rows and bad files quarantined."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from clinfm.data.dataset import build_dataset, validate_dataset
from clinfm.data.ingest import meds


def test_adopting_a_clinfm_dataset_keeps_events_splits_and_descriptions(tmp_path, eunomia_meds):
    out = tmp_path / "adopted"
    summary = build_dataset(meds.plan(eunomia_meds), out, seed=99)  # a different seed must not reshuffle
    assert summary.quarantined == 0
    before = pl.read_parquet(eunomia_meds / "data")
    after = pl.read_parquet(out / "data")
    assert after.height == before.height == summary.events
    assert after.sort(after.columns, nulls_last=False).equals(before.sort(before.columns, nulls_last=False))
    assert pl.read_parquet(out / "metadata/subject_splits.parquet").equals(
        pl.read_parquet(eunomia_meds / "metadata/subject_splits.parquet")
    )
    codes = pl.read_parquet(out / "metadata/codes.parquet").drop_nulls("description")
    assert codes.height > 300
    validate_dataset(out)


def test_bad_rows_and_files_are_quarantined(tmp_path):
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    good = pa.table({
        "subject_id": pa.array([1, 1, None], pa.int64()),
        "time": pa.array([None, dt.datetime(2001, 1, 1), dt.datetime(2001, 1, 2)], pa.timestamp("us")),
        "code": ["GENDER//F", "", "LOINC//2160-0"],
        "numeric_value": pa.array([None, None, 1.1], pa.float32()),
    })  # fmt: skip
    pq.write_table(good, src / "data" / "0.parquet")
    pq.write_table(pa.table({"patient": [1, 2, 3], "code": ["X", "Y", "Z"]}), src / "data" / "1.parquet")
    (src / "data" / "2.parquet").write_bytes(b"not parquet at all")
    out = tmp_path / "out"
    summary = build_dataset(meds.plan(src), out)
    q = pl.read_parquet(out / "quarantine.parquet").sort("source_file", "locator").to_dicts()
    assert [(r["source_file"], r["locator"]) for r in q] == [
        ("data/0.parquet", "row 2"), ("data/0.parquet", "row 3"), ("data/1.parquet", "whole file"),
        ("data/2.parquet", "whole file"),
    ]  # fmt: skip
    assert q[0]["reason"] == "code is empty (expected VOCABULARY//value)"
    assert q[1]["reason"] == "subject_id null is not an int64"
    assert "missing required MEDS column(s) ['subject_id', 'time']" in q[2]["reason"]
    assert "not a readable Parquet file" in q[3]["reason"]
    # a refused file is one row standing for its rows (3); an unreadable one for the one record it is known to hold
    assert [r["records"] for r in q] == [1, 1, 3, 1]
    assert summary.reconciliation["data"].as_dict() == {"read": 7, "converted": 1, "quarantined": 6}
    assert summary.quarantined == 6
    assert pl.read_parquet(out / "data")["code"].to_list() == ["GENDER//F"]
