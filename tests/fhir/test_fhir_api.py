"""The FHIR R4 read API over a tiny store: exact search results and paging, R4B validity, scopes, tenancy,
identified-data refusal, and writes that become proposals without changing the dataset."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

from tests.fhir.conftest import write_tiny

K = "http://loinc.org|2823-3"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def validate_r4b(resource: dict) -> None:
    name = resource["resourceType"]
    model = getattr(importlib.import_module(f"fhir.resources.R4B.{name.lower()}"), name)
    model.model_validate(resource)


def values(bundle: dict) -> list[float]:
    return [e["resource"]["valueQuantity"]["value"] for e in bundle["entry"]]


def get(client, keys, url: str, key: str | None = None):
    r = client.get(url, headers=auth(key or keys.read))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture()
def keys(fhir_governance):
    return fhir_governance["keys"]


def test_capability_statement_is_valid_r4b_and_lists_every_served_type(fhir_client):
    r = fhir_client.get("/fhir/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    cs = r.json()
    validate_r4b(cs)
    types = {x["type"] for x in cs["rest"][0]["resource"]}
    assert {"Patient", "Observation", "Condition", "MedicationRequest", "Procedure", "AllergyIntolerance",
            "Encounter", "DocumentReference", "ServiceRequest"} <= types  # fmt: skip
    obs = next(x for x in cs["rest"][0]["resource"] if x["type"] == "Observation")
    assert {"patient", "code", "date", "category"} <= {p["name"] for p in obs["searchParam"]}


def test_latest_lab_sorted_paged_with_links(fhir_client, keys):
    b = get(fhir_client, keys, f"/fhir/Observation?patient=1001&code={K}&_sort=-date&_count=1")
    assert b["type"] == "searchset" and b["total"] == 3 and values(b) == [4.0]
    assert b["entry"][0]["resource"]["effectiveDateTime"] == "2023-01-12T09:00:00+00:00"
    assert b["entry"][0]["resource"]["valueQuantity"]["unit"] == "mmol/L"
    links = {x["relation"]: x["url"] for x in b["link"]}
    assert "previous" not in links and "_offset=1" in links["next"]
    nxt = get(fhir_client, keys, links["next"])
    assert values(nxt) == [3.4]
    last = get(fhir_client, keys, f"/fhir/Observation?patient=1001&code={K}&_sort=-date&_count=1&_offset=2")
    assert values(last) == [3.1] and "next" not in {x["relation"] for x in last["link"]}
    ascending = get(fhir_client, keys, f"/fhir/Observation?patient=Patient/1001&code=2823-3&_sort=date")
    assert values(ascending) == [3.1, 3.4, 4.0]


@pytest.mark.parametrize(("query", "expected"), [
    ("date=ge2023-01-11", [3.4, 4.0]),
    ("date=le2023-01-10", [3.1]),
    ("date=ge2023-01-10T09:30:00Z&date=le2023-01-11", [3.4]),
    ("date=gt2023-01-11", [4.0]),
    ("date=lt2023-01-11", [3.1]),
    ("date=2023-01-11", [3.4]),
    ("date=2023-01", [3.1, 3.4, 4.0]),
    ("date=ge2024", []),
    ("code=LOINC//2823-3,LOINC//8867-4", [88, 3.1, 3.4, 4.0]),
    ("code=http://snomed.info/sct|2823-3", []),
    ("category=vital-signs", [88]),
    ("category=laboratory", [3.1, 3.4, 4.0]),
])  # fmt: skip
def test_observation_search_parameters_exact(fhir_client, keys, query, expected):
    base = "/fhir/Observation?patient=1001&_sort=date"
    if not query.startswith(("code=", "category=")):
        base += f"&code={K}"
    assert values(get(fhir_client, keys, f"{base}&{query}")) == expected


def test_every_resource_type_searchable_and_valid_r4b(fhir_client, keys):
    counts = {"Condition": 1, "MedicationRequest": 1, "Procedure": 1, "AllergyIntolerance": 1, "Encounter": 1,
              "DocumentReference": 1, "Immunization": 1, "Observation": 4}  # fmt: skip
    for rtype, n in counts.items():
        b = get(fhir_client, keys, f"/fhir/{rtype}?patient=1001")
        assert b["total"] == n, rtype
        validate_r4b(b)
        for e in b["entry"]:
            validate_r4b(e["resource"])
    cond = get(fhir_client, keys, "/fhir/Condition?patient=1001&category=problem-list-item")["entry"][0]["resource"]
    assert cond["code"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "44054006",
                                         "display": "Diabetes mellitus type 2"}  # fmt: skip
    enc = get(fhir_client, keys, "/fhir/Encounter?patient=1001")["entry"][0]["resource"]
    assert enc["period"] == {"start": "2023-01-10T08:00:00+00:00", "end": "2023-01-12T12:00:00+00:00"}
    assert enc["class"]["code"] == "IMP"
    proc = get(fhir_client, keys, "/fhir/Procedure?patient=1001&date=ge2023-01-11")["entry"][0]["resource"]
    assert proc["code"]["coding"][0]["code"] == "1225002"
    doc = get(fhir_client, keys, "/fhir/DocumentReference?patient=1001")["entry"][0]["resource"]
    import base64

    assert base64.b64decode(doc["content"][0]["attachment"]["data"]).decode() == "Discharged home on metformin."


def test_everything_and_read_by_id(fhir_client, keys):
    b = get(fhir_client, keys, "/fhir/Patient/1001/$everything")
    validate_r4b(b)
    types = [e["resource"]["resourceType"] for e in b["entry"]]
    assert types[0] == "Patient" and len(types) == 1 + 11  # 13 timed events; birth is Patient; END is part of Encounter
    for e in b["entry"]:
        validate_r4b(e["resource"])
    for e in get(fhir_client, keys, "/fhir/Patient/1003/$everything")["entry"]:  # a code with a double space
        validate_r4b(e["resource"])
    flush = get(fhir_client, keys, "/fhir/MedicationRequest?patient=1003&code=Sodium Chloride 0.9% Flush")
    assert flush["total"] == 1
    obs = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Observation")
    again = get(fhir_client, keys, f"/fhir/Observation/{obs['id']}")
    assert again == obs
    p = get(fhir_client, keys, "/fhir/Patient/1001")
    assert p["birthDate"] == "1980-05-01" and p["gender"] == "female"
    assert fhir_client.get(f"/fhir/Condition/{obs['id']}", headers=auth(keys.read)).status_code == 404
    assert fhir_client.get("/fhir/Observation/1001-999", headers=auth(keys.read)).status_code == 404
    assert fhir_client.get("/fhir/Observation/nonsense", headers=auth(keys.read)).status_code == 404


def test_patient_search(fhir_client, keys):
    ids = lambda q: sorted(e["resource"]["id"] for e in get(fhir_client, keys, f"/fhir/Patient?{q}")["entry"])  # noqa: E731
    assert ids("birthdate=1980-05-01") == ["1001", "1003"]
    assert ids("birthdate=1980-05-01&gender=female") == ["1001", "1003"]
    assert ids("gender=male") == ["1002"]
    assert ids("birthdate=le1960") == ["1002"]
    assert ids("identifier=1003") == ["1003"]
    assert ids("family=Stafford&given=Peter") == []  # a de-identified store holds no names
    paged = get(fhir_client, keys, "/fhir/Patient?_count=2")
    assert paged["total"] == 3 and len(paged["entry"]) == 2


@pytest.mark.parametrize(("url", "status"), [
    ("/fhir/Observation?code=2823-3", 400),  # no patient
    ("/fhir/Observation?patient=1001&colour=blue", 400),
    ("/fhir/Observation?patient=1001&date=yesterday", 400),
    ("/fhir/Observation?patient=1001&date=2023-02-30", 400),
    ("/fhir/Observation?patient=1001&_count=5000", 400),
    ("/fhir/Observation?patient=1001&_sort=value", 400),
    ("/fhir/Observation?patient=abc", 400),
    ("/fhir/Observation?patient=424242", 404),
    ("/fhir/Claim?patient=1001", 404),
])  # fmt: skip
def test_bad_searches_are_clear_errors(fhir_client, keys, url, status):
    r = fhir_client.get(url, headers=auth(keys.read))
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_smart_scopes_and_tenancy(fhir_client, keys):
    assert fhir_client.get("/fhir/Observation?patient=1001").status_code == 401
    assert fhir_client.get("/fhir/Patient/1001", headers=auth(keys.patient_only)).status_code == 200
    r = fhir_client.get("/fhir/Observation?patient=1001", headers=auth(keys.patient_only))
    assert r.status_code == 403 and "Observation" in r.json()["detail"]
    assert fhir_client.get("/fhir/Observation?patient=1001", headers=auth(keys.other_org)).status_code == 404
    assert fhir_client.get("/fhir/Patient?gender=male", headers=auth(keys.other_org)).status_code == 404
    r = fhir_client.post("/fhir/Observation", headers=auth(keys.read), json=bp_observation(1001))
    assert r.status_code == 403  # read scopes do not write


def test_identified_dataset_only_for_allowed_orgs(fhir_app, tmp_path, keys):
    from fastapi.testclient import TestClient

    identified = write_tiny(tmp_path / "identified", deidentified=False)
    with TestClient(fhir_app(identified)) as c:
        r = c.get("/fhir/Patient/1001", headers=auth(keys.read))
        assert r.status_code == 403 and "de-identified" in r.json()["detail"]
    with TestClient(fhir_app(identified, fhir_identified_orgs=["demo"])) as c:
        assert c.get("/fhir/Patient/1001", headers=auth(keys.read)).status_code == 200


# --- writes --------------------------------------------------------------------------------------------------
def bp_observation(sid: int) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://hl7.org/fhir/observation-category", "code": "vital-signs",
                                      "display": "Vital Signs"}]}],
            "code": {"text": "BP"}, "effectiveDateTime": "2023-11-13T10:15:00+00:00", "valueString": "118/77 mmHg",
            "subject": {"reference": f"Patient/{sid}"}}  # fmt: skip


def dataset_hashes(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and ".clinfm-cache" not in p.parts}  # fmt: skip


def test_writes_become_audited_proposals_and_never_change_the_dataset(fhir_client, keys, tiny, fhir_governance):
    from clinfm.govern.audit import list_entries

    before = dataset_hashes(tiny)
    seq0 = max([e.seq for e in list_entries(db=fhir_governance["db"], limit=100000)] or [0])
    r = fhir_client.post("/fhir/Observation", headers=auth(keys.write), json=bp_observation(1001))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["meta"]["tag"][0]["code"] == "proposal" and r.headers["location"].endswith(created["id"])
    validate_r4b(created)
    med = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
           "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                     "code": "308182", "display": "amoxicillin 500 MG Oral Capsule"}]},
           "subject": {"reference": "Patient/1001"}, "authoredOn": "2023-11-13T10:15:00+00:00"}  # fmt: skip
    r = fhir_client.post("/fhir/MedicationRequest", headers=auth(keys.write), json=med)
    assert r.status_code == 201, r.text
    issue = r.json()["contained"][0]
    assert issue["resourceType"] == "DetectedIssue" and issue["severity"] == "high"
    validate_r4b(r.json())
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "priority": "stat",
          "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
          "subject": {"reference": "Patient/1001"}, "authoredOn": "2023-11-13T10:15:00+00:00"}  # fmt: skip
    assert fhir_client.post("/fhir/ServiceRequest", headers=auth(keys.write), json=sr).status_code == 201
    listed = fhir_client.get("/v1/proposals", headers=auth(keys.write)).json()["proposals"]
    assert [p["resource_type"] for p in listed] == ["Observation", "MedicationRequest", "ServiceRequest"]
    medp = listed[1]
    assert medp["safety"]["checked"] is True and medp["safety"]["highest_severity"] == "contraindicated"
    assert medp["safety"]["allergy_conflicts"][0]["allergy"] == "7980"  # the patient's recorded penicillin allergy
    # the record is unchanged: searches do not see proposals, and the files are byte-identical
    assert get(fhir_client, keys, "/fhir/Observation?patient=1001")["total"] == 4
    assert dataset_hashes(tiny) == before
    entries = [e for e in list_entries(db=fhir_governance["db"], since_seq=seq0, limit=1000)]
    assert [e.action for e in entries].count("fhir.proposal.create") == 3
    assert {e.details["proposal_id"] for e in entries} == {p["id"] for p in listed}
    # review
    r = fhir_client.post(f"/v1/proposals/{listed[0]['id']}/review", headers=auth(keys.write),
                         json={"decision": "accepted", "reason": "checked at bedside"})  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    again = fhir_client.post(f"/v1/proposals/{listed[0]['id']}/review", headers=auth(keys.write), json={"decision": "rejected"})
    assert again.status_code == 409
    pending = fhir_client.get("/v1/proposals", headers=auth(keys.write)).json()["proposals"]
    assert len(pending) == 2
    other = fhir_client.get("/v1/proposals?status=accepted", headers=auth(keys.other_org)).json()["proposals"]
    assert other == []  # another organization sees none


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"resourceType": "Observation", "code": {"text": "BP"}, "subject": {"reference": "Patient/1001"}}, 422, "status"),
    ({"resourceType": "Patient"}, 422, "resourceType"),
    ({**bp_observation(1001), "subject": {"reference": "Group/7"}}, 422, "subject.reference"),
    ({**bp_observation(1001), "colour": "red"}, 422, "colour"),
    (bp_observation(424242), 404, "424242"),
])  # fmt: skip
def test_bad_writes_refused_and_not_kept(fhir_client, keys, body, status, words):
    r = fhir_client.post("/fhir/Observation", headers=auth(keys.write), json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert fhir_client.get("/v1/proposals", headers=auth(keys.write)).json()["proposals"] == []


def test_assist_feedback_is_kept_with_its_ids(fhir_app, fhir_governance, tmp_path):
    from fastapi.testclient import TestClient

    from clinfm.agentbench.feedback import read_feedback
    from clinfm.govern import access as A

    key = A.create_api_key("demo", "svc", ["user/Assist.c"], actor="test", db=fhir_governance["db"]).key
    with TestClient(fhir_app()) as c:
        body = {"rating": -1, "correction": "The latest potassium is 4.0 mmol/L", "reason": "wrong value",
                "question": "Latest potassium?", "subject_id": 1001}  # fmt: skip
        r = c.post("/v1/assist/ans_123/feedback", headers=auth(key), json=body)
        assert r.status_code == 201, r.text
        assert c.post("/v1/assist/ans_123/feedback", headers=auth(key), json={"rating": 5}).status_code == 422
        assert c.post("/v1/assist/ans_123/feedback", headers=auth(fhir_governance["keys"].read), json={"rating": 1}).status_code == 403
    entries = read_feedback(tmp_path / "serve-data" / "assist-feedback.jsonl", "demo")
    assert [(e["id"], e["answer_id"], e["rating"], e["correction"]) for e in entries] == [
        (r.json()["id"], "ans_123", -1, "The latest potassium is 4.0 mmol/L")]
