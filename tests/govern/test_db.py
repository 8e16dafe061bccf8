"""Migrations build the whole schema on an empty database and remove it again, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from clinfm.govern import db as gdb
from clinfm.govern.migrations import current_revision, downgrade, head_revision, upgrade

TABLES = {
    "organizations",
    "users",
    "api_keys",
    "rate_buckets",
    "consent_opt_outs",
    "model_versions",
    "reports",
    "transitions",
    "audit_log",
    "audit_head",
}


def _roundtrip(url: str) -> None:
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == head_revision()
    engine = gdb.make_engine(url)
    with engine.connect() as conn:
        assert TABLES <= set(inspect(conn).get_table_names())
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), gdb.Base.metadata
        )
        assert diff == [], f"ORM tables and migrations disagree: {diff}"
    downgrade(url)
    assert current_revision(url) is None
    with engine.connect() as conn:
        assert not TABLES & set(inspect(conn).get_table_names())
    engine.dispose()


def test_sqlite_upgrade_then_downgrade(db):
    _roundtrip(db)


@pytest.mark.usefixtures("postgres_url")
def test_postgresql_upgrade_then_downgrade(pg_db):
    _roundtrip(pg_db)


def test_first_use_migrates_the_default_file(tmp_path):
    from clinfm.govern import list_models

    assert gdb.default_url() == f"sqlite:///{tmp_path / 'home' / 'registry.db'}"
    assert list_models() == []
    assert (tmp_path / "home" / "registry.db").is_file()
    assert current_revision(gdb.default_url()) == head_revision()


def test_database_url_overrides_and_bare_postgres_gets_psycopg(monkeypatch, tmp_path):
    monkeypatch.setenv("CLINFM_DATABASE_URL", "postgresql://u@h/db")
    assert gdb.default_url() == "postgresql://u@h/db"
    assert gdb.normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert gdb.normalize_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
