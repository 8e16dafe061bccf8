"""Every request the hardening probe found answering 500, or answering wrongly, now gets a 4xx problem document
that names the field; and no probe, of any kind, gets a 5xx."""

from __future__ import annotations

import pytest

from tests.security.probes import PROBES, Probe, order_select
from tests.serve.conftest import bearer

PROBLEM = "application/problem+json"


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_probe_gets_a_problem_not_a_500(client, governance, probe: Probe):
    headers = bearer(governance["keys"].full)
    if probe.path.startswith("/web/"):
        login = client.post("/web/login", data={"api_key": governance["keys"].full}, follow_redirects=False)
        assert login.status_code == 303
    r = client.request(probe.method, probe.path, json=probe.body, headers=headers)
    assert r.status_code == probe.expect, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(PROBLEM) or r.headers["content-type"].startswith("text/html")
    assert "Traceback" not in r.text and len(r.text) < 5000


def test_egfr_refusals_name_the_value_range(client, governance):
    h = bearer(governance["keys"].full)
    r = client.post("/cds-services/clinfm-medication-safety", json=order_select(-50), headers=h)
    assert r.status_code == 422 and "eGFR" in r.json()["detail"] and "0" in r.json()["detail"]
    r = client.post("/cds-services/clinfm-medication-safety", json=order_select(True), headers=h)
    assert r.status_code == 422 and "eGFR" in r.json()["detail"]


def test_low_egfr_still_gives_the_metformin_card(client, governance):
    r = client.post("/cds-services/clinfm-medication-safety", json=order_select(10), headers=bearer(governance["keys"].full))
    assert r.status_code == 200, r.text
    assert any(c["indicator"] == "critical" and "egfr 10" in c["summary"].lower() for c in r.json()["cards"])


def test_dates_outside_range_name_field_and_range(client, governance):
    r = client.post("/v1/predict", json={"subject_id": 1, "prediction_time": "9999-06-01T00:00:00"},
                    headers=bearer(governance["keys"].full))  # fmt: skip
    detail = r.json()["detail"]
    assert r.status_code == 422 and "prediction_time" in detail and "1900-01-01" in detail


def test_fractional_ids_are_refused_not_rounded(client, governance):
    r = client.post("/v1/predict", json={"subject_id": 1234567890123451347.5}, headers=bearer(governance["keys"].full))
    assert r.status_code == 422 and "subject_id" in r.json()["detail"]
