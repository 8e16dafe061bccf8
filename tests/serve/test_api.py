"""The API through TestClient over real governance, the Eunomia store and the FHIR converter."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.serve.conftest import bearer

FIXTURE_BUNDLE = Path(__file__).resolve().parents[1] / "fixtures" / "fhir" / "synthea_patient_1.json"
PROBLEM = "application/problem+json"


def assert_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["type"].startswith("https://") and body["title"]
    assert "Traceback" not in r.text
    return body


# --- every route: valid, missing, wrong-scope, expired, wrong-tenant keys ------------------------------------
def routes(subject_id: int) -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", "/v1/models", None),
        ("POST", "/v1/predict", {"subject_id": subject_id}),
        ("POST", "/fhir/RiskAssessment/$predict",
         {"resourceType": "Parameters", "parameter": [{"name": "subject", "valueReference": {"reference": f"Patient/{subject_id}"}}]}),
        ("POST", "/v1/ddx/sessions", {"age": 40, "sex": "female"}),
        ("POST", "/cds-services/clinfm-risk",
         {"hook": "patient-view", "hookInstance": "abc", "context": {"patientId": str(subject_id), "userId": "Practitioner/1"}}),
        ("POST", "/cds-services/clinfm-risk/feedback", {"feedback": [{"card": "x", "outcome": "accepted"}]}),
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(6))
def test_route_keys(client, governance, subject_id, index):
    method, path, body = routes(subject_id)[index]
    keys = governance["keys"]

    def call(key: str | None):
        return client.request(method, path, json=body, headers=bearer(key) if key else {})

    ok = call(keys.full)
    assert ok.status_code in (200, 201), ok.text
    missing = assert_problem(call(None), 401)
    assert "API key is required" in missing["detail"]
    assert call(None).headers["www-authenticate"].startswith("Bearer")
    assert "expired" in assert_problem(call(keys.expired), 401)["detail"]
    assert_problem(call("cfm_000000000000_notakey"), 401)
    if path != "/v1/models":
        assert "lacks the scope" in assert_problem(call(keys.narrow), 403)["detail"]


def test_wrong_tenant_cannot_see_dataset_sessions_or_models(client, governance, subject_id):
    keys = governance["keys"]
    other = bearer(keys.other_org)
    assert_problem(client.post("/v1/predict", json={"subject_id": subject_id}, headers=other), 404)
    models = client.get("/v1/models", headers=other).json()["models"]
    assert governance["versions"]["demo"] not in {m["version"] for m in models}
    assert_problem(client.get(f"/v1/models/{governance['versions']['demo']}/card", headers=other), 404)
    sid = client.post("/v1/ddx/sessions", json={"age": 30}, headers=bearer(keys.full)).json()["session_id"]
    assert_problem(client.get(f"/v1/ddx/sessions/{sid}", headers=other), 404)
    assert_problem(client.post(f"/v1/ddx/sessions/{sid}/answers", json={"evidence": "E_91", "value": True}, headers=other), 404)


def test_health_and_ready_need_no_key(client):
    assert client.get("/health").json()["status"] == "ok"
    root = client.get("/", follow_redirects=False)  # the address `make demo` prints opens the web page
    assert root.status_code == 307 and root.headers["location"] == "/web/"
    r = client.get("/ready")
    assert r.json()["parts"]["access"] == "ok" and r.json()["parts"]["store"] == "ok"


# --- prediction ----------------------------------------------------------------------------------------------
def test_predict_store_subject_cached_logged_and_audited(client, governance, subject_id, tmp_path):
    from clinfm.govern.audit import list_entries

    h = bearer(governance["keys"].full)
    r = client.post("/v1/predict", json={"subject_id": subject_id, "purpose": "treatment"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == governance["versions"]["demo"] and body["lifecycle_state"] == "general"
    assert body["subject_id"] == subject_id and not body["withheld"]
    for risk in body["risks"]:
        assert 0 <= risk["ci_low"] <= risk["probability"] <= risk["ci_high"] <= 1
    assert any(r_["evidence"] for r_ in body["risks"]) and body["risks"][0]["evidence"][0]["description"]
    early = client.post("/v1/predict", json={"subject_id": subject_id, "prediction_time": "1990-01-01T00:00:00"}, headers=h)
    # the record up to 1990 only (CountForecaster fails on any later event): a different, earlier forecast
    assert early.status_code == 200, early.text
    assert early.json()["prediction_time"].startswith("1990-01-01") and early.json()["risks"] != body["risks"]
    again = client.post("/v1/predict", json={"subject_id": subject_id}, headers=h).json()
    assert again["risks"] == body["risks"]
    assert client.app.state.serve.predictions._resolved.hits >= 1
    log = (tmp_path / "data" / "predictions.jsonl").read_text().splitlines()
    assert len(log) >= 3 and json.loads(log[0])["subject_id"] == subject_id
    entries = [e for e in list_entries("demo", db=governance["db"], limit=100_000) if e.action == "prediction.access"]
    mine = [e for e in entries if e.details.get("prediction_id") == body["prediction_id"]]
    assert len(mine) == 1 and mine[0].subject_id == str(subject_id) and mine[0].purpose == "treatment"
    assert mine[0].model_version_id == body["model_version"] and "svc" in mine[0].actor


def test_predict_inline_bundle_is_pseudonymized_and_not_stored(client, governance, secret_file, tmp_path):
    from clinfm.data.ingest.fhir import subject_id as fhir_subject_id
    from clinfm.deid.structured import pseudonym, read_secret

    bundle = json.loads(FIXTURE_BUNDLE.read_text())
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    h = bearer(governance["keys"].full)
    r = client.post("/v1/predict", json={"bundle": bundle}, headers=h)
    assert r.status_code == 200, r.text
    expected = pseudonym(fhir_subject_id(patient["id"]), read_secret(secret_file))
    assert r.json()["subject_id"] == expected
    assert patient["id"] not in (tmp_path / "data" / "predictions.jsonl").read_text()
    assert not (tmp_path / "data" / "inline").exists()
    kept = client.post("/v1/predict", json={"bundle": bundle, "store_bundle": True}, headers=h)
    assert kept.status_code == 200
    assert (tmp_path / "data" / "inline" / "demo" / f"{expected}.parquet").exists()
    other = client.post("/v1/predict", json={"bundle": bundle}, headers=bearer(governance["keys"].other_org))
    assert other.status_code == 503  # the other tenant has no model; its pseudonym would differ anyway


def test_fhir_riskassessment_validates(client, governance, subject_id):
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.riskassessment import RiskAssessment

    params = {"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueReference": {"reference": f"Patient/{subject_id}"}},
        {"name": "horizonDays", "valueInteger": 180}]}  # fmt: skip
    r = client.post("/fhir/RiskAssessment/$predict", json=params, headers=bearer(governance["keys"].full))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(r.json())
    ra = RiskAssessment.model_validate(bundle.entry[0].resource.model_dump())
    assert ra.method.coding[0].code == governance["versions"]["demo"]
    assert ra.subject.reference == f"Patient/{subject_id}" and ra.prediction and ra.basis
    assert all(0 <= float(p.probabilityDecimal) <= 1 for p in ra.prediction)


def test_no_model_deployed_is_a_clear_503(app_factory, governance, subject_id):
    from fastapi.testclient import TestClient

    with TestClient(app_factory(with_model=False)) as c:
        r = c.post("/v1/predict", json={"subject_id": subject_id}, headers=bearer(governance["keys"].full))
    body = assert_problem(r, 503)
    # The registered version's run folder has no trained checkpoint: a problem document naming it, not numbers.
    assert body["detail"] == (f"model version {governance['versions']['demo']} has no trained checkpoint "
                              "(model.safetensors) in its run folder")  # fmt: skip


# --- CDS Hooks -------------------------------------------------------------------------------------------
def check_card(card: dict) -> None:
    """CDS Hooks 2.0 required card fields and their constraints."""
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"] and card["source"]["url"].startswith("http")
    assert len(card["uuid"]) == 36
    for link in card.get("links", []):
        assert link["label"] and link["url"] and link["type"] in ("absolute", "smart")
    for s in card.get("suggestions", []):
        assert s["label"] and s["uuid"]
        assert card["selectionBehavior"] in ("at-most-one", "any")


def test_cds_discovery(client):
    services = client.get("/cds-services").json()["services"]
    assert {s["hook"] for s in services} == {"patient-view", "order-select"}
    for s in services:
        assert s["id"] and s["description"] and s["hook"]
        assert all("{{context.patientId}}" in v for v in s["prefetch"].values())


def test_patient_view_cards_from_store_and_prefetch(client, governance, subject_id, tmp_path):
    h = bearer(governance["keys"].full)
    base = {"hook": "patient-view", "hookInstance": "d1e8e4b9-0c3e-4a3c-9a4d-000000000001"}
    r = client.post("/cds-services/clinfm-risk", json={**base, "context": {"patientId": str(subject_id)}}, headers=h)
    cards = r.json()["cards"]
    assert cards, r.text
    for c in cards:
        check_card(c)
        assert "/web/models/" in c["source"]["url"]
    bundle = json.loads(FIXTURE_BUNDLE.read_text())
    prefetch = {"patient": next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"),
                "conditions": {"resourceType": "Bundle", "type": "searchset",
                               "entry": [e for e in bundle["entry"] if e["resource"]["resourceType"] in ("Condition", "Encounter")]}}  # fmt: skip
    r2 = client.post("/cds-services/clinfm-risk", json={**base, "context": {"patientId": "abc"}, "prefetch": prefetch}, headers=h)
    assert r2.status_code == 200 and r2.json()["cards"]
    fb = {"feedback": [{"card": cards[0]["uuid"], "outcome": "overridden", "overrideReason": {
        "reason": {"code": "not-relevant", "system": "https://example.org", "display": "Not relevant"}, "userComment": "x"}}]}  # fmt: skip
    assert client.post("/cds-services/clinfm-risk/feedback", json=fb, headers=h).json() == {"stored": 1}
    stored = [json.loads(x) for x in (tmp_path / "data" / "cds-feedback.jsonl").read_text().splitlines()]
    assert stored[-1]["card"] == cards[0]["uuid"] and stored[-1]["outcome"] == "overridden"
    assert stored[-1]["model_version"] == governance["versions"]["demo"] and stored[-1]["override_reason"]["code"] == "not-relevant"
    assert "userComment" not in json.dumps(stored[-1]) and stored[-1]["has_user_comment"]


def test_silent_model_stores_prediction_but_returns_no_cards(client, governance, tmp_path):
    bundle = json.loads(FIXTURE_BUNDLE.read_text())
    h = bearer(governance["keys"].silent_org)
    body = {"hook": "patient-view", "hookInstance": "x1", "context": {"patientId": "p"}, "prefetch": {"all": bundle}}
    r = client.post("/cds-services/clinfm-risk", json=body, headers=h)
    assert r.status_code == 200 and r.json() == {"cards": []}
    stored = [json.loads(x) for x in (tmp_path / "data" / "predictions.jsonl").read_text().splitlines()]
    silent = [s for s in stored if s["org"] == "quiet"]
    assert silent and silent[-1]["withheld"] and silent[-1]["lifecycle_state"] == "silent" and silent[-1]["risks"]
    api = client.post("/v1/predict", json={"bundle": bundle}, headers=h).json()
    assert api["withheld"] and api["risks"] == []


def test_order_select_medication_safety_cards(client, governance):
    body = {"hook": "order-select", "hookInstance": "o1", "context": {"patientId": "1", "selections": ["MedicationRequest/m1"],
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
                "resourceType": "MedicationRequest", "id": "m1", "status": "draft", "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11289", "display": "warfarin"}]},
                "subject": {"reference": "Patient/1"}}}]}},
            "prefetch": {"medications": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
                "resourceType": "MedicationRequest", "id": "m2", "status": "active", "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1191", "display": "aspirin"}]},
                "subject": {"reference": "Patient/1"}}}]}}}  # fmt: skip
    r = client.post("/cds-services/clinfm-medication-safety", json=body, headers=bearer(governance["keys"].full))
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert cards and any("warfarin" in c["summary"].lower() for c in cards)
    for c in cards:
        check_card(c)
    removal = [s for c in cards for s in c.get("suggestions", [])]
    assert removal and removal[0]["actions"][0] == {"type": "delete", "description": removal[0]["actions"][0]["description"],
                                                    "resourceId": ["MedicationRequest/m1"]}


# --- security mechanics ------------------------------------------------------------------------------------
def test_quota_exhaustion_gives_429_with_retry_after(client, governance):
    h = bearer(governance["keys"].quota)
    statuses = [client.get("/v1/models", headers=h).status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
    r = client.get("/v1/models", headers=h)
    assert_problem(r, 429)
    assert int(r.headers["retry-after"]) >= 1


def test_body_limit_and_problem_documents(app_factory, governance):
    from fastapi.testclient import TestClient

    with TestClient(app_factory(max_body_bytes=1000)) as c:
        h = bearer(governance["keys"].full)
        assert_problem(c.post("/v1/predict", content=b"{" + b" " * 5000 + b"}", headers={**h, "content-type": "application/json"}), 413)
        secret_name = "Jane Q Patient"
        bad = c.post("/v1/predict", json={"subject_id": secret_name}, headers=h)
        assert_problem(bad, 422)
        assert secret_name not in bad.text
        assert_problem(c.post("/v1/predict", content=b"{not json", headers={**h, "content-type": "application/json"}), 400)


def test_production_refuses_unsafe_settings(tmp_path, monkeypatch):
    from pydantic import ValidationError

    from clinfm.serve.settings import ServeSettings

    with pytest.raises(ValidationError, match="TENANT_SECRET_FILE is not set"):
        ServeSettings(env="production")
    weak = tmp_path / "weak.key"
    weak.write_text("changeme")
    with pytest.raises(ValidationError, match="expected at least 32"):
        ServeSettings(env="production", tenant_secret_file=weak)
    good = tmp_path / "good.key"
    good.write_text(os.urandom(32).hex())
    with pytest.raises(ValidationError, match="open CORS"):
        ServeSettings(env="production", tenant_secret_file=good, cors_origins=["*"])
    monkeypatch.delenv("CLINFM_AUDIT_KEY", raising=False)
    monkeypatch.delenv("CLINFM_AUDIT_KEY_FILE", raising=False)
    with pytest.raises(ValidationError, match="CLINFM_AUDIT_KEY"):
        ServeSettings(env="production", tenant_secret_file=good, cors_origins=["https://ehr.example.org"])
    monkeypatch.setenv("CLINFM_AUDIT_KEY", os.urandom(32).hex())
    with pytest.raises(ValidationError, match="CLINFM_AUDIT_SIGNING_KEY_FILE"):
        ServeSettings(env="production", tenant_secret_file=good, cors_origins=["https://ehr.example.org"])
    from clinfm.govern.audit_keys import generate_keys

    monkeypatch.setenv("CLINFM_AUDIT_SIGNING_KEY_FILE", str(generate_keys(tmp_path / "keys")[1]))
    ok = ServeSettings(env="production", tenant_secret_file=good, cors_origins=["https://ehr.example.org"])
    assert ok.cookie_secure


# --- reasoning -------------------------------------------------------------------------------------------
def test_ddx_session_flow(client, governance):
    h = bearer(governance["keys"].full)
    r = client.post("/v1/ddx/sessions", json={"age": 55, "sex": "male"}, headers=h)
    assert r.status_code == 201, r.text
    sid, st = r.json()["session_id"], r.json()["state"]
    q = st["next_question"]
    assert q and q["text"]
    value = True if q["data_type"] == "B" else q["options"][0]
    after = client.post(f"/v1/ddx/sessions/{sid}/answers", json={"evidence": q["evidence_id"], "value": value}, headers=h)
    assert after.status_code == 200 and len(after.json()["state"]["answers"]) >= 1
    assert client.get(f"/v1/ddx/sessions/{sid}", headers=h).json()["state"]["answers"] == after.json()["state"]["answers"]
    assert_problem(client.post(f"/v1/ddx/sessions/{sid}/answers", json={"evidence": "NOPE", "value": True}, headers=h), 422)


def test_ddx_session_reads_the_record_and_takes_clinician_overrides(client, governance, subject_id):
    h = bearer(governance["keys"].full)
    r = client.post("/v1/ddx/sessions", json={"subject_id": subject_id, "initial_evidence": "E_53", "budget": 15}, headers=h)
    assert r.status_code == 201, r.text
    sid, st = r.json()["session_id"], r.json()["state"]
    record = [a for a in st["answers"] if a["source"] == "record"]
    assert record and all(a["record_codes"] and a["present"] for a in record)  # the Eunomia subject's SNOMED codes
    assert st["sex"] in ("female", "male") and st["answer_model"].startswith("am-")  # sex from the record, fitted model
    assert st["next_question"]["evidence_id"] not in {a["evidence_id"] for a in record}
    first = record[0]["evidence_id"]
    over = client.post(f"/v1/ddx/sessions/{sid}/answers", json={"evidence": first, "value": False, "source": "clinician"},
                       headers=h).json()["state"]  # fmt: skip
    mine = [a for a in over["answers"] if a["evidence_id"] == first]
    assert len(mine) == 1 and mine[0]["source"] == "clinician" and mine[0]["present"] is False
    assert_problem(client.post("/v1/ddx/sessions", json={"subject_id": 987654321}, headers=h), 404)


def test_model_card(client, governance):
    h = bearer(governance["keys"].full)
    version = governance["versions"]["demo"]
    r = client.get(f"/v1/models/{version}/card", headers=h)
    assert r.status_code == 200, r.text
    card = r.json()
    assert version in json.dumps(card)
    html = client.get(f"/v1/models/{version}/card?format=html", headers=h)
    assert html.headers["content-type"].startswith("text/html") and "<html" in html.text.lower()


def test_real_foundation_model_prediction_and_riskassessment(app_factory, governance, real_model, subject_id):
    """The trained fm-tiny checkpoint through model.generate: numbers from rollouts, not from a stand-in."""
    from fastapi.testclient import TestClient
    from fhir.resources.R4B.bundle import Bundle

    h = bearer(governance["keys"].full)
    with TestClient(app_factory(with_model=False, rollout_samples=8)) as c:
        r = c.post("/v1/predict", json={"subject_id": subject_id, "model_version": real_model}, headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == real_model and body["n_samples"] == 8
        assert {x["outcome"] for x in body["risks"]} == {"death", "admission"}
        for x in body["risks"]:
            assert 0 <= x["ci_low"] <= x["probability"] <= x["ci_high"] <= 1
            assert round(x["probability"] * 8) == x["probability"] * 8  # a share of the 8 sampled futures
        # evidence comes from the record (reasoning.evidence) or the answer says why there is none
        cited = [e for x in body["risks"] for e in x["evidence"]]
        assert cited or any("insufficient evidence" in w for w in body["warnings"]), body
        for e in cited:
            assert e["code"] and e["time"] <= body["prediction_time"]
        params = {"resourceType": "Parameters", "parameter": [
            {"name": "subject", "valueReference": {"reference": f"Patient/{subject_id}"}},
            {"name": "modelVersion", "valueString": real_model}]}  # fmt: skip
        fhir = c.post("/fhir/RiskAssessment/$predict", json=params, headers=h)
        assert fhir.status_code == 200, fhir.text
        ra = Bundle.model_validate(fhir.json()).entry[0].resource
        assert ra.method.coding[0].code == real_model and ra.status == "preliminary"
        # The other registered version has no trained checkpoint: a clear 503, never made-up numbers.
        no_ckpt = c.post("/v1/predict", json={"subject_id": subject_id, "model_version": governance["versions"]["demo"]}, headers=h)
        assert_problem(no_ckpt, 503)


def test_treatment_check(client, governance, subject_id):
    h = bearer(governance["keys"].full)
    body = {"medications": [{"code": "RxNorm//11289"}, {"name": "aspirin 81 MG Oral Tablet"}], "allergies": ["penicillin"], "egfr": 25.0}
    r = client.post("/v1/treatment/check", json=body, headers=h)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert {(i["ingredient_a"], i["ingredient_b"]) for i in result["interactions"]} == {("aspirin", "warfarin")}
    assert result["highest_severity"] in ("major", "contraindicated") and not result["safe"]
    from_store = client.post("/v1/treatment/check", json={"medications": [{"name": "metformin"}], "subject_id": subject_id}, headers=h)
    assert from_store.status_code == 200
    assert_problem(client.post("/v1/treatment/check", json=body, headers=bearer(governance["keys"].narrow)), 403)


def test_the_demo_key_may_use_every_route_the_demo_shows():
    """`make demo` prints one key for the web page and the API examples: it must carry each route's scope."""
    from clinfm.govern import scope_allows
    from clinfm.govern.demo import DEMO_SCOPES
    from clinfm.serve import deps
    from clinfm.serve.security import Principal, allowed

    demo = Principal(key_id="k", org="demo", actor="demo-api", scopes=frozenset(DEMO_SCOPES))
    for name in ("MODELS_READ", "PREDICT", "DDX_CREATE", "DDX_UPDATE", "DDX_READ", "TREATMENT", "TIMELINE"):
        assert allowed(demo, getattr(deps, name), scope_allows), name
