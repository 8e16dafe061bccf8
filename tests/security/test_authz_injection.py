"""Authorization across tenants and scopes, and injection attempts, on the security suite's own app: another
tenant's subjects, cards and sessions are unknown, a narrow key is refused, and SQL, path and markup payloads are
inert (refused or escaped, never a 500, never another tenant's row)."""

from __future__ import annotations

import pytest

from tests.serve.conftest import bearer

INJECTIONS = ["' OR '1'='1", "1; DROP TABLE api_keys; --", "../../../../etc/passwd", "%2e%2e%2f%2e%2e%2fetc",
              "<script>alert(1)</script>", "${jndi:ldap://x/a}", "{{7*7}}", "\x00", "mv_1' UNION SELECT secret_hash FROM api_keys--"]  # fmt: skip


def test_another_tenants_subject_card_and_model_are_unknown(client, governance, subject_id):
    keys, versions = governance["keys"], governance["versions"]
    other = bearer(keys.other_org)
    assert client.post("/v1/predict", json={"subject_id": subject_id}, headers=other).status_code == 404
    assert client.get(f"/v1/models/{versions['demo']}/card", headers=other).status_code == 404
    assert versions["demo"] not in client.get("/v1/models", headers=other).text
    r = client.post("/v1/predict", json={"subject_id": subject_id, "model_version": versions["quiet"]},
                    headers=bearer(keys.full))  # fmt: skip
    assert r.status_code == 404


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/predict", {"subject_id": 1}),
    ("POST", "/v1/ddx/sessions", {"age": 40}),
    ("POST", "/v1/treatment/check", {"medications": [{"name": "aspirin"}]}),
    ("POST", "/cds-services/clinfm-medication-safety", {"hook": "order-select", "hookInstance": "x", "context": {"patientId": "1"}}),
])  # fmt: skip
def test_a_narrow_key_is_refused_everywhere_but_its_scope(client, governance, method, path, body):
    r = client.request(method, path, json=body, headers=bearer(governance["keys"].narrow))
    assert r.status_code == 403 and "scope" in r.json()["detail"]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_payloads_are_inert(client, governance, payload):
    h = bearer(governance["keys"].full)
    responses = [
        client.post("/v1/predict", json={"subject_id": 1, "model_version": payload}, headers=h),
        client.post("/v1/predict", json={"subject_id": payload}, headers=h),
        client.post("/fhir/RiskAssessment/$predict", json={"resourceType": "Parameters", "parameter": [
            {"name": "subject", "valueReference": {"reference": f"Patient/{payload}"}}]}, headers=h),  # fmt: skip
        client.post("/cds-services/clinfm-risk", json={"hook": "patient-view", "hookInstance": payload,
                                                        "context": {"patientId": payload}}, headers=h),  # fmt: skip
        client.post("/v1/ddx/sessions", json={"initial_evidence": payload}, headers=h),
        client.post("/v1/treatment/check", json={"medications": [{"name": payload}], "allergies": [payload]}, headers=h),
    ]
    for r in responses:
        assert r.status_code < 500, (r.request.url, r.status_code, r.text[:300])
        text = r.text.replace(payload, "").replace(payload.replace("'", "\\'"), "")  # an echoed input is not a leak
        assert "scrypt$" not in text and "root:" not in text and "cfm_" not in text
        assert "<script>" not in r.text or r.headers["content-type"].startswith(("application/json", "application/problem+json"))


def test_markup_in_the_web_page_is_escaped(client, governance):
    login = client.post("/web/login", data={"api_key": governance["keys"].full}, follow_redirects=False)
    assert login.status_code == 303
    r = client.get("/web/", params={"subject_id": "<script>alert(1)</script>"})
    assert r.status_code == 422 and "<script>alert(1)</script>" not in r.text
