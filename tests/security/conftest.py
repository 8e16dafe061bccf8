"""Security suite fixtures: an isolated registry home per audit test, and the serving app over a SQLite registry
with the keys of every kind that ``tests/serve`` uses (``build_governance``)."""

from __future__ import annotations

import pytest

from clinfm.govern.db import dispose_engines
# the serving app, its client and a subject come from tests/serve; they use this file's SQLite-only governance
from tests.serve.conftest import app_factory, build_governance, client, secret_file, subject_id  # noqa: F401

AUDIT_ENV = ("CLINFM_DATABASE_URL", "CLINFM_AUDIT_KEY", "CLINFM_AUDIT_KEY_FILE", "CLINFM_AUDIT_SIGNING_KEY_FILE",
             "CLINFM_AUDIT_VERIFY_KEY_FILE", "CLINFM_AUDIT_CHECKPOINTS", "CLINFM_ENV")  # fmt: skip


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """Nothing a test does reaches ~/.clinfm, a configured database or configured audit keys."""
    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    for name in AUDIT_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    dispose_engines()


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture(scope="session")
def governance(tmp_path_factory, eunomia_meds):
    """The serving tests' governance store, on SQLite only (tests/serve covers PostgreSQL)."""
    home = tmp_path_factory.mktemp("security-govern")
    return build_governance(f"sqlite:///{home / 'registry.db'}", home, eunomia_meds)

