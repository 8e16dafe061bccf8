"""A tiny MEDS dataset written directly in tmp_path: labs with values, ICD-10 hierarchy, visits and deaths."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from clinfm import schema
from clinfm.defaults import packaged

torch.set_num_threads(1)  # tiny models: more threads only add contention on a shared 2-core machine

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = packaged("models/fm-tiny.yaml")


def _subject_events(sid: int) -> list[tuple]:
    """A deterministic, learnable record: yearly visits with a lab, a diagnosis, a drug; some die."""
    start = dt.datetime(2010, 1, 1) + dt.timedelta(days=sid * 3)
    birth = start - dt.timedelta(days=365 * (30 + sid))
    ev = [
        (None, "GENDER//F" if sid % 2 else "GENDER//M", None),
        (None, "RACE//white", None),
        (birth, schema.BIRTH, None),
    ]
    for year in range(3 + sid % 3):
        t = start + dt.timedelta(days=365 * year)
        ev += [
            (t, "VISIT//IP//START" if sid % 4 == 0 else "VISIT//OP//START", None),
            (t, "LOINC//2160-0", 0.5 + (sid % 10) * 0.2 + year * 0.1),
            (t + dt.timedelta(hours=2), "ICD10CM//I50.9" if sid % 3 else "ICD10CM//E11.9", None),
            (t + dt.timedelta(hours=2), "RxNorm//860975", None),
            (t + dt.timedelta(days=1), "VISIT//IP//END" if sid % 4 == 0 else "VISIT//OP//END", None),
        ]
    if sid in (5, 10):  # two rare children of I50 (one each): together they make I50 frequent enough
        ev.append((t + dt.timedelta(days=30), "ICD10CM//I50.1" if sid == 5 else "ICD10CM//I50.2", None))
    if sid > 34:  # a code only held-out subjects have
        ev.append((t + dt.timedelta(days=40), "SNOMED//999999", None))
    if sid % 7 == 0:
        ev.append((t + dt.timedelta(days=60), schema.DEATH, None))
        ev.append((t + dt.timedelta(days=61), "RxNorm//860975", None))  # after death: dropped
    return ev


def write_tiny_meds(out: Path, n_subjects: int = 40) -> Path:
    rows = {c: [] for c in schema.EVENT_COLUMNS}
    for sid in range(1, n_subjects + 1):
        events = _subject_events(sid)
        events.sort(key=lambda e: (e[0] is not None, e[0] or dt.datetime.min))
        for t, code, value in events:
            rows[schema.SUBJECT_ID].append(sid)
            rows[schema.TIME].append(t)
            rows[schema.CODE].append(code)
            rows[schema.NUMERIC_VALUE].append(value)
            rows[schema.TEXT_VALUE].append(None)
            rows[schema.UNIT].append("mg/dL" if value is not None else None)
    (out / "data").mkdir(parents=True)
    (out / "metadata").mkdir()
    pq.write_table(schema.events_table(rows), out / "data" / "0.parquet")
    # held_out holds a code no train subject has: it must not enter the vocabulary
    splits = {sid: "train" if sid <= 28 else ("tuning" if sid <= 34 else "held_out") for sid in range(1, n_subjects + 1)}
    pq.write_table(
        pa.table({"subject_id": list(splits), "split": list(splits.values())}, schema=schema.SPLITS_SCHEMA),
        out / schema.SPLITS_FILE,
    )
    codes = sorted(set(rows[schema.CODE]) | {"ICD10CM//I50"})
    parents = [[p] if (p := schema.parent_code(c)) else [] for c in codes]
    pq.write_table(
        pa.table({"code": codes, "description": [f"desc of {c}" for c in codes], "parent_codes": parents},
                 schema=schema.CODES_SCHEMA),
        out / schema.CODES_FILE,
    )
    return out


@pytest.fixture(scope="session")
def tiny_meds(tmp_path_factory) -> Path:
    return write_tiny_meds(tmp_path_factory.mktemp("tiny") / "meds")


@pytest.fixture(scope="session")
def tiny_run(tiny_meds, tmp_path_factory) -> Path:
    """fm-tiny pretrained once on the tiny dataset (read-only for tests)."""
    from clinfm.model.train import pretrain

    out = tmp_path_factory.mktemp("run") / "tiny"
    pretrain(tiny_meds, TINY_CONFIG, out)
    return out
