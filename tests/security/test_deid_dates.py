"""``clinfm deid`` never writes a date a reader cannot hold: an event the shift would push past 9999-12-31 (or
before year 1) is dropped and counted in the report, and the de-identified dataset reads back (stats work)."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq

from clinfm import schema
from clinfm.data.dataset import validate_dataset
from clinfm.deid.structured import date_shift_days, deidentify_dataset

SECRET = b"s" * 32


def _dataset(root, rows):
    (root / "data").mkdir(parents=True)
    (root / "metadata").mkdir()
    cols = {c: [] for c in schema.EVENT_COLUMNS}
    for sid, time, code in sorted(rows):
        for col, value in zip(schema.EVENT_COLUMNS, (sid, time, code, None, None, None)):
            cols[col].append(value)
    pq.write_table(pa.table(cols, schema=schema.EVENT_SCHEMA), root / "data" / "0.parquet")
    for name, table in ((schema.CODES_FILE, pa.table({"code": ["MEDS_BIRTH", "LOINC/1"], "description": ["", ""],
                                                       "parent_codes": pa.array([[], []], pa.list_(pa.string()))})),):  # fmt: skip
        pq.write_table(table, root / name)
    ids = sorted({sid for sid, _, _ in rows})
    pq.write_table(pa.table({schema.SUBJECT_ID: ids, "split": ["train"] * len(ids)}, schema=schema.SPLITS_SCHEMA),
                   root / schema.SPLITS_FILE)  # fmt: skip
    (root / "metadata" / "dataset.json").write_text(json.dumps({"dataset_name": "edge", "clinfm": {"source": "test"}}))


def test_shift_past_year_9999_is_dropped_and_reported(tmp_path):
    late = next(s for s in range(1, 200) if date_shift_days(s, SECRET) > 0)
    early = next(s for s in range(1, 200) if date_shift_days(s, SECRET) < 0)
    src = tmp_path / "meds"
    _dataset(src, [(late, dt.datetime(1960, 1, 1), "MEDS_BIRTH"), (late, dt.datetime(9999, 12, 31), "LOINC/1"),
                   (early, dt.datetime(1, 1, 1), "LOINC/1"), (early, dt.datetime(2000, 1, 1), "LOINC/1")])  # fmt: skip
    validate_dataset(src)
    result = deidentify_dataset(src, tmp_path / "deid", SECRET, scrubber=None)
    table = pq.read_table(tmp_path / "deid" / "data").to_pylist()  # to_pylist needs every year in 1..9999
    assert all(r["time"] is None or 1 <= r["time"].year <= 9999 for r in table)
    assert len(table) == 2
    assert result.report["changed"]["events_dropped_date_out_of_range"] == 2
