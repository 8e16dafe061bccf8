"""Alembic migrations of the governance database, run from code (no alembic.ini): ``upgrade(url_or_engine)``.

A new revision is a new file in ``versions/`` (``script.py.mako`` is its template) revising the newest one;
``tests/govern/test_db.py`` proves the ORM tables in ``db.py`` and the migrated schema agree.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

HERE = Path(__file__).resolve().parent
PG_LOCK_ID = 0x636C6E666D  # "clnfm": one migration at a time per PostgreSQL database, across processes


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def _engine(db: str | Engine | None) -> Engine:
    from clinfm.govern.db import default_url, make_engine

    return db if isinstance(db, Engine) else make_engine(db or default_url())


def _lock(connection: Connection) -> None:
    """Serialize migrations: SQLite already holds its write lock (``BEGIN IMMEDIATE``); PostgreSQL takes an
    advisory lock until commit, so a second process finds the schema migrated instead of racing to create it."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_LOCK_ID})


def upgrade(db: str | Engine | None = None, revision: str = "head") -> None:
    """Migrate the database at ``db`` (URL or engine; default: the configured registry) up to ``revision``."""
    engine = _engine(db)
    with engine.begin() as connection:
        _lock(connection)
        command.upgrade(_config(connection), revision)


def downgrade(db: str | Engine | None = None, revision: str = "base") -> None:
    """Migrate the database at ``db`` down to ``revision`` (``base``: drop every governance table)."""
    engine = _engine(db)
    with engine.begin() as connection:
        _lock(connection)
        command.downgrade(_config(connection), revision)


def current_revision(db: str | Engine | None = None) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with _engine(db).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this code."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration revision is shipped in {HERE / 'versions'}")
    return head
