"""The subject database: a read-only mapping with fast single-subject access."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from clinfm.data.store import SubjectDatabase
from clinfm.schema import EVENT_SCHEMA


def test_store_is_a_mapping_of_subjects(eunomia_meds, tmp_path):
    db = SubjectDatabase(eunomia_meds, cache_dir=tmp_path / "cache")
    assert len(db) == 2694
    ids = list(db)
    assert ids == sorted(ids)
    sid = ids[100]
    expected = pl.read_parquet(eunomia_meds / "data").filter(pl.col("subject_id") == sid)
    subject = db[sid]
    assert subject.subject_id == sid
    assert len(subject.events) == expected.height
    assert [e.code for e in subject.events] == expected["code"].to_list()
    assert subject.events[0].time is None  # static events first
    assert subject.birth is not None and subject.death is None
    assert db.table(sid).schema == EVENT_SCHEMA
    assert sid in db and -5 not in db and "x" not in db
    with pytest.raises(KeyError, match="subject -5 is not in"):
        db[-5]
    assert set(db.splits().values()) == {"train", "tuning", "held_out"}


def test_cache_is_rebuilt_when_the_dataset_changes(eunomia_meds, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(eunomia_meds, copy, ignore=shutil.ignore_patterns(".clinfm-cache"))
    first = SubjectDatabase(copy)
    sid = next(iter(first))
    n = len(first[sid].events)
    shard = copy / "data" / "0.parquet"
    df = pl.read_parquet(shard)
    df.filter(pl.col("subject_id") != sid).write_parquet(shard)
    second = SubjectDatabase(copy)
    assert sid not in second and len(second) == len(first) - 1 and n > 0


def test_missing_dataset_says_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a MEDS dataset"):
        SubjectDatabase(tmp_path)
