"""FastAPI dependencies: the app's state, and the one place a request is authenticated, scope-checked and
counted against its key's quota.

Keys come as ``Authorization: Bearer <key>`` (API, CDS Hooks) or, for the web pages, in the HttpOnly
``clinfm_key`` cookie set by the login form. Verified keys are remembered for ``AUTH_CACHE_S`` seconds by
the SHA-256 of the key (never the key), because governance stores only a slow salted hash of each key;
expiry is still checked on every request, and a revocation takes effect within that time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clinfm.serve.backends import AccessBackend, AuthError
from clinfm.serve.limits import SharedQuota
from clinfm.serve.problems import Problem
from clinfm.serve.security import Principal, QuotaExceeded, QuotaLimiter, ScopeNeed, allowed

if TYPE_CHECKING:
    from clinfm.serve.state import ServeState

WEB_COOKIE = "clinfm_key"
AUTH_CACHE_S = 30.0

bearer = HTTPBearer(auto_error=False, description="An API key issued by `clinfm` governance.")


@dataclass
class AuthCache:
    ttl_s: float = AUTH_CACHE_S
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, tuple[float, Principal]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            hit = self._entries.get(digest)
            if hit is None or self.clock() - hit[0] > self.ttl_s:
                self._entries.pop(digest, None)
                return None
            return hit[1]

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (self.clock(), principal)


def state(request: Request) -> ServeState:
    """The :class:`clinfm.serve.state.ServeState` of this app."""
    serve_state: ServeState = request.app.state.serve
    return serve_state


def api_key_of(request: Request, creds: HTTPAuthorizationCredentials | None) -> str | None:
    if creds is not None and creds.credentials:
        return creds.credentials
    return request.cookies.get(WEB_COOKIE) or None


async def authenticate(access: AccessBackend, cache: AuthCache, api_key: str) -> Principal:
    digest = hashlib.sha256(api_key.encode()).hexdigest()
    principal = cache.get(digest)
    if principal is None:
        try:
            principal = await run_in_threadpool(access.authenticate, api_key)
        except AuthError as exc:
            raise Problem(401, f"the API key is {exc.reason}", slug="invalid-key",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None  # fmt: skip
        cache.put(digest, principal)
    if principal.expires_at is not None and principal.expires_at <= _now():
        raise Problem(401, "the API key is expired", slug="invalid-key",
                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
    return principal


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _key_id(api_key: str) -> str | None:
    """The public key id of ``cfm_<id>_<secret>`` (bounded), for throttling and audit; None when malformed."""
    parts = api_key.split("_", 2)
    return parts[1][:32] if len(parts) == 3 and parts[0] == "cfm" and parts[1] else None


def audit_refusal(request: Request, action: str, key_id: str | None, *, actor: str = "anonymous",
                  org: str | None = None, reason: str) -> None:  # fmt: skip
    """One bounded audit entry for a failed login, a 403 or a 429 (see :class:`clinfm.serve.limits.RefusalAudit`)."""
    s = state(request)
    record = getattr(s.audit, "record_event", None)
    client = request.client.host if request.client else "unknown"
    count = s.refusal_audit.due(action, key_id, client) if record else None
    if count is not None:
        record(action, actor=actor, org=org,
               detail={"key_id": key_id, "client": client, "reason": reason, "count": count, "path": request.url.path[:200]})  # fmt: skip


async def resolve_principal(request: Request, key: str | None, needs: tuple[ScopeNeed, ...]) -> Principal:
    """Authenticate ``key``, check that one of ``needs`` is granted, and take one unit of the key's quota.

    Failed authentication is throttled per key id and per client before any lookup or slow hash; failures,
    scope refusals and throttling leave (bounded) audit entries.
    """
    s = state(request)
    if not key:
        raise Problem(401, "an API key is required: send 'Authorization: Bearer <key>'", slug="missing-key",
                      headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    key_id, client = _key_id(key), request.client.host if request.client else "unknown"
    try:
        s.auth_throttle.check(key_id, client)
    except QuotaExceeded as exc:
        audit_refusal(request, "auth.throttled", key_id, reason="failed authentication")
        raise Problem(429, "too many failed authentications for this key id or client; retry later",
                      slug="auth-throttled", headers={"Retry-After": str(exc.retry_after_s)}) from None  # fmt: skip
    try:
        principal = await authenticate(s.access, s.auth_cache, key)
    except Problem as exc:
        s.auth_throttle.failed(key_id, client)
        audit_refusal(request, "auth.failure", key_id, reason=exc.detail)
        raise
    if needs and not allowed(principal, needs, s.access.scope_allows):
        wanted = " or ".join(str(n) for n in needs)
        audit_refusal(request, "auth.forbidden", principal.key_id, actor=principal.actor, org=principal.org,
                      reason=f"lacks {wanted}")  # fmt: skip
        raise Problem(403, f"this key lacks the scope {wanted}", slug="insufficient-scope",
                      headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needs[0].scopes()[0]}"'})  # fmt: skip
    try:
        await quota_take(s.quotas, principal)
    except Problem:
        audit_refusal(request, "auth.throttled", principal.key_id, actor=principal.actor, org=principal.org,
                      reason="quota")  # fmt: skip
        raise
    request.state.principal = principal
    return principal


def require(*needs: ScopeNeed) -> Any:
    """A dependency: the request's principal, authenticated, scope-checked and counted against its quota."""

    async def dependency(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
        return await resolve_principal(request, api_key_of(request, creds), needs)

    return Depends(dependency)


async def quota_take(quotas: QuotaLimiter | SharedQuota, principal: Principal) -> None:
    try:
        if isinstance(quotas, SharedQuota):  # may reach the database: off the event loop
            await run_in_threadpool(quotas.take, principal.key_id, principal.quota_per_minute)
        else:
            quotas.take(principal.key_id, principal.quota_per_minute)
    except QuotaExceeded as exc:
        raise Problem(429, f"this key's quota of {principal.quota_per_minute} requests a minute is used up",
                      slug="quota-exceeded", headers={"Retry-After": str(exc.retry_after_s)})  # fmt: skip


# Route requirements (SMART v2 scopes). Alternatives are "any of".
MODELS_READ = (ScopeNeed("Model", "r", ("system", "user", "patient")),)
PREDICT = (ScopeNeed("RiskAssessment", "rs"),)
DDX_CREATE = (ScopeNeed("ClinicalImpression", "c"),)
DDX_UPDATE = (ScopeNeed("ClinicalImpression", "u"),)
DDX_READ = (ScopeNeed("ClinicalImpression", "r"),)
TREATMENT = (ScopeNeed("DetectedIssue", "rs"),)
CDS_FEEDBACK = (ScopeNeed("RiskAssessment", "rs"), ScopeNeed("DetectedIssue", "rs"))
TIMELINE = (ScopeNeed("Patient", "r"),)
ASSIST = (ScopeNeed("Assist", "c"),)  # the clinical assistant (issue 16): its own scope
