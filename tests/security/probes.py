"""The hardening probes as data: each request the attack on the demo server found answering 500 (or worse), and
the status family a safe server answers instead. ``tests/security/test_api_probes.py`` sends them;
``benchmarks/security_probe.py`` tallies them against a fresh app."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str
    body: Any = None
    expect: int = 422  # the status a correct server gives


def _med(code: str = "6809", display: str = "metformin") -> dict:
    return {"resourceType": "MedicationRequest", "id": "m1", "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": display}]},
            "subject": {"reference": "Patient/1"}}  # fmt: skip


def order_select(egfr_value: Any = 45, *, selections: Any = ("MedicationRequest/m1",), med: dict | None = None,
                 allergy: dict | None = None) -> dict:  # fmt: skip
    egfr = {"resourceType": "Observation", "id": "e1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "33914-3"}]},
            "valueQuantity": {"value": egfr_value, "unit": "mL/min/{1.73_m2}"}}  # fmt: skip
    prefetch: dict[str, Any] = {"egfr": egfr}
    if allergy is not None:
        prefetch["allergies"] = allergy
    return {"hook": "order-select", "hookInstance": "probe", "context": {
        "patientId": "1", "userId": "Practitioner/1", "selections": list(selections) if isinstance(selections, tuple) else selections,
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": med or _med()}]}},
        "prefetch": prefetch}  # fmt: skip


def _variant(path: list, value: Any, base: dict | None = None) -> dict:
    body = copy.deepcopy(base or order_select())
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


DRAFT_MED = ["context", "draftOrders", "entry", 0, "resource", "medicationCodeableConcept"]


def fhir_subject(reference: str) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": "subject", "valueReference": {"reference": reference}}]}


def patient_view(pid: str) -> dict:
    return {"hook": "patient-view", "hookInstance": "probe", "context": {"patientId": pid, "userId": "Practitioner/1"}}


def inline_bundle(birth: str = "1960-01-01", onset: str = "2015-03-01") -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": birth}},
        {"resource": {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
                      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
                      "onsetDateTime": onset}}]}  # fmt: skip


SAFETY = "/cds-services/clinfm-medication-safety"
BIG = "9" * 10_000

PROBES: list[Probe] = [
    # CDS Hooks order-select: ordinary type variants
    Probe("selections as a number", "POST", SAFETY, _variant(["context", "selections"], 5)),
    Probe("selections as objects", "POST", SAFETY, _variant(["context", "selections"], [{"id": "m1"}])),
    Probe("medication text as a number", "POST", SAFETY, _variant(DRAFT_MED, {"text": 5})),
    Probe("medication text as a list", "POST", SAFETY, _variant(DRAFT_MED, {"text": ["metformin"]})),
    Probe("coding display as an object", "POST", SAFETY, _variant(DRAFT_MED, {"coding": [{"display": {"x": 1}}]})),
    Probe("eGFR valueQuantity as a string", "POST", SAFETY, _variant(["prefetch", "egfr", "valueQuantity"], "45")),
    Probe("allergy code text as a list", "POST", SAFETY, order_select(allergy={
        "resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/1"},
        "code": {"text": ["penicillin"]}})),  # fmt: skip
    Probe("eGFR -50", "POST", SAFETY, order_select(-50)),
    Probe("eGFR true", "POST", SAFETY, order_select(True)),
    # ids
    Probe("FHIR $predict Patient/²", "POST", "/fhir/RiskAssessment/$predict", fhir_subject("Patient/²")),
    Probe("FHIR $predict 10,000-digit id", "POST", "/fhir/RiskAssessment/$predict", fhir_subject("Patient/" + BIG)),
    Probe("CDS patientId ²", "POST", "/cds-services/clinfm-risk", patient_view("²")),
    Probe("CDS patientId 10,000 digits", "POST", "/cds-services/clinfm-risk", patient_view(BIG)),
    Probe("web subject_id ²", "GET", "/web/?subject_id=%C2%B2", expect=422),
    Probe("web subject_id 5,000 digits", "GET", "/web/?subject_id=" + "9" * 5000, expect=422),
    Probe("web patient 5,000 digits", "GET", "/web/patients/" + "9" * 5000, expect=422),
    Probe("predict id with a fraction", "POST", "/v1/predict", {"subject_id": 1234567890123451347.5}),
    Probe("predict id rounded by float", "POST", "/v1/predict", {"subject_id": 1.2345678901234513e18}),
    Probe("predict id above int64", "POST", "/v1/predict", {"subject_id": 2**63}),
    # dates
    Probe("prediction_time year 9999", "POST", "/v1/predict", {"subject_id": 1, "prediction_time": "9999-06-01T00:00:00"}),
    Probe("prediction_time 9999 -14:00", "POST", "/v1/predict", {"subject_id": 1, "prediction_time": "9999-12-31T23:59:59-14:00"}),
    Probe("prediction_time year 1", "POST", "/v1/predict", {"subject_id": 1, "prediction_time": "0001-01-01T00:00:00+14:00"}),
    Probe("inline birth 9999-12-31", "POST", "/v1/predict", {"bundle": inline_bundle(birth="9999-12-31")}),
    Probe("inline onset 0001-01-01", "POST", "/v1/predict", {"bundle": inline_bundle(onset="0001-01-01")}),
]
