"""The governance database: its tables, engines (a SQLite file by default, any PostgreSQL URL) and sessions.

Tenant filtering lives here and only here: a session opened with ``org=`` sees and writes that organization's rows.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, with_loader_criteria

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first audit entry."""

LOCAL_ORG = "local"
"""The organization of a single-site install; the only one created on first use."""

DB = str | Engine | None
"""Where the registry lives: a URL, an engine, or None for :func:`default_url`."""


# --- location ----------------------------------------------------------------------------------------------
def clinfm_home() -> Path:
    """``$CLINFM_HOME`` or ``~/.clinfm``: the registry file and generated cards live here."""
    return Path(os.environ.get("CLINFM_HOME") or Path.home() / ".clinfm").expanduser()


def default_url() -> str:
    """``$CLINFM_DATABASE_URL`` (e.g. a PostgreSQL URL) or the SQLite file ``<clinfm_home>/registry.db``."""
    return os.environ.get("CLINFM_DATABASE_URL") or f"sqlite:///{clinfm_home() / 'registry.db'}"


def normalize_url(url: str) -> str:
    """Pick the psycopg 3 driver for a bare ``postgresql://`` (or ``postgres://``) URL."""
    for bare in ("postgres://", "postgresql://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


# --- column types ------------------------------------------------------------------------------------------
class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: governance times must be timezone-aware (UTC)")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- tables ------------------------------------------------------------------------------------------------
class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[str]: JSON, dt.datetime: UTCDateTime}


class Organization(Base):
    """A tenant: a hospital or research group. Its id is a short slug (``demo``, ``st-elsewhere``)."""

    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]


class TenantOwned:
    """Rows that belong to one organization; :func:`session_scope` filters them by ``org_id``."""

    org_id: Mapped[str] = mapped_column(String(64), ForeignKey("organizations.id"), index=True)


class User(TenantOwned, Base):
    """A person (``kind="user"``) or a service account (``kind="service"``) of one organization."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("org_id", "username"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    roles: Mapped[list[str]]
    created_at: Mapped[dt.datetime]


class ApiKey(TenantOwned, Base):
    """An API key: only its id (the public prefix) and a salted scrypt hash of its secret are stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(256))
    scopes: Mapped[list[str]]
    rate_per_minute: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class RateBucket(Base):
    """The token bucket of one API key (tokens left, and when they were last counted, in epoch seconds)."""

    __tablename__ = "rate_buckets"
    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id"), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class ConsentOptOut(TenantOwned, Base):
    """A subject (pseudonymous MEDS subject id) who opted out of training and inference at one organization."""

    __tablename__ = "consent_opt_outs"
    subject_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    org_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("organizations.id"), primary_key=True, index=True
    )
    recorded_at: Mapped[dt.datetime]
    recorded_by: Mapped[str] = mapped_column(String(100))


class ModelVersionRecord(TenantOwned, Base):
    """One registered model version: what it is made of (hashes), what it learned from, and where it stands."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("org_id", "name", "version"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(String(100))
    run_dir: Mapped[str] = mapped_column(Text)
    artifacts: Mapped[dict[str, Any]]
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    tokenizer_sha256: Mapped[str | None] = mapped_column(String(64))
    config_sha256: Mapped[str | None] = mapped_column(String(64))
    training_config: Mapped[dict[str, Any]]
    code_version: Mapped[str] = mapped_column(String(64))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    dataset: Mapped[dict[str, Any]]
    facts: Mapped[dict[str, Any]]


class Report(TenantOwned, Base):
    """A JSON document attached to a model version: a validation report, a monitoring summary, ..."""

    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version_id: Mapped[str] = mapped_column(String(40), ForeignKey("model_versions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    document: Mapped[dict[str, Any]]
    sha256: Mapped[str] = mapped_column(String(64))
    attached_by: Mapped[str] = mapped_column(String(100))
    attached_at: Mapped[dt.datetime]


class Transition(TenantOwned, Base):
    """A lifecycle step that happened; ``approver_role`` is set when the step needed a human approval."""

    __tablename__ = "transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version_id: Mapped[str] = mapped_column(String(40), ForeignKey("model_versions.id"), index=True)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))
    approver_role: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]


class AuditEntry(Base):
    """One hash-chained audit entry. ``id`` is insertion order; ``seq`` is the chain position (hashed)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    timestamp: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(100))
    org_id: Mapped[str | None] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64))
    model_version_id: Mapped[str | None] = mapped_column(String(40))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    scheme: Mapped[str] = mapped_column(String(16), server_default="sha256")
    """``hmac-sha256`` (keyed, since revision 0002) or ``sha256`` (entries written before it)."""


class AuditHead(Base):
    """The single row (id 1) naming the last entry: the write lock on PostgreSQL and the anchor of the tail."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


TENANT_TABLES: tuple[type, ...] = (
    User,
    ApiKey,
    ConsentOptOut,
    ModelVersionRecord,
    Report,
    Transition,
    AuditEntry,
)
"""Every mapped class holding tenant data; :class:`GovernSession` filters each by ``org_id``."""


# --- sessions and the tenant filter -----------------------------------------------------------------------
class NotFound(LookupError):
    """No such row visible to the caller (another tenant's rows are reported as not found, never as forbidden)."""


class TenantError(PermissionError):
    """A tenant-scoped session tried to write a row of another organization."""


class GovernSession(Session):
    """A session; with ``info["org_id"]`` set, every ORM query sees only that organization's rows."""


@event.listens_for(GovernSession, "do_orm_execute")
def _only_this_tenant(state) -> None:
    org = state.session.info.get("org_id")
    if org is None or state.is_column_load or state.is_relationship_load:
        return
    if not (state.is_select or state.is_update or state.is_delete):
        return
    criteria = [
        with_loader_criteria(cls, lambda c: c.org_id == org, include_aliases=True) for cls in TENANT_TABLES
    ]
    criteria.append(with_loader_criteria(Organization, lambda c: c.id == org, include_aliases=True))
    state.statement = state.statement.options(*criteria)


@event.listens_for(GovernSession, "before_flush")
def _writes_stay_in_tenant(session: Session, flush_context, instances) -> None:
    org = session.info.get("org_id")
    if org is None:
        return
    for obj in [*session.new, *session.dirty, *session.deleted]:
        owner = obj.id if isinstance(obj, Organization) else getattr(obj, "org_id", org)
        if owner != org:
            raise TenantError(
                f"{type(obj).__name__} of organization {owner!r} written from a session of {org!r}"
            )


# --- engines -----------------------------------------------------------------------------------------------
_ENGINES: dict[str, Engine] = {}
_MIGRATED: set[int] = set()
_FIRST_USE = threading.Lock()


def make_engine(url: str) -> Engine:
    """A new engine for ``url``. SQLite transactions start with ``BEGIN IMMEDIATE``, so writers queue in order."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, record) -> None:
            dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
            dbapi_connection.execute("PRAGMA foreign_keys = ON")
            # WAL: readers never block the writer and a commit is one append, not a journal rewrite. Kept at
            # synchronous=FULL so a committed audit entry survives a power loss.
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            dbapi_connection.execute("PRAGMA synchronous = FULL")

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            # Every transaction takes the write lock up front: the audit chain needs one writer at a time, and
            # a deferred transaction that later writes can fail with "database is locked" instead of waiting.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def engine_for(db: DB = None) -> Engine:
    """The engine for ``db`` (cached per URL), migrated to the latest schema on first use in this process."""
    if isinstance(db, Engine):
        engine = db
    else:
        url = normalize_url(db or default_url())
        with _FIRST_USE:
            engine = _ENGINES.get(url) or _ENGINES.setdefault(url, make_engine(url))
    if id(engine) not in _MIGRATED:
        from clinfm.govern.migrations import upgrade

        with _FIRST_USE:  # threads of one process wait for one migration instead of racing to run it
            if id(engine) not in _MIGRATED:
                upgrade(engine)
                _MIGRATED.add(id(engine))
    return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, or a server shutting down)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
    _MIGRATED.clear()


@contextmanager
def session_scope(db: DB = None, *, org: str | None = None, write: bool = False) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error.

    ``org`` scopes it to one tenant (queries filtered, foreign writes refused); None is the platform operator's
    view. ``write=True`` serializes the transaction against every other governance write (the audit chain is
    one sequence): SQLite already holds its write lock from ``BEGIN IMMEDIATE``; PostgreSQL locks the chain
    head row with ``SELECT ... FOR UPDATE``.
    """
    engine = engine_for(db)
    with GovernSession(engine, expire_on_commit=False) as session:
        session.info["org_id"] = org
        with session.begin():
            if write and engine.dialect.name != "sqlite":
                session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
            yield session
