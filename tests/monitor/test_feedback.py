"""Feedback round-trips from the CDS Hooks endpoint of a real app into the summary; a silent model's predictions
are stored (and reach the prediction store) but produce no cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinfm.monitor.feedback import feedback_summary, is_not_useful
from clinfm.monitor.store import PredictionStore, import_serve_predictions
from tests.serve.conftest import FULL_SCOPES, CountForecaster, bearer, make_settings

FIXTURE_BUNDLE = Path(__file__).resolve().parents[1] / "fixtures" / "fhir" / "synthea_patient_1.json"
HOOK = {"hook": "patient-view", "hookInstance": "d1e8e4b9-0c3e-4a3c-9a4d-000000000009"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, eunomia_meds):
    """Organizations ``demo`` (a model in general release) and ``quiet`` (a silent one), each with a full key."""
    from clinfm.deid.structured import create_secret
    from clinfm.govern import access as A
    from clinfm.govern.db import ModelVersionRecord, session_scope
    from clinfm.govern.registry import register_model

    home = tmp_path_factory.mktemp("served")
    db = f"sqlite:///{home / 'registry.db'}"
    run = home / "run"
    run.mkdir()
    (run / "config.json").write_text('{"model": {"n_layer": 1}}')
    keys, versions = {}, {}
    for org, state in (("demo", "general"), ("quiet", "silent")):
        A.create_organization(org, actor="test", db=db)
        A.create_service_account(org, "svc", actor="test", db=db)
        keys[org] = A.create_api_key(
            org, "svc", FULL_SCOPES, actor="test", rate_per_minute=100_000, db=db
        ).key
        v = register_model("fm-test", run, eunomia_meds, "test", org=org, db=db)
        with session_scope(db, write=True) as s:  # the gates are governance's tests; serving needs the state
            s.get(ModelVersionRecord, v.id).state = state
        versions[org] = v.id
    return {"db": db, "keys": keys, "versions": versions, "secret": create_secret(home / "tenant.key")}


@pytest.fixture()
def client(served, eunomia_meds, tmp_path):
    from fastapi.testclient import TestClient

    from clinfm.serve import create_app

    app = create_app(make_settings(tmp_path, served, eunomia_meds, served["secret"]))
    app.state.serve.predictions.loader = CountForecaster
    with TestClient(app) as c:
        yield c


def _subject(eunomia_meds) -> str:
    from clinfm.data.store import SubjectDatabase

    db = SubjectDatabase(eunomia_meds)
    return str(max(list(db)[:100], key=lambda s: len(db.table(s))))


def test_cds_feedback_round_trips_into_the_summary(client, served, eunomia_meds, tmp_path):
    h = bearer(served["keys"]["demo"])
    cards = client.post("/cds-services/clinfm-risk", json={**HOOK, "context": {"patientId": _subject(eunomia_meds)}},
                        headers=h).json()["cards"]  # fmt: skip
    assert len(cards) >= 2
    not_useful = {"code": "not-useful", "system": "https://clinfm.example/override", "display": "Not useful"}
    fb = {"feedback": [
        {"card": cards[0]["uuid"], "outcome": "overridden", "overrideReason": {"reason": not_useful, "userComment": "meh"}},
        {"card": cards[1]["uuid"], "outcome": "accepted"},
    ]}  # fmt: skip
    assert client.post("/cds-services/clinfm-risk/feedback", json=fb, headers=h).json() == {"stored": 2}
    (tmp_path / "data" / "web-feedback.jsonl").write_text(json.dumps(
        {"received_at": "2024-01-01T00:00:00Z", "org": "demo", "model_version": served["versions"]["demo"],
         "prediction_id": None, "rating": "not_useful", "reason": None}) + "\n")  # fmt: skip

    summary = feedback_summary(tmp_path / "data")
    risk = summary.group(served["versions"]["demo"], "risk")
    assert risk.cards_issued == len(cards) and risk.feedback == 2 and risk.response_rate == 2 / len(cards)
    assert (risk.accepted, risk.overridden, risk.not_useful) == (1, 1, 1)
    assert risk.override_reasons == {"not-useful": 1} and risk.override_rate == 0.5
    web = summary.group(served["versions"]["demo"], "web")
    assert web.web_not_useful == 1 and summary.unmatched == 0
    assert feedback_summary(tmp_path / "data", model_version="other").groups == []


def test_silent_model_predictions_are_stored_without_cards(client, served, eunomia_meds, tmp_path):
    h = bearer(served["keys"]["quiet"])
    bundle = json.loads(FIXTURE_BUNDLE.read_text())  # the served dataset is demo's: quiet sends inline data
    r = client.post("/cds-services/clinfm-risk", json={**HOOK, "context": {"patientId": "p"}, "prefetch": {"all": bundle}},
                    headers=h)  # fmt: skip
    assert r.status_code == 200 and r.json() == {"cards": []}
    store = PredictionStore(tmp_path / "monitoring.db")
    assert import_serve_predictions(store, tmp_path / "data" / "predictions.jsonl") >= 1
    stored = store.predictions(served["versions"]["quiet"], source="serve")
    assert stored.height == 1 and stored["withheld"].all() and stored["score"].is_not_null().all()
    summary = feedback_summary(tmp_path / "data")
    assert (
        summary.group(served["versions"]["quiet"], "risk") is None
    )  # no card, so nothing to give feedback on


def test_not_useful_reason_spellings():
    assert is_not_useful({"code": "NOT_USEFUL"}) and is_not_useful({"display": "not useful"})
    assert not is_not_useful({"code": "not-relevant"}) and not is_not_useful(None)
