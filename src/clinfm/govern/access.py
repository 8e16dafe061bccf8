"""Who may do what: organizations (tenants), users and service accounts, roles, API keys, scopes, quotas, consent.

API keys look like ``cfm_<key id>_<secret>``; the key id is stored for lookup and the secret only as a salted
scrypt hash, so a key is shown once, when it is created. Scopes follow SMART App Launch v2
(``system/RiskAssessment.rs``, ``user/Model.r``, ``system/*.cruds``). Quotas are a token bucket per key kept in
the database (one row per key, updated under a row lock), so every API worker process shares the same budget.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinfm.govern import audit
from clinfm.govern.db import (
    DB,
    LOCAL_ORG,
    ApiKey,
    ConsentOptOut,
    NotFound,
    Organization,
    RateBucket,
    User,
    session_scope,
    utcnow,
)

ROLES = ("admin", "clinical_owner", "data_scientist", "clinician", "auditor", "api_client")
KEY_PREFIX = "cfm"
SCRYPT_N, SCRYPT_R, SCRYPT_P = (
    2**14,
    8,
    1,
)  # the interactive-login cost from the scrypt paper (16 MiB, ~50 ms)
SMART_PERMISSIONS = "cruds"
_ORG_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


# --- errors ------------------------------------------------------------------------------------------------
class AccessError(PermissionError):
    """Base of the errors an API turns into 401/403/404."""


class AuthenticationError(AccessError):
    """The API key is malformed, unknown, revoked or expired (HTTP 401)."""


class Forbidden(AccessError):
    """The principal lacks the scope or role (HTTP 403)."""


# --- views -------------------------------------------------------------------------------------------------
class OrganizationInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    created_at: dt.datetime


class UserInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    org_id: str
    username: str
    kind: str
    roles: list[str]
    created_at: dt.datetime


class IssuedKey(BaseModel):
    """A new API key. ``key`` is the only copy of the secret: show it once and store it nowhere."""

    key: str
    key_id: str
    org_id: str
    user_id: str
    scopes: list[str]
    rate_per_minute: int
    expires_at: dt.datetime | None


class Principal(BaseModel):
    """Who an authenticated request acts as."""

    org_id: str
    user_id: str
    username: str
    roles: list[str]
    scopes: list[str]
    key_id: str

    @property
    def actor(self) -> str:
        return f"{self.username} (key {self.key_id})"


@dataclass(frozen=True)
class RateDecision:
    """``allowed``, or how many seconds until one more request would be (``retry_after``)."""

    allowed: bool
    retry_after: float
    remaining: float


# --- organizations and users -------------------------------------------------------------------------------
def create_organization(
    org_id: str, name: str | None = None, *, actor: str, exist_ok: bool = False, db: DB = None
) -> OrganizationInfo:
    """Create a tenant with slug ``org_id`` (lowercase letters, digits, ``-``, ``_``)."""
    if not _ORG_ID.match(org_id):
        raise ValueError(
            f"organization id {org_id!r} must be a lowercase slug like 'st-elsewhere' (<= 64 chars)"
        )
    with session_scope(db, write=True) as session:
        org = session.get(Organization, org_id)
        if org is not None:
            if not exist_ok:
                raise ValueError(f"organization {org_id!r} already exists")
            return OrganizationInfo.model_validate(org)
        org = _add_organization(session, org_id, name or org_id, actor)
        return OrganizationInfo.model_validate(org)


def _add_organization(session: Session, org_id: str, name: str, actor: str) -> Organization:
    org = Organization(id=org_id, name=name, created_at=utcnow())
    session.add(org)
    session.flush()
    audit.append(session, "organization.create", actor=actor, org=org_id, details={"org_name": name})
    return org


def ensure_organization(session: Session, org_id: str, actor: str) -> Organization:
    """The organization ``org_id``; only the single-site default ``local`` is created on first use."""
    org = session.get(Organization, org_id)
    if org is None and org_id == LOCAL_ORG:
        org = _add_organization(session, org_id, "Local site", actor)
    if org is None:
        raise NotFound(f"organization {org_id!r} does not exist (create it with create_organization)")
    return org


def _check_roles(roles: Iterable[str]) -> list[str]:
    roles = sorted(set(roles))
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}; roles are {list(ROLES)}")
    return roles


def create_user(
    org: str, username: str, roles: Sequence[str], *, actor: str, kind: str = "user", db: DB = None
) -> UserInfo:
    """Add a person (``kind="user"``) or service account (``kind="service"``) with ``roles`` to ``org``."""
    if kind not in ("user", "service"):
        raise ValueError(f"kind {kind!r} is not 'user' or 'service'")
    roles = _check_roles(roles)
    with session_scope(db, org=org, write=True) as session:
        ensure_organization(session, org, actor)
        if session.execute(select(User).where(User.username == username)).scalar_one_or_none():
            raise ValueError(f"user {username!r} already exists in organization {org!r}")
        user = User(
            id=f"usr_{secrets.token_hex(8)}",
            org_id=org,
            username=username,
            kind=kind,
            roles=roles,
            created_at=utcnow(),
        )
        session.add(user)
        session.flush()
        audit.append(
            session,
            "user.create",
            actor=actor,
            details={"user_id": user.id, "username": username, "kind": kind, "roles": roles},
        )
        return UserInfo.model_validate(user)


def create_service_account(
    org: str, username: str, roles: Sequence[str] = ("api_client",), *, actor: str, db: DB = None
) -> UserInfo:
    return create_user(org, username, roles, actor=actor, kind="service", db=db)


def set_roles(org: str, username: str, roles: Sequence[str], *, actor: str, db: DB = None) -> UserInfo:
    """Replace the roles of ``username`` in ``org``."""
    roles = _check_roles(roles)
    with session_scope(db, org=org, write=True) as session:
        user = find_user(session, username)
        before, user.roles = user.roles, roles
        audit.append(
            session, "user.roles", actor=actor, details={"user_id": user.id, "before": before, "after": roles}
        )
        return UserInfo.model_validate(user)


def find_user(session: Session, username: str) -> User:
    """The user ``username`` of the session's organization."""
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user {username!r} in organization {session.info.get('org_id')!r}")
    return user


def list_users(org: str, *, db: DB = None) -> list[UserInfo]:
    with session_scope(db, org=org) as session:
        return [
            UserInfo.model_validate(u)
            for u in session.execute(select(User).order_by(User.username)).scalars()
        ]


# --- API keys ----------------------------------------------------------------------------------------------
def _hash_secret(secret: str, salt: bytes) -> str:
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def _secret_matches(secret: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    got = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(got.hex(), digest)


MAX_RATE_PER_MINUTE = 100_000
"""The largest quota a key may get: more is a typo, not a plan."""


def create_api_key(
    org: str,
    username: str,
    scopes: Sequence[str],
    *,
    actor: str,
    rate_per_minute: int = 60,
    expires_at: dt.datetime | None = None,
    db: DB = None,
) -> IssuedKey:
    """Issue a key for ``username`` of ``org`` with SMART v2 ``scopes``; the returned ``key`` is never stored."""
    for scope in scopes:
        parse_scope(scope)
    if not 1 <= rate_per_minute <= MAX_RATE_PER_MINUTE:
        raise ValueError(f"rate_per_minute {rate_per_minute} must be within 1..{MAX_RATE_PER_MINUTE:,}")
    if expires_at is not None and expires_at <= utcnow():
        raise ValueError(f"expires_at {expires_at.isoformat()} is in the past")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with session_scope(db, org=org, write=True) as session:
        user = find_user(session, username)
        row = ApiKey(
            id=key_id,
            org_id=org,
            user_id=user.id,
            secret_hash=_hash_secret(secret, secrets.token_bytes(16)),
            scopes=list(scopes),
            rate_per_minute=rate_per_minute,
            created_at=utcnow(),
            expires_at=expires_at,
        )
        session.add(row)
        session.add(RateBucket(key_id=key_id, tokens=float(rate_per_minute), updated_at=time.time()))
        session.flush()
        audit.append(
            session,
            "api_key.create",
            actor=actor,
            details={
                "key_id": key_id,
                "user_id": user.id,
                "scopes": list(scopes),
                "rate_per_minute": rate_per_minute,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return IssuedKey(
        key=f"{KEY_PREFIX}_{key_id}_{secret}",
        key_id=key_id,
        org_id=org,
        user_id=user.id,
        scopes=list(scopes),
        rate_per_minute=rate_per_minute,
        expires_at=expires_at,
    )


def revoke_api_key(key_id: str, *, actor: str, reason: str, org: str | None = None, db: DB = None) -> None:
    """Revoke a key for good; ``org`` limits the search to one tenant (an admin revoking their own keys)."""
    with session_scope(db, org=org, write=True) as session:
        row = session.execute(select(ApiKey).where(ApiKey.id == key_id)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no API key {key_id!r}" + (f" in organization {org!r}" if org else ""))
        if row.revoked_at is None:
            row.revoked_at, row.revoked_reason = utcnow(), reason
            audit.append(
                session,
                "api_key.revoke",
                actor=actor,
                org=row.org_id,
                details={"key_id": key_id, "reason": reason},
            )


def split_key(api_key: str) -> tuple[str, str]:
    """``(key id, secret)`` of ``cfm_<key id>_<secret>``."""
    parts = api_key.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        raise AuthenticationError(f"malformed API key: expected '{KEY_PREFIX}_<key id>_<secret>'")
    return parts[1], parts[2]


@functools.cache
def _decoy_hash() -> str:
    """A hash no secret matches, checked for unknown key ids so they cost the same slow hash as known ones."""
    return _hash_secret(secrets.token_urlsafe(32), secrets.token_bytes(16))


def authenticate(api_key: str, *, now: dt.datetime | None = None, db: DB = None) -> Principal:
    """The principal of ``api_key``, or :class:`AuthenticationError` saying whether it is unknown, revoked or expired.

    An unknown key id runs the same scrypt as a wrong secret for a known one: timing does not tell them apart.
    """
    key_id, secret = split_key(api_key)
    now = now or utcnow()
    _decoy_hash()  # computed once, outside any request's measured path after the first
    with session_scope(db) as session:  # not tenant-scoped: the key is what tells us the tenant
        row = session.get(ApiKey, key_id) if len(key_id) <= 32 else None
        user = session.get(User, row.user_id) if row is not None else None
    # scrypt runs after the transaction: on SQLite every transaction holds the write lock
    stored = row.secret_hash if row is not None and user is not None else _decoy_hash()
    if not _secret_matches(secret[:256], stored) or row is None or user is None:
        raise AuthenticationError(f"unknown API key {key_id!r}")
    if row.revoked_at is not None:
        raise AuthenticationError(f"API key {key_id!r} was revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthenticationError(f"API key {key_id!r} expired on {row.expires_at:%Y-%m-%d %H:%M} UTC")
    return Principal(
        org_id=row.org_id,
        user_id=user.id,
        username=user.username,
        roles=list(user.roles),
        scopes=list(row.scopes),
        key_id=key_id,
    )


# --- scopes ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """A parsed SMART v2 scope: ``context/resource.permissions[?query]``."""

    context: str
    resource: str
    permissions: frozenset[str]
    query: str = ""


_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Za-z]+)\.([a-z*]+)(?:\?(.+))?$")
_V1 = {"read": "rs", "write": "cud", "*": SMART_PERMISSIONS}


def parse_scope(scope: str) -> Scope:
    """Parse ``system/RiskAssessment.rs``; SMART v1 ``.read``/``.write``/``.*`` are read as ``rs``/``cud``/``cruds``."""
    m = _SCOPE.match(scope.strip())
    if not m:
        raise ValueError(f"scope {scope!r} is not SMART v2 '<patient|user|system>/<Resource|*>.<cruds>'")
    context, resource, perms, query = m.groups()
    perms = _V1.get(perms, perms)
    if not perms or any(p not in SMART_PERMISSIONS for p in perms) or len(set(perms)) != len(perms):
        raise ValueError(
            f"scope {scope!r}: permissions {perms!r} must be a subset of 'cruds', each at most once"
        )
    return Scope(context, resource, frozenset(perms), query or "")


def scope_allows(granted: Iterable[str], needed: str) -> bool:
    """Whether the ``granted`` scopes together cover every permission of the ``needed`` scope.

    A granted scope covers when its context matches exactly, its resource is the same or ``*``, and its query
    restriction (``?category=...``) is absent or identical; permissions may come from several granted scopes.
    """
    want = parse_scope(needed)
    have: set[str] = set()
    for scope in map(parse_scope, granted):
        if (
            scope.context == want.context
            and scope.resource in (want.resource, "*")
            and scope.query in ("", want.query)
        ):
            have |= scope.permissions
    return want.permissions <= have


def authorize(principal: Principal, needed: str) -> None:
    """Raise :class:`Forbidden` unless the principal's scopes cover ``needed``."""
    if not scope_allows(principal.scopes, needed):
        raise Forbidden(f"key {principal.key_id!r} lacks scope {needed!r} (has {principal.scopes})")


def require_role(principal: Principal, *roles: str) -> None:
    if not set(roles) & set(principal.roles):
        raise Forbidden(
            f"user {principal.username!r} needs one of roles {list(roles)} (has {principal.roles})"
        )


# --- quotas ------------------------------------------------------------------------------------------------
def take_token(tokens: float, updated: float, now: float, per_minute: int) -> tuple[bool, float, float]:
    """The token bucket, wherever it is kept: refill ``tokens`` (capacity and refill ``per_minute`` a minute)
    from ``updated`` to ``now`` (seconds), take one if there is one; returns (allowed, tokens left, seconds until
    one more request would be allowed)."""
    per_second = per_minute / 60.0
    tokens = min(float(per_minute), tokens + max(0.0, now - updated) * per_second)
    if tokens >= 1.0:
        return True, tokens - 1.0, 0.0
    return False, tokens, (1.0 - tokens) / per_second


def check_rate(key_id: str, *, now: float | None = None, db: DB = None) -> RateDecision:
    """Take one token from the key's bucket (capacity and refill: ``rate_per_minute`` per minute).

    The bucket lives in the database and is read ``FOR UPDATE`` (SQLite: inside ``BEGIN IMMEDIATE``), so
    concurrent workers never spend the same token twice. ``now`` (epoch seconds) is for tests.
    """
    now = time.time() if now is None else now
    with session_scope(db) as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            raise NotFound(f"no API key {key_id!r}")
        bucket = session.execute(
            select(RateBucket).where(RateBucket.key_id == key_id).with_for_update()
        ).scalar_one()
        allowed, tokens, retry_after = take_token(bucket.tokens, bucket.updated_at, now, key.rate_per_minute)
        bucket.tokens, bucket.updated_at = tokens, max(now, bucket.updated_at)
        return RateDecision(allowed, retry_after, tokens)


def reserve_tokens(key_id: str, wanted: int, *, now: float | None = None, db: DB = None) -> tuple[int, float]:
    """Take up to ``wanted`` whole tokens from the key's shared bucket: ``(granted, seconds until one is free)``.

    What a server process holds in memory between calls; the bucket row is locked as in :func:`check_rate`.
    """
    now = time.time() if now is None else now
    with session_scope(db) as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            raise NotFound(f"no API key {key_id!r}")
        bucket = session.execute(select(RateBucket).where(RateBucket.key_id == key_id).with_for_update()).scalar_one()
        per_second = key.rate_per_minute / 60.0
        tokens = min(float(key.rate_per_minute), bucket.tokens + max(0.0, now - bucket.updated_at) * per_second)
        granted = max(0, min(int(wanted), int(tokens)))
        tokens -= granted
        bucket.tokens, bucket.updated_at = tokens, max(now, bucket.updated_at)
        return granted, 0.0 if granted else (1.0 - tokens) / per_second


# --- consent -----------------------------------------------------------------------------------------------
def record_opt_out(org: str, subject_id: int, *, actor: str, db: DB = None) -> None:
    """Record that ``subject_id`` (the pseudonymous MEDS id) opted out of training and inference at ``org``."""
    with session_scope(db, org=org, write=True) as session:
        ensure_organization(session, org, actor)
        if session.get(ConsentOptOut, (int(subject_id), org)) is None:
            session.add(
                ConsentOptOut(subject_id=int(subject_id), org_id=org, recorded_at=utcnow(), recorded_by=actor)
            )
            session.flush()
            audit.append(session, "consent.opt_out", actor=actor, subject_id=subject_id, purpose="consent")


def withdraw_opt_out(org: str, subject_id: int, *, actor: str, db: DB = None) -> None:
    """The subject opts back in."""
    with session_scope(db, org=org, write=True) as session:
        row = session.get(ConsentOptOut, (int(subject_id), org))
        if row is not None:
            session.delete(row)
            audit.append(session, "consent.opt_in", actor=actor, subject_id=subject_id, purpose="consent")


def opted_out(org: str, *, db: DB = None) -> set[int]:
    """Every subject id that opted out at ``org``."""
    with session_scope(db, org=org) as session:
        return set(session.execute(select(ConsentOptOut.subject_id)).scalars())


def filter_opted_out(org: str, subject_ids: Iterable[int], *, db: DB = None) -> list[int]:
    """``subject_ids`` without those who opted out at ``org``, order kept: call before selecting training data."""
    out = opted_out(org, db=db)
    return [s for s in subject_ids if int(s) not in out]


def is_opted_out(org: str, subject_id: int, *, db: DB = None) -> bool:
    """Whether inference for ``subject_id`` at ``org`` must be refused."""
    with session_scope(db, org=org) as session:
        row = session.execute(select(ConsentOptOut).where(ConsentOptOut.subject_id == int(subject_id)))
        return row.scalar_one_or_none() is not None
