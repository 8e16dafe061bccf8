"""OMOP CDM ingest: exact events from tiny CSV fixtures, every kind of bad record, Eunomia end to end."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from clinfm.data.dataset import build_dataset, validate_dataset
from clinfm.data.ingest import omop
from clinfm.engine import Engine

CONCEPTS = """concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code
8532,FEMALE,Gender,Gender,Gender,S,F
8507,MALE,Gender,Gender,Gender,S,M
8527,White,Race,Race,Race,S,5
201826,Type 2 diabetes mellitus,Condition,SNOMED,Clinical Finding,S,44054006
3004410,Hemoglobin A1c,Measurement,LOINC,Lab Test,S,4548-4
8554,percent,Unit,UCUM,Unit,S,%
1503297,metformin,Drug,RxNorm,Ingredient,S,6809
9201,Inpatient Visit,Visit,Visit,Visit,S,IP
"""


def write_cdm(folder: Path, **tables: str) -> Path:
    """Write OMOP CSV tables (header + rows) into ``folder``; a concept table is always included."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "concept.csv").write_text(CONCEPTS)
    for name, text in tables.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


PERSON = """person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,birth_datetime,race_concept_id,ethnicity_concept_id,race_source_value,ethnicity_source_value
1,8532,1960,5,17,,8527,0,white,nonhispanic
"""


def events_of(out: Path) -> list[dict]:
    df = pl.read_parquet(out / "data").sort("subject_id", "time", "code", nulls_last=False)
    return df.to_dicts()


def quarantine_of(out: Path) -> list[dict]:
    return pl.read_parquet(out / "quarantine.parquet").select("table", "locator", "reason").to_dicts()


def test_exact_events_from_a_tiny_cdm(tmp_path):
    cdm = write_cdm(
        tmp_path / "cdm",
        person=PERSON,
        visit_occurrence="visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_start_datetime,"
        "visit_end_date,visit_end_datetime\n10,1,9201,2020-01-02,2020-01-02 08:00:00,2020-01-05,\n",
        condition_occurrence="condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
        "condition_source_value\n20,1,201826,2020-01-03,E11.9\n",
        measurement="measurement_id,person_id,measurement_concept_id,measurement_date,measurement_datetime,"
        "value_as_number,unit_concept_id,unit_source_value\n30,1,3004410,2020-01-03,2020-01-03 09:30:00,7.2,8554,%\n",
        drug_exposure="drug_exposure_id,person_id,drug_concept_id,drug_exposure_start_date,drug_source_value\n"
        "40,1,1503297,2020-01-04,metformin 500\n",
    )
    out = tmp_path / "meds"
    summary = build_dataset(omop.plan(csv_dir=cdm), out)
    d = dt.datetime
    assert [(e["time"], e["code"], e["numeric_value"], e["unit"]) for e in events_of(out)] == [
        (None, "ETHNICITY//nonhispanic", None, None),
        (None, "GENDER//F", None, None),
        (None, "RACE//White", None, None),
        (d(1960, 5, 17), "MEDS_BIRTH", None, None),
        (d(2020, 1, 2, 8), "VISIT//IP//START", None, None),
        (d(2020, 1, 3), "SNOMED//44054006", None, None),
        (d(2020, 1, 3, 9, 30), "LOINC//4548-4", pytest.approx(7.2), "%"),
        (d(2020, 1, 4), "RxNorm//6809", None, None),
        (d(2020, 1, 5), "VISIT//IP//END", None, None),
    ]
    assert summary.quarantined == 0
    assert {t: c.as_dict() for t, c in summary.reconciliation.items()} == {
        "person": {"read": 1, "converted": 1, "quarantined": 0},
        "visit_occurrence": {"read": 1, "converted": 1, "quarantined": 0},
        "condition_occurrence": {"read": 1, "converted": 1, "quarantined": 0},
        "measurement": {"read": 1, "converted": 1, "quarantined": 0},
        "drug_exposure": {"read": 1, "converted": 1, "quarantined": 0},
    }
    codes = pl.read_parquet(out / "metadata/codes.parquet")
    assert codes.filter(pl.col("code") == "SNOMED//44054006")["description"].item() == "Type 2 diabetes mellitus"
    validate_dataset(out)


def test_every_kind_of_bad_record_is_quarantined_with_its_reason(tmp_path):
    cdm = write_cdm(
        tmp_path / "cdm",
        person=PERSON + "2,8507,1970,1,1,,0,0,,\nabc,8507,1970,1,1,,0,0,,\n3,8507,notayear,,,,0,0,,\n",
        condition_occurrence="condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
        "condition_source_value\n"
        "1,1,201826,2020-13-45,E11.9\n"  # a date that does not parse
        "2,,201826,2020-01-01,E11.9\n"  # no person
        "3,1,999999,2020-01-01,\n"  # unknown concept, no source value
        "4,1,999999,2020-01-01,LOCAL42\n"  # unknown concept with a source value: kept
        "5,1,201826,2020-01-01,E11.9\n",
        visit_occurrence="visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_end_date\n"
        "7,1,9201,2020-02-10,2020-02-01\n",  # ends before it starts
        death="person_id,death_date\n2,1969-06-01\n",  # before the birth in 1970
        measurement="person_id,measurement_date\n1,2020-01-01\n1,2020-01-02\n1,2020-01-03\n",  # missing columns
    )
    out = tmp_path / "meds"
    summary = build_dataset(omop.plan(csv_dir=cdm), out)
    q = quarantine_of(out)
    reasons = {(r["table"], r["locator"]): r["reason"] for r in q}
    assert reasons[("person", "row 3 (person_id=abc)")] == "person_id 'abc' is not an integer"
    assert "year_of_birth 'notayear' does not give a birth date" in reasons[("person", "row 4 (person_id=3)")]
    assert "condition_start_date '2020-13-45' is not a date" in reasons[("condition_occurrence", "row 1 (condition_occurrence_id=1)")]
    assert reasons[("condition_occurrence", "row 2 (condition_occurrence_id=2)")] == "person_id is empty (expected an integer)"
    assert "condition_concept_id '999999' is not in the concept table" in reasons[("condition_occurrence", "row 3 (condition_occurrence_id=3)")]
    assert "visit_end 2020-02-01 00:00:00 is before visit_start 2020-02-10" in reasons[("visit_occurrence", "row 1 (visit_occurrence_id=7)")]
    assert "missing required column(s) ['measurement_id', 'measurement_concept_id']" in reasons[("measurement", "table measurement")]
    death = reasons[("death", "subject 2")]
    assert "MEDS_DEATH at 1969-06-01 00:00:00 is before MEDS_BIRTH at 1970-01-01 00:00:00" in death
    # a rejected table is one row standing for its 3 records; every other row is one record
    records = {(r["table"], r["locator"]): r["records"] for r in pl.read_parquet(out / "quarantine.parquet").to_dicts()}
    assert records.pop(("measurement", "table measurement")) == 3 and set(records.values()) == {1}
    assert len(q) == 8 and summary.quarantined == 10 == sum(c.quarantined for c in summary.reconciliation.values())
    assert summary.reconciliation["measurement"].as_dict() == {"read": 3, "converted": 0, "quarantined": 3}
    recon = {t: c.as_dict() for t, c in summary.reconciliation.items()}
    assert recon["condition_occurrence"] == {"read": 5, "converted": 2, "quarantined": 3}
    assert recon["person"] == {"read": 4, "converted": 2, "quarantined": 2}
    assert recon["death"] == {"read": 1, "converted": 0, "quarantined": 1}
    assert all(c.balanced for c in summary.reconciliation.values())
    codes = {e["code"] for e in events_of(out)}
    assert "CONDITION_OCCURRENCE_SOURCE//LOCAL42" in codes and "MEDS_DEATH" not in codes
    meta = json.loads((out / "metadata/dataset.json").read_text())
    assert meta["clinfm"]["reconciliation"]["condition_occurrence"]["quarantined"] == 3
    assert meta["clinfm"]["row_counts"]["quarantined"] == 10  # source records, as the reconciliation counts


def test_eunomia_counts_reconcile_with_the_source_tables(eunomia_meds):
    con = duckdb.connect(str(omop.eunomia_path()), read_only=True)
    meta = json.loads((eunomia_meds / "metadata/dataset.json").read_text())["clinfm"]
    for table in ("person", "visit_occurrence", "condition_occurrence", "drug_exposure", "measurement",
                  "observation", "procedure_occurrence"):  # fmt: skip
        rows = con.execute(f"select count(*) from {table}").fetchone()[0]
        assert meta["reconciliation"][table] == {"read": rows, "converted": rows, "quarantined": 0}, table
    # Eunomia's death and note tables are a header row loaded as data: quarantined, not invented
    assert meta["reconciliation"]["death"] == {"read": 1, "converted": 0, "quarantined": 1}
    events = pl.read_parquet(eunomia_meds / "data")
    n_conditions = con.execute("select count(*) from condition_occurrence").fetchone()[0]
    # each condition row is one event; SNOMED also holds procedures and measurement codes
    assert events.filter(pl.col("code") == "MEDS_BIRTH").height == 2694
    assert events.height == meta["row_counts"]["events"] >= n_conditions
    assert validate_dataset(eunomia_meds).subjects == 2694
    # every other Eunomia table is listed with why it is not converted
    tables = {r[0].lower() for r in con.execute("SHOW TABLES").fetchall()}
    assert set(meta["not_converted"]) == tables - set(omop.TABLES) - {"concept"} and len(meta["not_converted"]) == 28
    assert meta["not_converted"]["observation_period"].startswith("observation spans")


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".clinfm-cache" not in p.parts
    }


def test_rerunning_gives_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, b = tmp_path / "a", tmp_path / "b"
    build_dataset(omop.plan(), a, engine=Engine(workers=2))
    build_dataset(omop.plan(), b)
    assert _digest(a) == _digest(b)


def _exploding_convert(task):
    yield from omop.convert(task)
    if task.table == "drug_exposure":
        raise RuntimeError("simulated crash in the middle of a run")


def test_a_failed_run_leaves_the_previous_dataset_intact(tmp_path, eunomia_meds):
    import shutil

    out = tmp_path / "meds"
    shutil.copytree(eunomia_meds, out)
    before = _digest(out)
    plan = omop.plan()
    broken = type(plan)(plan.source, plan.source_path, plan.tasks, _exploding_convert, plan.input_bytes)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_dataset(broken, out)
    assert _digest(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["meds"]  # no half-written folder left behind
