"""Security suite fixtures: an isolated registry home (keys, checkpoints) and database file per test."""

from __future__ import annotations

import pytest

from clinfm.govern.db import dispose_engines


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Nothing a test does reaches ~/.clinfm, a configured database or configured audit keys."""
    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    for name in ("CLINFM_DATABASE_URL", "CLINFM_AUDIT_KEY", "CLINFM_AUDIT_KEY_FILE", "CLINFM_AUDIT_SIGNING_KEY_FILE",
                 "CLINFM_AUDIT_VERIFY_KEY_FILE", "CLINFM_AUDIT_CHECKPOINTS", "CLINFM_ENV"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    yield
    dispose_engines()


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"
