"""FHIR ingest does not merge what it cannot trust: conflicting duplicate Patients, references to patients the
export does not hold, and references to another server are quarantined with a reason, never folded into a subject."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from clinfm import schema
from clinfm.data.dataset import build_dataset
from clinfm.data.ingest import fhir


def _obs(oid: str, ref: str) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": ref},
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "effectiveDateTime": "2020-01-01T00:00:00Z", "valueQuantity": {"value": 5.0, "unit": "mmol/L"}}  # fmt: skip


def _export(tmp_path):
    src = tmp_path / "fhir"
    src.mkdir()
    patients = [{"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-01-01"},
                {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-06-15"},
                {"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1960-01-01"}]  # fmt: skip
    obs = [_obs("o1", "Patient/p2"), _obs("o2", "Patient/ghost"), _obs("o3", "http://other.org/fhir/Patient/p2")]
    (src / "Patient.ndjson").write_text("\n".join(json.dumps(p) for p in patients) + "\n")
    (src / "Observation.ndjson").write_text("\n".join(json.dumps(o) for o in obs) + "\n")
    out = tmp_path / "meds"
    build_dataset(fhir.plan(src), out)
    events = pq.read_table(out / schema.DATA_DIR).to_pylist()
    quarantine = pq.read_table(out / schema.QUARANTINE_FILE).to_pylist()
    return events, quarantine


def test_conflicting_duplicate_patient_is_quarantined(tmp_path):
    events, quarantine = _export(tmp_path)
    p1 = fhir.subject_id("p1")
    births = [e for e in events if e["subject_id"] == p1 and e["code"] == schema.BIRTH]
    assert len(births) <= 1
    assert any("p1" in q["reason"] or str(p1) in q["locator"] + q["reason"] for q in quarantine
               if "conflict" in q["reason"])  # fmt: skip


def test_reference_to_a_patient_not_in_the_export_is_quarantined(tmp_path):
    events, quarantine = _export(tmp_path)
    assert not any(e["subject_id"] == fhir.subject_id("ghost") for e in events)
    assert any("no Patient" in q["reason"] for q in quarantine)


def test_reference_to_another_server_is_not_merged_into_the_local_patient(tmp_path):
    events, quarantine = _export(tmp_path)
    p2_labs = [e for e in events if e["subject_id"] == fhir.subject_id("p2") and e["code"].startswith("LOINC")]
    assert len(p2_labs) == 1
    assert any("another server" in q["reason"] for q in quarantine)
