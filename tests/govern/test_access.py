"""Tenants see only their own rows; keys are hashed, scoped, rate-limited, revocable and expiring; consent holds."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time

import pytest
from sqlalchemy import select

from clinfm.govern import (
    AuthenticationError,
    Forbidden,
    NotFound,
    TenantError,
    attach_report,
    authenticate,
    authorize,
    check_rate,
    create_api_key,
    create_organization,
    create_service_account,
    create_user,
    filter_opted_out,
    get_model,
    is_opted_out,
    list_entries,
    list_models,
    list_users,
    record_opt_out,
    register_model,
    revoke_api_key,
    scope_allows,
    withdraw_opt_out,
)
from clinfm.govern.access import parse_scope
from clinfm.govern.db import ApiKey, ConsentOptOut, ModelVersionRecord, Organization, Report, session_scope


def make_two_tenants(db, run_dir, dataset_dir, good_report) -> dict:
    """Organizations a and b, each with a model, a report, a user, a service key and an opted-out subject."""
    out = {}
    for org in ("a", "b"):
        create_organization(org, actor="root", db=db)
        create_user(org, f"owner-{org}", ["clinical_owner"], actor="root", db=db)
        create_service_account(org, f"svc-{org}", actor="root", db=db)
        mv = register_model(f"model-{org}", run_dir, dataset_dir, f"owner-{org}", org=org, db=db)
        attach_report(mv.id, good_report, actor=f"owner-{org}", db=db)
        record_opt_out(org, 1000 if org == "a" else 2000, actor=f"owner-{org}", db=db)
        key = create_api_key(
            org, f"svc-{org}", ["system/Model.r", "system/RiskAssessment.rs"], actor="root", db=db
        )
        out[org] = {"model": mv, "key": key}
    return out


@pytest.fixture
def two_tenants(db, run_dir, dataset_dir, good_report):
    return make_two_tenants(db, run_dir, dataset_dir, good_report)


def test_a_key_of_one_organization_reads_nothing_of_another(db, two_tenants):
    principal = authenticate(two_tenants["a"]["key"].key, db=db)
    org = principal.org_id
    assert org == "a" and principal.roles == ["api_client"]
    b_model = two_tenants["b"]["model"]

    assert [m.name for m in list_models(org=org, db=db)] == ["model-a"]
    with pytest.raises(NotFound):
        get_model(b_model.id, org=org, db=db)
    with pytest.raises(NotFound):
        attach_report(b_model.id, {"x": 1}, actor="svc-a", org=org, db=db)
    assert {u.username for u in list_users(org, db=db)} == {"owner-a", "svc-a"}
    assert {e.org_id for e in list_entries(org=org, db=db)} == {"a"}
    assert not is_opted_out(org, 2000, db=db) and is_opted_out(org, 1000, db=db)
    with pytest.raises(NotFound):
        revoke_api_key(two_tenants["b"]["key"].key_id, actor="svc-a", reason="hostile", org=org, db=db)

    assert [m.name for m in list_models(org="b", db=db)] == ["model-b"]  # the cached filter takes the new org
    assert len(list_models(db=db)) == 2  # the platform operator (no org) sees both

    with session_scope(db, org=org) as session:  # the one filter covers joins and every tenant table
        joined = session.execute(select(Report, ModelVersionRecord).join(ModelVersionRecord)).all()
        assert {mv.org_id for _, mv in joined} == {"a"}
        assert session.execute(select(Organization.id)).scalars().all() == ["a"]
        assert {k.org_id for k in session.execute(select(ApiKey)).scalars()} == {"a"}
        assert session.get(ModelVersionRecord, b_model.id) is None


def test_tenant_isolation_on_postgresql(pg_db, run_dir, dataset_dir, good_report):
    tenants = make_two_tenants(pg_db, run_dir, dataset_dir, good_report)
    test_a_key_of_one_organization_reads_nothing_of_another(pg_db, tenants)


def test_a_tenant_session_cannot_write_another_tenants_rows(db, two_tenants):
    refused = pytest.raises(TenantError, match="organization 'b' written from a session of 'a'")
    with refused, session_scope(db, org="a", write=True) as session:
        session.add(
            ConsentOptOut(
                subject_id=5,
                org_id="b",
                recorded_at=dt.datetime.now(dt.UTC),
                recorded_by="svc-a",
            )
        )


def test_keys_are_stored_only_as_salted_scrypt_hashes(db, tmp_path, two_tenants):
    key = two_tenants["a"]["key"]
    assert key.key.startswith(f"cfm_{key.key_id}_")
    secret = key.key.split("_", 2)[2]
    raw = (tmp_path / "registry.db").read_bytes()
    assert secret.encode() not in raw
    stored = (
        sqlite3.connect(tmp_path / "registry.db")
        .execute("SELECT secret_hash FROM api_keys WHERE id = ?", (key.key_id,))
        .fetchone()[0]
    )
    assert stored.startswith("scrypt$16384$8$1$")
    entry = next(
        e for e in list_entries(db=db) if e.action == "api_key.create" and e.details["key_id"] == key.key_id
    )
    assert secret not in entry.model_dump_json()


def test_unknown_malformed_revoked_and_expired_keys_are_refused(db, two_tenants):
    key = two_tenants["a"]["key"]
    with pytest.raises(AuthenticationError, match="malformed"):
        authenticate("not-a-key", db=db)
    with pytest.raises(AuthenticationError, match="unknown API key 'ffffffffffff'"):
        authenticate("cfm_ffffffffffff_secret", db=db)
    with pytest.raises(AuthenticationError, match="unknown API key"):
        authenticate(key.key[:-2] + "xx", db=db)  # right id, wrong secret

    revoke_api_key(key.key_id, actor="owner-a", reason="laptop lost", org="a", db=db)
    with pytest.raises(AuthenticationError, match="was revoked"):
        authenticate(key.key, db=db)

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    expiring = create_api_key("b", "svc-b", ["system/Model.r"], expires_at=soon, actor="root", db=db)
    assert authenticate(expiring.key, db=db).org_id == "b"
    with pytest.raises(AuthenticationError, match="expired"):
        authenticate(expiring.key, now=soon + dt.timedelta(seconds=1), db=db)
    assert [e.action for e in list_entries(org="a", db=db)].count("api_key.revoke") == 1


def test_scope_matching_follows_smart_v2():
    granted = ["system/RiskAssessment.rs", "system/Model.r", "user/*.r"]
    assert scope_allows(granted, "system/RiskAssessment.r")
    assert scope_allows(granted, "system/RiskAssessment.rs")
    assert not scope_allows(granted, "system/RiskAssessment.c")
    assert not scope_allows(granted, "system/Model.rs")
    assert scope_allows(granted, "user/Patient.r") and not scope_allows(granted, "user/Patient.u")
    assert not scope_allows(granted, "patient/Model.r")  # contexts never stand in for each other
    assert scope_allows(["system/Model.c", "system/Model.r"], "system/Model.cr")  # permissions combine
    assert scope_allows(["system/*.cruds"], "system/Observation.d")
    assert scope_allows(["system/Observation.read"], "system/Observation.rs")  # SMART v1 spelling
    assert not scope_allows(["system/Observation.rs?category=laboratory"], "system/Observation.rs")
    assert scope_allows(
        ["system/Observation.rs?category=laboratory"], "system/Observation.rs?category=laboratory"
    )
    with pytest.raises(ValueError, match="subset of 'cruds'"):
        parse_scope("system/Model.rx")
    with pytest.raises(ValueError, match="SMART v2"):
        parse_scope("Model.read")


def test_authorize_and_bad_scopes_at_issue(db, two_tenants):
    principal = authenticate(two_tenants["a"]["key"].key, db=db)
    authorize(principal, "system/RiskAssessment.s")
    with pytest.raises(Forbidden, match="lacks scope 'system/Model.c'"):
        authorize(principal, "system/Model.c")
    with pytest.raises(ValueError, match="not SMART v2"):
        create_api_key("a", "svc-a", ["everything"], actor="root", db=db)


def test_quota_exhaustion_gives_retry_after(db, two_tenants):
    key = create_api_key("a", "svc-a", ["system/Model.r"], rate_per_minute=3, actor="root", db=db)
    t0 = time.time() + 5  # a moment after the bucket was filled
    decisions = [check_rate(key.key_id, now=t0, db=db) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after == pytest.approx(20.0, abs=0.5)  # 3/min refills one token per 20 s
    assert not check_rate(key.key_id, now=t0 + 10, db=db).allowed
    assert check_rate(key.key_id, now=t0 + 21, db=db).allowed
    other = two_tenants["a"]["key"]  # buckets are per key
    assert check_rate(other.key_id, now=t0, db=db).allowed


def test_opt_outs_are_honoured_for_training_and_inference(db, two_tenants):
    record_opt_out("a", 7, actor="owner-a", db=db)
    assert filter_opted_out("a", [5, 7, 1000, 2000, 9], db=db) == [5, 2000, 9]
    assert filter_opted_out("b", [5, 7, 1000, 2000], db=db) == [5, 7, 1000]
    assert is_opted_out("a", 7, db=db)
    withdraw_opt_out("a", 7, actor="owner-a", db=db)
    assert not is_opted_out("a", 7, db=db)
    consent = [(e.action, e.subject_id) for e in list_entries(org="a", db=db) if e.purpose == "consent"]
    assert consent == [("consent.opt_out", "1000"), ("consent.opt_out", "7"), ("consent.opt_in", "7")]


def test_roles_and_organizations_are_checked(db):
    with pytest.raises(ValueError, match="lowercase slug"):
        create_organization("Acme Health", actor="root", db=db)
    create_organization("acme", actor="root", db=db)
    with pytest.raises(ValueError, match="unknown role"):
        create_user("acme", "x", ["superuser"], actor="root", db=db)
    with pytest.raises(NotFound, match="organization 'nowhere' does not exist"):
        create_user("nowhere", "x", ["clinician"], actor="root", db=db)
