"""Serving fixtures: the Eunomia dataset, a real governance database with organizations, keys of every kind and
a registered model, and an app built over them by ``create_app``.

Most tests plug :class:`CountForecaster` into the model seam, so they run in milliseconds: a stand-in that
derives its estimates from the subject's own events (so results differ per subject and per prediction time),
never fixed numbers. ``real_model`` trains the packaged fm-tiny config and serves its rollouts.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from clinfm.defaults import packaged
from clinfm.serve.backends import Attribution, Estimate, Forecast, ForecastQuery

FULL_SCOPES = [
    "system/RiskAssessment.rs", "system/Model.r", "system/ClinicalImpression.cru", "system/DetectedIssue.rs",
    "system/Patient.r", "system/Assist.c",
]  # fmt: skip


class CountForecaster:
    """Test stand-in for the foundation model: estimates from the subject's event counts before the time."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.calls = 0

    def forecast_batch(self, queries: list[ForecastQuery]) -> list[Forecast]:
        self.calls += 1
        return [self._one(q) for q in queries]

    def _one(self, q: ForecastQuery) -> Forecast:
        timed = [e for e in q.subject.events if e.time is not None]
        assert all(e.time < q.prediction_time for e in timed), "an event after the prediction time reached the model"
        visits = sum(e.code.startswith("VISIT//") for e in timed)
        dx = [e for e in timed if e.code.startswith(("SNOMED//", "ICD10CM//"))]
        p_ip = min(0.95, (visits % 17 + 1) / 20)
        p_death = min(0.9, len(dx) / (len(timed) + 10))
        ev = [Attribution(e.time, e.code, "", effect=0.01 * (i + 1)) for i, e in enumerate(dx[-2:])]
        outcomes = q.outcomes or ("VISIT//IP//START", "MEDS_DEATH")
        risks = [Estimate(o, "", p, max(0.0, p - 0.05), min(1.0, p + 0.05), ev)
                 for o, p in zip(outcomes, [p_ip, p_death] * len(outcomes))]  # fmt: skip
        nxt = [Estimate(e.code, "", 0.1, 0.05, 0.15) for e in dx[-3:]]
        return Forecast(risks=risks, next_diagnoses=nxt, n_samples=q.n_samples)


@dataclass
class Keys:
    full: str
    other_org: str
    narrow: str
    expired: str
    quota: str
    silent_org: str


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def governance(request, tmp_path_factory, eunomia_meds):
    """The governance store behind the API: every API test runs on SQLite and on PostgreSQL (a throwaway
    server; those runs skip, saying why, where none can be started)."""
    home = tmp_path_factory.mktemp("govern")
    db = f"sqlite:///{home / 'registry.db'}"
    if request.param == "postgresql":
        import psycopg

        server = request.getfixturevalue("postgres_url")
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("CREATE DATABASE serve_tests")
        db = server.rsplit("/", 1)[0] + "/serve_tests"
    return build_governance(db, home, eunomia_meds)


def build_governance(db: str, home: Path, eunomia_meds: Path) -> dict:
    """Organizations demo/other/quiet, keys of every kind, and fm-test registered (general for demo, silent
    for quiet) in the database at ``db``."""
    from clinfm.govern import access as A
    from clinfm.govern.db import ApiKey, ModelVersionRecord, session_scope
    from clinfm.govern.registry import register_model

    for org in ("demo", "other", "quiet"):
        A.create_organization(org, actor="test", db=db)
        A.create_service_account(org, "svc", actor="test", db=db)
    keys = Keys(
        full=A.create_api_key("demo", "svc", FULL_SCOPES, actor="test", rate_per_minute=100_000, db=db).key,
        other_org=A.create_api_key("other", "svc", FULL_SCOPES, actor="test", rate_per_minute=100_000, db=db).key,
        narrow=A.create_api_key("demo", "svc", ["system/Model.r"], actor="test", rate_per_minute=100_000, db=db).key,
        expired="",
        quota=A.create_api_key("demo", "svc", FULL_SCOPES, actor="test", rate_per_minute=3, db=db).key,
        silent_org=A.create_api_key("quiet", "svc", FULL_SCOPES, actor="test", rate_per_minute=100_000, db=db).key,
    )
    expiring = A.create_api_key("demo", "svc", FULL_SCOPES, actor="test", db=db,
                                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))  # fmt: skip
    with session_scope(db, write=True) as s:  # age the key past its expiry (creation refuses a past date)
        s.get(ApiKey, expiring.key_id).expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    keys.expired = expiring.key
    run = home / "run"
    run.mkdir()
    (run / "config.json").write_text('{"model": {"n_layer": 1}}')
    versions = {}
    for org, state in (("demo", "general"), ("quiet", "silent")):
        v = register_model("fm-test", run, eunomia_meds, "test", org=org, db=db)
        with session_scope(db, write=True) as s:  # lifecycle gates are governance's tests; serving needs the state
            s.get(ModelVersionRecord, v.id).state = state
        versions[org] = v.id
    return {"db": db, "keys": keys, "versions": versions, "home": home}


@pytest.fixture(scope="session")
def secret_file(tmp_path_factory) -> Path:
    from clinfm.deid.structured import create_secret

    return create_secret(tmp_path_factory.mktemp("secret") / "tenant.key")


def make_settings(tmp_path: Path, governance, eunomia_meds, secret_file, **overrides):
    from clinfm.serve.settings import ServeSettings

    values = dict(env="test", data_dir=tmp_path / "data", dataset_path=eunomia_meds, dataset_org="demo",
                  database_url=governance["db"], tenant_secret_file=secret_file, rollout_samples=16, batch_window_ms=1.0)  # fmt: skip
    values.update(overrides)
    return ServeSettings(**values)


@pytest.fixture()
def app_factory(tmp_path, governance, eunomia_meds, secret_file):
    from clinfm.serve import create_app

    def build(with_model: bool = True, **overrides):
        app = create_app(make_settings(tmp_path, governance, eunomia_meds, secret_file, **overrides))
        if with_model:
            app.state.serve.predictions.loader = CountForecaster
        return app

    return build


@pytest.fixture()
def client(app_factory):
    from fastapi.testclient import TestClient

    with TestClient(app_factory()) as c:
        yield c


@pytest.fixture(scope="session")
def subject_id(eunomia_meds) -> int:
    from clinfm.data.store import SubjectDatabase

    db = SubjectDatabase(eunomia_meds)
    return max(list(db)[:200], key=lambda s: len(db.table(s)))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")


@pytest.fixture(scope="session")
def real_model(governance, eunomia_meds, tmp_path_factory) -> str:
    """A foundation model trained with the packaged fm-tiny config (seconds), registered for ``demo`` in ``pilot``."""
    from clinfm.govern.db import ModelVersionRecord, session_scope
    from clinfm.govern.registry import register_model
    from clinfm.model.train import pretrain

    run = tmp_path_factory.mktemp("fm-tiny") / "run"
    pretrain(eunomia_meds, packaged("models/fm-tiny.yaml"), run)
    v = register_model("fm-tiny", run, eunomia_meds, "test", org="demo", db=governance["db"])
    with session_scope(governance["db"], write=True) as s:
        s.get(ModelVersionRecord, v.id).state = "pilot"
    return v.id
