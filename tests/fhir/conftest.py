"""A tiny hand-made MEDS dataset with one event of every resource kind, a SQLite governance database with keys
of several scopes, and the app over them."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clinfm import schema

D = dt.datetime
EVENTS = [
    # subject, time, code, numeric, text, unit
    (1001, None, "GENDER//F", None, None, None),
    (1001, D(1980, 5, 1), schema.BIRTH, None, None, None),
    (1001, D(2022, 12, 1), "ALLERGY//RxNorm//7980", None, None, None),
    (1001, D(2023, 1, 10, 8), "VISIT//IP//START", None, None, None),
    (1001, D(2023, 1, 10, 8, 30), "LOINC//8867-4", 88.0, None, "/min"),
    (1001, D(2023, 1, 10, 9), "LOINC//2823-3", 3.1, None, "mmol/L"),
    (1001, D(2023, 1, 10, 10), "SNOMED//44054006", None, None, None),
    (1001, D(2023, 1, 10, 11), "RxNorm//860975", None, None, None),
    (1001, D(2023, 1, 11, 9), "LOINC//2823-3", 3.4, None, "mmol/L"),
    (1001, D(2023, 1, 11, 10), "SNOMED//1225002", None, None, None),
    (1001, D(2023, 1, 12, 9), "LOINC//2823-3", 4.0, None, "mmol/L"),
    (1001, D(2023, 1, 12, 12), "NOTE//DISCHARGE", None, "Discharged home on metformin.", None),
    (1001, D(2023, 1, 12, 12), "VISIT//IP//END", None, None, None),
    (1001, D(2023, 3, 1), "CVX//140", None, None, None),
    (1002, None, "GENDER//M", None, None, None),
    (1002, D(1950, 1, 1), schema.BIRTH, None, None, None),
    (1002, D(2023, 2, 1, 7), "LOINC//2823-3", 5.1, None, "mmol/L"),
    (1003, None, "GENDER//F", None, None, None),
    (1003, D(1980, 5, 1), schema.BIRTH, None, None, None),
    (1003, D(2021, 6, 1), "LOINC//2345-7", 101.0, None, "mg/dL"),
    (1003, D(2021, 6, 2), "MIMIC_EMAR//Sodium Chloride 0.9%  Flush", None, "Flushed", None),
]
DESCRIPTIONS = {"LOINC//2823-3": "Potassium serum/plasma", "LOINC//8867-4": "Heart rate",
                "SNOMED//44054006": "Diabetes mellitus type 2", "SNOMED//1225002": "Radiography of humerus",
                "RxNorm//860975": "metformin 500 MG Oral Tablet"}  # fmt: skip

READ_SCOPES = [f"patient/{r}.rs" for r in ("Patient", "Observation", "Condition", "MedicationRequest", "Procedure",
               "AllergyIntolerance", "Encounter", "DocumentReference", "Immunization")]  # fmt: skip
WRITE_SCOPES = ["user/ServiceRequest.cru", "user/MedicationRequest.c", "user/Observation.c"]


def write_tiny(path: Path, deidentified: bool = True) -> Path:
    rows = sorted(EVENTS, key=lambda r: (r[0], r[1] is not None, r[1] or D(1900, 1, 1)))
    (path / "data").mkdir(parents=True)
    (path / "metadata").mkdir()
    cols = list(zip(*rows))
    table = schema.events_table(dict(zip(schema.EVENT_COLUMNS, [list(c) for c in cols])))
    schema.validate_events(table)
    pq.write_table(table, path / "data" / "0.parquet")
    import pyarrow as pa

    ids = sorted({r[0] for r in rows})
    pq.write_table(pa.table({schema.SUBJECT_ID: pa.array(ids, pa.int64()), "split": ["held_out", "train", "train"]},
                            schema=schema.SPLITS_SCHEMA), path / schema.SPLITS_FILE)  # fmt: skip
    codes = sorted({r[2] for r in rows})
    pq.write_table(pa.table({"code": codes, "description": [DESCRIPTIONS.get(c) for c in codes],
                             "parent_codes": [[] for _ in codes]}, schema=schema.CODES_SCHEMA), path / schema.CODES_FILE)  # fmt: skip
    meta = {"dataset_name": "tiny", "clinfm": {"source": "test", **({"deid": {"policy": "shift"}} if deidentified else {})}}
    (path / schema.DATASET_FILE).write_text(json.dumps(meta))
    (path / "metadata" / "code_domains.json").write_text(json.dumps({"SNOMED//1225002": "Procedure",
                                                                     "SNOMED//44054006": "Condition"}))  # fmt: skip
    return path


@dataclass
class Keys:
    read: str
    write: str
    patient_only: str
    other_org: str


@pytest.fixture(scope="session")
def fhir_governance(tmp_path_factory):
    from clinfm.govern import access as A

    home = tmp_path_factory.mktemp("fhir-govern")
    db = f"sqlite:///{home / 'registry.db'}"
    for org in ("demo", "other"):
        A.create_organization(org, actor="test", db=db)
        A.create_service_account(org, "svc", actor="test", db=db)

    def key(org: str, scopes: list[str]) -> str:
        return A.create_api_key(org, "svc", scopes, actor="test", rate_per_minute=100_000, db=db).key

    keys = Keys(read=key("demo", READ_SCOPES), write=key("demo", READ_SCOPES + WRITE_SCOPES),
                patient_only=key("demo", ["patient/Patient.rs"]), other_org=key("other", READ_SCOPES + WRITE_SCOPES))  # fmt: skip
    return {"db": db, "keys": keys}


@pytest.fixture()
def tiny(tmp_path) -> Path:
    return write_tiny(tmp_path / "tiny")


@pytest.fixture()
def fhir_app(tmp_path, tiny, fhir_governance):
    from clinfm.serve import create_app
    from clinfm.serve.settings import ServeSettings

    def build(dataset: Path = tiny, **overrides):
        values = dict(env="test", data_dir=tmp_path / "serve-data", dataset_path=dataset, dataset_org="demo",
                      database_url=fhir_governance["db"])  # fmt: skip
        values.update(overrides)
        return create_app(ServeSettings(**values))

    return build


@pytest.fixture()
def fhir_client(fhir_app):
    from fastapi.testclient import TestClient

    with TestClient(fhir_app()) as c:
        yield c
