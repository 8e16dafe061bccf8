"""FHIR R4 ingest: exact events for each resource kind, exact quarantine rows for each bad-record kind."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from clinfm import schema
from clinfm.data.ingest import fhir
from clinfm.data.ingest.base import RecordCounts
from clinfm.engine import Engine

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
SYNTHEA = sorted(FIXTURES.glob("synthea_patient_*.json"))

P1 = fhir.subject_id("p1")
T = dt.datetime(2020, 5, 1, 12, 0)
TS = "2020-05-01T12:00:00Z"


# --- helpers -------------------------------------------------------------------------------------------
@dataclass
class Converted:
    events: list[tuple] = field(default_factory=list)
    quarantine: list[tuple] = field(default_factory=list)
    counts: dict[str, RecordCounts] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)
    batches: int = 0


def run(path: Path, chunk_bytes: int = fhir.DEFAULT_CHUNK_BYTES) -> Converted:
    """Plan ``path`` and convert every task directly, merging the batches."""
    out = Converted()
    for task in fhir.plan(path, chunk_bytes).tasks:
        for batch in fhir.convert(task):
            schema.validate_events(batch.events)
            out.batches += 1
            for row in batch.events.to_pylist():
                num = row[schema.NUMERIC_VALUE]
                out.events.append(
                    (
                        row[schema.SUBJECT_ID],
                        row[schema.TIME],
                        row[schema.CODE],
                        None if num is None else round(num, 3),
                        row[schema.TEXT_VALUE],
                        row[schema.UNIT],
                    )
                )
            out.tables += batch.event_tables or []
            rows = batch.quarantine.to_pylist()
            out.quarantine += [(r["source_file"], r["table"], r["locator"], r["reason"]) for r in rows]
            for table, c in batch.counts.items():
                out.counts.setdefault(table, RecordCounts()).add(c)
                assert c.quarantined == sum(r["records"] for r in rows if r["table"] == table), table
            out.descriptions.update(batch.code_descriptions)
    assert all(c.balanced for c in out.counts.values()), out.counts
    return out


def counts(result: Converted) -> dict[str, tuple[int, int, int]]:
    return {t: (c.read, c.converted, c.quarantined) for t, c in result.counts.items()}


def ndjson(tmp_path: Path, *records: dict | bytes, name: str = "data.ndjson") -> Path:
    lines = [r if isinstance(r, bytes) else orjson.dumps(r) for r in records]
    path = tmp_path / name
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def convert_one(tmp_path: Path, resource: dict) -> Converted:
    return run(ndjson(tmp_path, resource))


def subj(ref: str = "Patient/p1") -> dict:
    return {"reference": ref}


def cc(system: str, code: str, display: str | None = None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


LOINC, SNOMED, RXNORM = (
    "http://loinc.org",
    "http://snomed.info/sct",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
)


# --- identifiers, times, vocabularies ------------------------------------------------------------------
def test_subject_id_keeps_canonical_integers_and_hashes_everything_else():
    assert fhir.subject_id("12345") == 12345
    assert fhir.subject_id("0") == 0
    uuid = "cdb486b4-716b-4e83-9e27-8a68620dd1fe"
    expected = int.from_bytes(hashlib.sha256(uuid.encode()).digest()[:8], "big") & (2**63 - 1)
    assert fhir.subject_id(uuid) == expected
    assert fhir.subject_id("007") != 7  # leading zeros are a different id, so they are hashed
    assert fhir.subject_id(str(2**63)) < 2**63  # too big for int64: hashed, still non-negative
    assert fhir.subject_id("-5") >= 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020", dt.datetime(2020, 1, 1)),
        ("2020-03", dt.datetime(2020, 3, 1)),
        ("2020-03-04", dt.datetime(2020, 3, 4)),
        ("2020-03-04T05:06:07Z", dt.datetime(2020, 3, 4, 5, 6, 7)),
        ("2020-03-04T05:06:07.886514+00:00", dt.datetime(2020, 3, 4, 5, 6, 7, 886514)),
        ("2020-03-04T23:00:00-05:00", dt.datetime(2020, 3, 5, 4, 0)),
        ("2020-03-04T05:06:07.123456789+01:00", dt.datetime(2020, 3, 4, 4, 6, 7, 123456)),
        ("2020-03-04T05:06:07", dt.datetime(2020, 3, 4, 5, 6, 7)),  # no offset: taken as UTC
    ],
)
def test_parse_datetime_accepts_fhir_dates_and_returns_naive_utc(text, expected):
    assert fhir.parse_datetime(text) == expected


@pytest.mark.parametrize(
    "text", ["2020-13-45", "20200304", "2020-3-4", "2020-03-04 05:06:07", "2020-W10", "", "2020-02-30"]
)
def test_parse_datetime_refuses_what_fhir_does_not_allow(text):
    with pytest.raises(ValueError):
        fhir.parse_datetime(text)


def test_local_vocabulary_is_named_after_the_system():
    assert fhir.local_vocabulary("http://www.acme.org/fhir/labs") == "FHIR_ACME_ORG_FHIR_LABS"
    assert fhir.local_vocabulary("urn:oid:1.2.3") == "FHIR_OID_1_2_3"
    assert fhir.local_vocabulary(None) == "FHIR_NOSYSTEM"


# --- one test per resource kind ------------------------------------------------------------------------
def test_patient_gives_birth_death_and_static_codes(tmp_path):
    race = {
        "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "extension": [
            {"url": "ombCategory", "valueCoding": {"code": "2106-3", "display": "White"}},
            {"url": "text", "valueString": "white"},
        ],
    }
    ethnicity = {
        "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
        "extension": [{"url": "text", "valueString": "non hispanic"}],
    }
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "gender": "female",
        "birthDate": "1960-07-15",
        "deceasedDateTime": "2021-01-02T03:04:05+01:00",
        "extension": [race, ethnicity],
    }
    out = convert_one(tmp_path, patient)
    assert out.events == [
        (P1, None, "GENDER//F", None, None, None),
        (P1, None, "RACE//White", None, None, None),
        (P1, None, "ETHNICITY//non hispanic", None, None, None),
        (P1, dt.datetime(1960, 7, 15), "MEDS_BIRTH", None, None, None),
        (P1, dt.datetime(2021, 1, 2, 2, 4, 5), "MEDS_DEATH", None, None, None),
    ]
    assert out.tables == ["Patient"] * 5
    assert counts(out) == {"Patient": (1, 1, 0)}


def test_patient_without_gender_or_birth_is_still_a_subject(tmp_path):
    out = convert_one(tmp_path, {"resourceType": "Patient", "id": "42"})
    assert out.events == [(42, None, "GENDER//UNKNOWN", None, None, None)]


@pytest.mark.parametrize(
    ("klass", "visit"),
    [
        ("IMP", "IP"),
        ("ACUTE", "IP"),
        ("NONAC", "IP"),
        ("EMER", "ER"),
        ("AMB", "OP"),
        ("HH", "HH"),
        ("OBSENC", "OBS"),
        ("VR", "OTHER"),
    ],
)
def test_encounter_class_maps_to_visit_start_and_end(tmp_path, klass, visit):
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": klass},
        "subject": subj(),
        "period": {"start": "2020-05-01T12:00:00Z", "end": "2020-05-03T08:30:00Z"},
    }
    out = convert_one(tmp_path, enc)
    assert out.events == [
        (P1, T, f"VISIT//{visit}//START", None, None, None),
        (P1, dt.datetime(2020, 5, 3, 8, 30), f"VISIT//{visit}//END", None, None, None),
    ]


def test_encounter_without_end_gives_only_start(tmp_path):
    enc = {"resourceType": "Encounter", "class": {"code": "EMER"}, "subject": subj(), "period": {"start": TS}}
    assert convert_one(tmp_path, enc).events == [(P1, T, "VISIT//ER//START", None, None, None)]


def test_condition_codes_by_vocabulary_with_recorded_date_fallback(tmp_path):
    path = ndjson(
        tmp_path,
        {
            "resourceType": "Condition",
            "subject": subj(),
            "onsetDateTime": TS,
            "code": cc("http://hl7.org/fhir/sid/icd-10-cm", "E11.9", "Type 2 diabetes"),
        },
        {
            "resourceType": "Condition",
            "subject": subj(),
            "recordedDate": "2020-05-02",
            "code": {
                "coding": [
                    {"system": "http://acme.org/dx", "code": "X1"},
                    {"system": SNOMED, "code": "44054006"},
                ]
            },
        },
        {
            "resourceType": "Condition",
            "subject": subj(),
            "onsetPeriod": {"start": "2019"},
            "code": cc("http://hl7.org/fhir/sid/icd-9-cm", "250.00"),
        },
        {
            "resourceType": "Condition",
            "subject": subj(),
            "onsetDateTime": TS,
            "code": cc("http://acme.org/dx", "X1"),
        },
    )
    out = run(path)
    assert out.events == [
        (P1, T, "ICD10CM//E11.9", None, None, None),
        (P1, dt.datetime(2020, 5, 2), "SNOMED//44054006", None, None, None),  # known vocabulary wins
        (P1, dt.datetime(2019, 1, 1), "ICD9CM//250.00", None, None, None),
        (P1, T, "FHIR_ACME_ORG_DX//X1", None, None, None),
    ]
    assert out.descriptions == {"ICD10CM//E11.9": "Type 2 diabetes"}


def test_observation_values_components_and_time_fallbacks(tmp_path):
    bp = {
        "resourceType": "Observation",
        "status": "final",
        "subject": subj(),
        "effectiveDateTime": TS,
        "code": cc(LOINC, "85354-9", "Blood pressure panel"),
        "component": [
            {"code": cc(LOINC, "8480-6", "Systolic"), "valueQuantity": {"value": 138.9, "unit": "mm[Hg]"}},
            {"code": cc(LOINC, "8462-4", "Diastolic"), "valueQuantity": {"value": 87, "code": "mm[Hg]"}},
        ],
    }
    path = ndjson(
        tmp_path,
        {
            "resourceType": "Observation",
            "subject": subj(),
            "effectiveDateTime": TS,
            "code": cc(LOINC, "2160-0", "Creatinine"),
            "valueQuantity": {"value": 1.25, "unit": "mg/dL"},
        },
        {
            "resourceType": "Observation",
            "subject": subj(),
            "effectivePeriod": {"start": "2020-05-02T00:00:00Z"},
            "code": cc(LOINC, "72166-2", "Tobacco smoking status"),
            "valueCodeableConcept": cc(SNOMED, "266919005", "Never smoked tobacco (finding)"),
        },
        {
            "resourceType": "Observation",
            "subject": subj(),
            "issued": "2020-05-03T00:00:00.000Z",
            "code": cc(LOINC, "8302-2"),
            "valueString": "about 170 cm",
        },
        {
            "resourceType": "Observation",
            "subject": subj(),
            "effectiveDateTime": TS,
            "code": cc(LOINC, "2345-7"),
            "valueQuantity": {"value": 40, "comparator": "<", "unit": "mg/dL"},
        },
        {
            "resourceType": "Observation",
            "subject": subj(),
            "effectiveDateTime": TS,
            "code": cc(LOINC, "1234-5"),
            "valueBoolean": False,
        },
        bp,
    )
    out = run(path)
    assert out.events == [
        (P1, T, "LOINC//2160-0", 1.25, None, "mg/dL"),
        (P1, dt.datetime(2020, 5, 2), "LOINC//72166-2", None, "Never smoked tobacco (finding)", None),
        (P1, dt.datetime(2020, 5, 3), "LOINC//8302-2", None, "about 170 cm", None),
        (P1, T, "LOINC//2345-7", 40.0, "<40", "mg/dL"),
        (P1, T, "LOINC//1234-5", None, "false", None),
        (P1, T, "LOINC//8480-6", 138.9, None, "mm[Hg]"),
        (P1, T, "LOINC//8462-4", 87.0, None, "mm[Hg]"),
    ]
    assert counts(out) == {"Observation": (6, 6, 0)}
    assert out.descriptions["LOINC//8480-6"] == "Systolic"
    assert "LOINC//85354-9" not in out.descriptions  # a panel without a value of its own is not an event


def test_medication_request_from_concept_contained_and_bundled_medication(tmp_path):
    med = {"resourceType": "Medication", "id": "m1", "code": cc(RXNORM, "860975", "metformin 500 MG")}
    contained = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "subject": subj(),
        "authoredOn": TS,
        "contained": [{"resourceType": "Medication", "id": "c1", "code": cc(RXNORM, "197361")}],
        "medicationReference": {"reference": "#c1"},
    }
    by_concept = {
        "resourceType": "MedicationRequest",
        "subject": subj(),
        "authoredOn": "2020-05-02",
        "medicationCodeableConcept": cc(RXNORM, "313820"),
    }
    by_bundle = {
        "resourceType": "MedicationRequest",
        "subject": subj("urn:uuid:pat-1"),
        "authoredOn": "2020-05-03",
        "medicationReference": {"reference": "urn:uuid:med-1"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:pat-1", "resource": {"resourceType": "Patient", "id": "p1"}},
            {"fullUrl": "urn:uuid:med-1", "resource": med},
            {"resource": contained},
            {"resource": by_concept},
            {"resource": by_bundle},
        ],
    }
    (tmp_path / "b.json").write_bytes(orjson.dumps(bundle))
    out = run(tmp_path / "b.json")
    assert out.events == [
        (P1, None, "GENDER//UNKNOWN", None, None, None),
        (P1, T, "RxNorm//197361", None, None, None),
        (P1, dt.datetime(2020, 5, 2), "RxNorm//313820", None, None, None),
        (P1, dt.datetime(2020, 5, 3), "RxNorm//860975", None, None, None),
    ]
    assert out.descriptions["RxNorm//860975"] == "metformin 500 MG"
    assert counts(out) == {
        "Patient": (1, 1, 0),
        "Medication": (1, 1, 0),
        "MedicationRequest": (3, 3, 0),
        "Bundle": (1, 1, 0),
    }


def test_medication_administration_procedure_immunization_allergy(tmp_path):
    path = ndjson(
        tmp_path,
        {
            "resourceType": "MedicationAdministration",
            "status": "completed",
            "subject": subj(),
            "effectivePeriod": {"start": TS},
            "medicationCodeableConcept": cc(RXNORM, "1535362"),
        },
        {
            "resourceType": "Procedure",
            "status": "completed",
            "subject": subj(),
            "performedPeriod": {"start": TS, "end": "2020-05-01T13:00:00Z"},
            "code": cc(SNOMED, "430193006"),
        },
        {
            "resourceType": "Procedure",
            "subject": subj(),
            "performedDateTime": TS,
            "code": cc("http://www.ama-assn.org/go/cpt", "99213"),
        },
        {
            "resourceType": "Immunization",
            "status": "completed",
            "patient": subj(),
            "occurrenceDateTime": TS,
            "vaccineCode": cc("http://hl7.org/fhir/sid/cvx", "140", "Influenza, seasonal"),
        },
        {
            "resourceType": "AllergyIntolerance",
            "patient": subj(),
            "onsetDateTime": "2019-01-01",
            "code": cc(RXNORM, "29046", "Lisinopril"),
        },
        {
            "resourceType": "AllergyIntolerance",
            "patient": subj(),
            "recordedDate": TS,
            "onsetDateTime": "2019",
            "code": cc(SNOMED, "300916003", "Latex allergy"),
        },
    )
    out = run(path)
    assert out.events == [
        (P1, T, "RxNorm//1535362", None, None, None),
        (P1, T, "SNOMED//430193006", None, None, None),
        (P1, T, "CPT4//99213", None, None, None),
        (P1, T, "CVX//140", None, None, None),
        (P1, dt.datetime(2019, 1, 1), "ALLERGY//RxNorm//29046", None, None, None),
        (P1, T, "ALLERGY//SNOMED//300916003", None, None, None),
    ]
    assert out.descriptions["ALLERGY//RxNorm//29046"] == "Lisinopril"
    assert out.tables == [
        "MedicationAdministration",
        "Procedure",
        "Procedure",
        "Immunization",
        "AllergyIntolerance",
        "AllergyIntolerance",
    ]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_diagnostic_report_and_document_reference_carry_their_text(tmp_path):
    note = "Discharged home.\nFollow up in 2 weeks. Ünïcode ok."
    path = ndjson(
        tmp_path,
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "subject": subj(),
            "effectiveDateTime": TS,
            "code": cc(LOINC, "24627-2", "Chest CT"),
            "conclusion": "No acute findings.",
        },
        {
            "resourceType": "DiagnosticReport",
            "subject": subj(),
            "issued": TS,
            "code": cc(LOINC, "11502-2"),
            "presentedForm": [{"contentType": "text/plain", "data": b64("Lab report text")}],
        },
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": subj(),
            "date": TS,
            "type": cc(LOINC, "18842-5", "Discharge summary"),
            "content": [
                {"attachment": {"contentType": "application/pdf", "data": b64("%PDF")}},
                {"attachment": {"contentType": "text/plain; charset=utf-8", "data": b64(note)}},
            ],
        },
        {
            "resourceType": "DocumentReference",
            "subject": subj(),
            "context": {"period": {"start": TS}},
            "type": cc(LOINC, "99999-9"),
            "content": [{"attachment": {"url": "http://docs/1"}}],
        },
        {
            "resourceType": "DocumentReference",
            "subject": subj(),
            "date": TS,
            "content": [{"attachment": {"data": b64("untyped note")}}],
        },
    )
    out = run(path)
    assert out.events == [
        (P1, T, "LOINC//24627-2", None, "No acute findings.", None),
        (P1, T, "LOINC//11502-2", None, "Lab report text", None),
        (P1, T, "NOTE//DISCHARGE", None, note, None),
        (P1, T, "NOTE//LOINC//99999-9", None, None, None),
        (P1, T, "NOTE//OTHER", None, "untyped note", None),
    ]
    assert out.descriptions["NOTE//DISCHARGE"] == "Discharge summary"


def test_non_event_types_are_converted_without_events(tmp_path):
    path = ndjson(
        tmp_path,
        {"resourceType": "Claim", "id": "c", "patient": subj()},
        {"resourceType": "Organization", "id": "o", "name": "General Hospital"},
        {"resourceType": "Provenance", "target": [subj()]},
    )
    out = run(path)
    assert out.events == [] and out.quarantine == []
    assert counts(out) == {"Claim": (1, 1, 0), "Organization": (1, 1, 0), "Provenance": (1, 1, 0)}
    assert {"Claim", "ExplanationOfBenefit", "CarePlan", "ImagingStudy", "Medication"} <= fhir.NON_EVENT_TYPES
    assert not fhir.NON_EVENT_TYPES & fhir.EVENT_TYPES
    assert not fhir.NON_EVENT_TYPES & fhir.UNMAPPED_CLINICAL_TYPES


def test_subject_references_in_every_accepted_form(tmp_path):
    # An absolute URL is another server's patient unless a Bundle entry's fullUrl names it (issue 18): never merged.
    refs = ["Patient/p1", "urn:uuid:p1", "Patient/p1/_history/3", "https://fhir.example.org/r4/Patient/p1"]
    path = ndjson(
        tmp_path,
        *[
            {
                "resourceType": "Procedure",
                "subject": subj(r),
                "performedDateTime": TS,
                "code": cc(SNOMED, "1"),
            }
            for r in refs
        ],
    )
    out = run(path)
    assert [e[0] for e in out.events] == [P1] * 3
    assert len(out.quarantine) == 1 and "another server" in str(out.quarantine[0])


# --- bad records: each gives exactly one quarantine row and no events ------------------------------------
BAD_RECORDS = [
    (
        b'{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"code":',
        "unparseable",
        "invalid JSON (unexpected end of data at column 75); expected one FHIR resource per line",
    ),
    (
        b'{"resourceType":"Patient","id":"p1","gender":"f\xe9minin"}',
        "unparseable",
        ("not valid UTF-8: byte 0xe9 at offset 47 (invalid continuation byte; expected UTF-8 encoded JSON, "
        "one FHIR resource per line)"),
    ),
    (b"[1, 2]", "unparseable", "a list where a FHIR resource was expected (a JSON object with resourceType)"),
    (
        b'{"id": "x"}',
        "unparseable",
        "resourceType is missing (expected a JSON object with a FHIR resourceType)",
    ),
    (
        {"resourceType": "Observation", "code": cc(LOINC, "2160-0"), "effectiveDateTime": TS},
        "Observation",
        "Observation.subject.reference is missing (expected a reference to the Patient)",
    ),
    (
        {
            "resourceType": "Condition",
            "subject": subj("Group/g1"),
            "code": cc(SNOMED, "1"),
            "onsetDateTime": TS,
        },
        "Condition",
        "Condition.subject.reference 'Group/g1' is not a Patient reference (expected Patient/<id>)",
    ),
    (
        {
            "resourceType": "Observation",
            "subject": subj(),
            "code": cc(LOINC, "2160-0"),
            "effectiveDateTime": "2020-13-45",
        },
        "Observation",
        ("Observation.effectiveDateTime '2020-13-45' is not a FHIR dateTime "
        "(expected YYYY[-MM[-DD[Thh:mm:ss[.fff]+zz:zz]]])"),
    ),
    (
        {
            "resourceType": "Immunization",
            "patient": subj(),
            "vaccineCode": cc("http://hl7.org/fhir/sid/cvx", "140"),
        },
        "Immunization",
        "Immunization has no occurrenceDateTime (expected a FHIR dateTime)",
    ),
    (
        {
            "resourceType": "Procedure",
            "subject": subj(),
            "performedDateTime": TS,
            "code": {"text": "appendectomy"},
        },
        "Procedure",
        "Procedure.code has no coding with a code (expected a CodeableConcept with coding[].system and .code)",
    ),
    (
        {
            "resourceType": "Observation",
            "subject": subj(),
            "effectiveDateTime": TS,
            "code": cc(LOINC, "85354-9"),
            "component": [
                {"code": cc(LOINC, "8480-6"), "valueQuantity": {"value": 120}},
                {"valueQuantity": {"value": 80}},
            ],
        },
        "Observation",
        ("Observation.component[1].code has no coding with a code (expected a CodeableConcept with coding[].system "
        "and .code)"),
    ),
    (
        {"resourceType": "Patient", "id": "p1", "birthDate": "2001-01-01", "deceasedDateTime": "2000-06-01"},
        "Patient",
        "Patient.birthDate '2001-01-01' is after deceasedDateTime '2000-06-01' (birth after death)",
    ),
    (
        {"resourceType": "Patient", "gender": "male"},
        "Patient",
        "Patient.id is missing (expected the logical id the other resources refer to)",
    ),
    (
        {"resourceType": "Frobnicator", "subject": subj()},
        "Frobnicator",
        "resourceType 'Frobnicator' is not a FHIR R4 resource type",
    ),
    (
        {"resourceType": "MedicationStatement", "subject": subj()},
        "MedicationStatement",
        "resourceType 'MedicationStatement' is a FHIR R4 resource this converter does not map to events yet",
    ),
    (
        {
            "resourceType": "Encounter",
            "status": "entered-in-error",
            "subject": subj(),
            "period": {"start": TS},
        },
        "Encounter",
        "Encounter.status is 'entered-in-error': the record is retracted or the event did not happen",
    ),
    (
        {"resourceType": "Encounter", "subject": subj(), "class": {"code": "AMB"}},
        "Encounter",
        "Encounter.period.start is missing (expected a FHIR dateTime)",
    ),
    (
        {"resourceType": "Encounter", "subject": subj(), "period": {"start": TS, "end": "2020-04-01"}},
        "Encounter",
        "Encounter.period.end '2020-04-01' is before period.start '2020-05-01T12:00:00Z' (expected end >= start)",
    ),
    (
        {
            "resourceType": "Condition",
            "subject": subj(),
            "onsetDateTime": TS,
            "code": cc(SNOMED, "1"),
            "verificationStatus": {"coding": [{"code": "refuted"}]},
        },
        "Condition",
        "Condition.verificationStatus is 'refuted': not a diagnosis the subject has",
    ),
    (
        {
            "resourceType": "MedicationRequest",
            "subject": subj(),
            "authoredOn": TS,
            "medicationReference": {"reference": "Medication/m9"},
        },
        "MedicationRequest",
        ("MedicationRequest.medicationReference 'Medication/m9' does not resolve (expected a contained or "
        "same-Bundle Medication)"),
    ),
    (
        {
            "resourceType": "DocumentReference",
            "subject": subj(),
            "date": TS,
            "content": [{"attachment": {"contentType": "text/plain", "data": "@@not base64@@"}}],
        },
        "DocumentReference",
        "DocumentReference.content[0].attachment.data is not valid base64 (expected base64-encoded text/plain)",
    ),
    (
        {
            "resourceType": "DocumentReference",
            "subject": subj(),
            "date": TS,
            "content": [
                {"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"caf\xe9").decode()}}
            ],
        },
        "DocumentReference",
        ("DocumentReference.content[0].attachment.data is not valid utf-8 text: byte 0xe9 at offset 3 (unexpected "
        "end of data; expected text in the charset of contentType 'text/plain')"),
    ),
    (
        {
            "resourceType": "Observation",
            "subject": "Patient/p1",
            "code": cc(LOINC, "1"),
            "effectiveDateTime": TS,
        },
        "Observation",
        "Observation.subject.reference is missing (expected a reference to the Patient)",
    ),
    (
        {
            "resourceType": "Observation",
            "subject": subj(),
            "code": cc(LOINC, "1"),
            "effectiveDateTime": 20200501,
        },
        "Observation",
        "Observation.effectiveDateTime 20200501 is not a FHIR dateTime (expected YYYY[-MM[-DD[Thh:mm:ss[.fff]+zz:zz]]])",
    ),
    (
        {
            "resourceType": "Condition",
            "subject": subj(),
            "onsetDateTime": TS,
            "code": cc(SNOMED, "1"),
            "verificationStatus": {"coding": 5},
        },
        "Condition",
        "Condition has an unexpected structure (TypeError: 'int' object is not iterable); expected FHIR R4 JSON",
    ),
]


@pytest.mark.parametrize(("record", "table", "reason"), BAD_RECORDS, ids=[r[2][:40] for r in BAD_RECORDS])
def test_bad_record_is_quarantined_with_its_reason(tmp_path, record, table, reason):
    good = {"resourceType": "Procedure", "subject": subj(), "performedDateTime": TS, "code": cc(SNOMED, "1")}
    path = ndjson(tmp_path, good, record, good)
    out = run(path)
    assert out.quarantine == [(str(path), table, "line 2", reason)]
    assert out.events == [(P1, T, "SNOMED//1", None, None, None)] * 2  # neighbours are untouched
    expected = {"Procedure": (2, 2, 0)}
    expected[table] = tuple(a + b for a, b in zip(expected.get(table, (0, 0, 0)), (1, 0, 1)))
    assert counts(out) == expected


def test_blank_lines_and_a_byte_order_mark_are_not_records(tmp_path):
    path = tmp_path / "p.ndjson"
    path.write_bytes(
        b'\xef\xbb\xbf{"resourceType":"Patient","id":"7"}\n\n   \n{"resourceType":"Patient","id":"8"}'
    )
    out = run(path)
    assert [e[0] for e in out.events] == [7, 8]
    assert counts(out) == {"Patient": (2, 2, 0)}


def test_truncated_bundle_file_is_one_quarantine_row(tmp_path):
    text = SYNTHEA[0].read_bytes()
    path = tmp_path / "cut.json"
    path.write_bytes(text[: len(text) // 2])
    out = run(path)
    assert out.events == []
    assert len(out.quarantine) == 1
    source, table, locator, reason = out.quarantine[0]
    assert (source, table, locator) == (str(path), "Bundle", "file")
    assert re.fullmatch(
        r"Bundle file is invalid JSON \(unexpected end of data: line \d+ column \d+ \(char \d+\)\); "
        r"expected one complete FHIR Bundle per file",
        reason,
    )
    assert counts(out) == {"Bundle": (1, 0, 1)}


def test_bundle_in_the_wrong_encoding_is_one_quarantine_row(tmp_path):
    path = tmp_path / "utf16.json"
    path.write_bytes('{"resourceType": "Bundle", "entry": []}'.encode("utf-16"))
    out = run(path)
    assert out.quarantine == [
        (
            str(path),
            "Bundle",
            "file",
            ("Bundle file is not valid UTF-8: byte 0xff at offset 0 (invalid start byte; "
            "expected UTF-8 encoded JSON, one complete FHIR Bundle per file)"),
        )
    ]
    assert counts(out) == {"Bundle": (1, 0, 1)}


def test_bad_bundle_entry_is_located_by_its_index(tmp_path):
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1"}},
            {"request": {"method": "DELETE", "url": "Patient/9"}},  # no resource: not a record
            {"resource": {"resourceType": "Condition", "subject": subj(), "code": cc(SNOMED, "1")}},
        ],
    }
    path = tmp_path / "b.json"
    path.write_bytes(orjson.dumps(bundle))
    out = run(path)
    assert out.quarantine == [
        (
            str(path),
            "Condition",
            "entry[2]",
            "Condition has no onsetDateTime or onsetPeriod.start or recordedDate (expected a FHIR dateTime)",
        )
    ]
    assert counts(out) == {"Patient": (1, 1, 0), "Condition": (1, 0, 1), "Bundle": (1, 1, 0)}


def test_gzip_ndjson_is_streamed_and_a_truncated_stream_is_quarantined(tmp_path):
    records = [{"resourceType": "Patient", "id": str(i)} for i in range(1, 2001)]
    data = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in records))
    whole = tmp_path / "ok" / "Patient.ndjson.gz"
    whole.parent.mkdir()
    whole.write_bytes(data)
    out = run(whole)
    assert [e[0] for e in out.events] == list(range(1, 2001))

    cut = tmp_path / "cut" / "Patient.ndjson.gz"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    out = run(cut)
    n = len(out.events)
    assert 0 < n < 2000 and counts(out) == {"Patient": (n, n, 0), "unparseable": (1, 0, 1)}
    ((source, table, locator, reason),) = out.quarantine
    assert (source, table, locator) == (str(cut), "unparseable", f"line {n + 1}")
    assert reason.startswith(f"compressed stream is truncated or corrupt after line {n} (")


# --- planning, byte ranges, batching -------------------------------------------------------------------
def test_plan_orders_files_and_splits_large_ndjson_into_byte_ranges(tmp_path):
    (tmp_path / "b").mkdir()
    ndjson(tmp_path / "b", *[{"resourceType": "Patient", "id": str(i)} for i in range(100)], name="P.ndjson")
    (tmp_path / "a.json").write_bytes(b"{}")
    (tmp_path / "c.ndjson.gz").write_bytes(gzip.compress(b"{}\n" * 1000))
    (tmp_path / "notes.txt").write_text("ignored")
    size = (tmp_path / "b" / "P.ndjson").stat().st_size
    p = fhir.plan(tmp_path, chunk_bytes=1000)
    assert p.source == "fhir" and p.convert is fhir.convert
    assert [(Path(t.source_file).name, t.table, t.start, t.stop) for t in p.tasks] == (
        [("a.json", "bundle", 0, None)]
        + [("P.ndjson", "ndjson", s, min(s + 1000, size)) for s in range(0, size, 1000)]
        + [("c.ndjson.gz", "ndjson", 0, None)]
    )
    assert p.input_bytes == sum(
        f.stat().st_size for f in tmp_path.rglob("*") if f.suffix != ".txt" and f.is_file()
    )
    assert pickle.loads(pickle.dumps(p.tasks[1])) == p.tasks[1]
    assert pickle.loads(pickle.dumps(p.convert)) is fhir.convert


def test_plan_refuses_what_is_not_fhir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fhir.plan(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="holds no FHIR files"):
        fhir.plan(tmp_path)
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(ValueError, match="is not a FHIR file"):
        fhir.plan(tmp_path / "x.csv")


@pytest.mark.parametrize("chunk", [1, 37, 200, 10_000])
def test_byte_ranges_give_the_same_result_with_real_line_numbers(tmp_path, chunk):
    records: list[dict | bytes] = []
    for i in range(60):
        records.append(
            {
                "resourceType": "Procedure",
                "subject": subj(f"Patient/{i}"),
                "performedDateTime": TS,
                "code": cc(SNOMED, str(i)),
            }
        )
        if i % 7 == 3:
            records.append(b'{"resourceType": "Procedure", "subj')
    path = ndjson(tmp_path, *records)
    whole, split = run(path), run(path, chunk_bytes=chunk)
    assert split.events == whole.events and split.quarantine == whole.quarantine
    assert counts(split) == counts(whole) == {"Procedure": (60, 60, 0), "unparseable": (9, 0, 9)}
    bad_lines = [i + 1 for i, r in enumerate(records) if isinstance(r, bytes)]
    assert [q[2] for q in split.quarantine] == [f"line {n}" for n in bad_lines]


def test_batches_are_flushed_to_bound_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(fhir, "FLUSH_EVENTS", 10)
    records = [{"resourceType": "Patient", "id": str(i), "birthDate": "2000"} for i in range(10_000)]
    out = run(ndjson(tmp_path, *records))
    assert out.batches == 3  # flushed at lines 4096 and 8192, then the rest
    assert len(out.events) == 20_000 and counts(out) == {"Patient": (10_000, 10_000, 0)}


# --- the Synthea fixture -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.name)
def test_synthea_bundle_converts_completely_and_every_event_is_valid(path):
    bundle = orjson.loads(path.read_bytes())
    by_type: dict[str, int] = {}
    for entry in bundle["entry"]:
        rt = entry["resource"]["resourceType"]
        by_type[rt] = by_type.get(rt, 0) + 1
    out = run(path)
    assert out.quarantine == []
    assert counts(out) == {rt: (n, n, 0) for rt, n in by_type.items()} | {"Bundle": (1, 1, 0)}

    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    sid = fhir.subject_id(patient["id"])
    birth = dt.datetime.fromisoformat(patient["birthDate"])
    known = set(fhir.VOCABULARIES.values()) | {"VISIT", "NOTE", "ALLERGY", "GENDER", "RACE", "ETHNICITY"}
    assert {e[0] for e in out.events} == {sid}
    for s, time, code, num, text, unit in out.events:
        assert schema.vocabulary_of(code) in known | {schema.BIRTH}, code
        assert (time is None) == schema.is_static(code), code
        assert time is None or birth <= time <= dt.datetime(2025, 1, 2), (code, time)
        assert unit is None or num is not None or text is not None
    codes = [e[2] for e in out.events]
    assert codes.count(schema.BIRTH) == 1 and codes[0].startswith("GENDER//")
    assert sum(c.endswith("//START") for c in codes) == by_type["Encounter"]
    assert sum(c.startswith("NOTE//") for c in codes) == by_type["DocumentReference"]
    assert all(text for _, _, c, _, text, _ in out.events if c.startswith("NOTE//"))
    for code in {
        c for c in codes if not c.startswith(("VISIT//", "GENDER//", "RACE//", "ETHNICITY//", "MEDS_"))
    }:
        assert out.descriptions.get(code), code
    assert len(out.tables) == len(out.events) and "Claim" not in out.tables


def test_synthea_fixture_is_valid_fhir_r4b():
    from fhir.resources.R4B.bundle import Bundle

    for path in SYNTHEA:
        Bundle.model_validate_json(path.read_bytes())


# --- end to end through the dataset builder ------------------------------------------------------------
def test_build_dataset_from_fixtures_reconciles(tmp_path):
    import pyarrow.parquet as pq

    from clinfm.data import dataset

    plan = fhir.plan(FIXTURES)
    summary = dataset.build_dataset(plan, tmp_path / "meds", engine=Engine(workers=2))
    assert summary.balanced
    for table, c in summary.reconciliation.items():
        assert c.read == c.converted + c.quarantined, table
    assert summary.reconciliation["Observation"].quarantined == 1  # the bad date in bulk/Observation.ndjson
    quarantine = pq.read_table(tmp_path / "meds" / schema.QUARANTINE_FILE).to_pylist()
    assert [(Path(q["source_file"]).name, q["table"], q["locator"]) for q in quarantine] == [
        ("Observation.ndjson", "Observation", "line 3")
    ]
    assert summary.quarantined == sum(c.quarantined for c in summary.reconciliation.values())
    assert summary.subjects == 4  # two Synthea patients, two bulk patients
    dataset.validate_dataset(tmp_path / "meds")
