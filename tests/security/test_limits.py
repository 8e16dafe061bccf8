"""Per-tenant limits: one organization cannot evict another's sessions, a key's quota holds across server
processes sharing the database, failed authentication is throttled per key id and per client and costs the same
for unknown and known key ids, and failures, refusals and throttling are audited."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from clinfm.govern.audit import list_entries
from tests.serve.conftest import bearer


def test_one_org_cannot_evict_another_orgs_ddx_session(app_factory, governance):
    keys = governance["keys"]
    with TestClient(app_factory(ddx_sessions_per_org=5)) as c:
        mine = c.post("/v1/ddx/sessions", json={"age": 40, "sex": "female"}, headers=bearer(keys.other_org))
        assert mine.status_code == 201
        for _ in range(12):  # a flood from another tenant
            assert c.post("/v1/ddx/sessions", json={"age": 40}, headers=bearer(keys.full)).status_code == 201
        sid = mine.json()["session_id"]
        assert c.get(f"/v1/ddx/sessions/{sid}", headers=bearer(keys.other_org)).status_code == 200
        assert len(c.app.state.serve.ddx_sessions.of("demo")) == 5


def test_quota_is_shared_by_processes_on_one_database(app_factory, governance):
    key = bearer(governance["keys"].quota)  # 3 requests a minute
    ok = 0
    with TestClient(app_factory()) as first, TestClient(app_factory()) as second:  # two servers, one database
        for c in (first, second, first, second):
            for _ in range(3):
                ok += c.get("/v1/models", headers=key).status_code == 200
    assert ok <= 3, ok


def test_wrong_secrets_for_a_key_id_are_throttled(client, governance):
    key_id = governance["keys"].narrow.split("_")[1]
    statuses = [client.get("/v1/models", headers=bearer(f"cfm_{key_id}_wrong{i}")).status_code for i in range(14)]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429
    r = client.get("/v1/models", headers=bearer(f"cfm_{key_id}_wrong"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_one_client_guessing_many_key_ids_is_throttled(app_factory):
    with TestClient(app_factory()) as c:
        statuses = [c.get("/v1/models", headers=bearer(f"cfm_{i:012x}_guess")).status_code for i in range(40)]
    assert 429 in statuses and statuses[0] == 401


def test_unknown_key_id_costs_one_slow_hash_like_a_known_one(governance, monkeypatch):
    from clinfm.govern import access

    calls = []
    real = hashlib.scrypt
    monkeypatch.setattr(access.hashlib, "scrypt", lambda *a, **k: calls.append(1) or real(*a, **k))
    for key in ("cfm_000000000000_nope", governance["keys"].narrow[:-3] + "xyz"):
        try:
            access.authenticate(key, db=governance["db"])
        except access.AuthenticationError:
            pass
    assert len(calls) == 2


def test_failures_refusals_and_throttling_are_audited(app_factory, governance, subject_id):
    keys = governance["keys"]
    with TestClient(app_factory()) as c:
        c.get("/v1/models", headers=bearer("cfm_aaaaaaaaaaaa_bad"))
        c.post("/v1/predict", json={"subject_id": subject_id}, headers=bearer(keys.narrow))
        for _ in range(6):
            c.get("/v1/models", headers=bearer(keys.quota))
    actions = {e.action for e in list_entries(db=governance["db"], limit=100_000)}
    assert {"auth.failure", "auth.forbidden", "auth.throttled"} <= actions


def test_failures_from_one_client_do_not_lock_the_key_out_for_others():
    from clinfm.serve.limits import AuthThrottle
    from clinfm.serve.security import QuotaExceeded

    throttle = AuthThrottle()
    for _ in range(5):
        throttle.failed("k1", "10.0.0.66")
    with pytest.raises(QuotaExceeded):
        throttle.check("k1", "10.0.0.66")
    throttle.check("k1", "10.0.0.7")  # the key's owner, elsewhere, still gets through
