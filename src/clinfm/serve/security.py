"""Who is calling and what they may do: API-key principals, per-route SMART v2 scope needs, per-key quotas.

Keys, scopes and consent are governance's (``clinfm.govern.access``); this module only holds the principal a
request acts as, states each route's need, and runs the per-key token bucket in the server process.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from clinfm.govern.access import take_token


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated API key: whose it is, which organization, what it may do."""

    key_id: str
    org: str
    actor: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    quota_per_minute: int | None = None
    expires_at: dt.datetime | None = None  # naive UTC


@dataclass(frozen=True, slots=True)
class ScopeNeed:
    """A route's requirement: ``<context>/<resource>.<permissions>`` for one of ``contexts``."""

    resource: str
    permissions: str
    contexts: tuple[str, ...] = ("system", "user")

    def scopes(self) -> list[str]:
        return [f"{c}/{self.resource}.{self.permissions}" for c in self.contexts]

    def __str__(self) -> str:
        ctx = self.contexts[0] if len(self.contexts) == 1 else "*" if len(self.contexts) == 3 else "|".join(self.contexts)
        return f"{ctx}/{self.resource}.{self.permissions}"


ScopeCheck = Callable[[frozenset[str], str], bool]


def allowed(principal: Principal, needs: tuple[ScopeNeed, ...], scope_allows: ScopeCheck) -> bool:
    """True when the granted scopes cover one of the alternative ``needs`` (in one of its contexts)."""
    return any(scope_allows(principal.scopes, s) for n in needs for s in n.scopes())


class QuotaExceeded(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class QuotaLimiter:
    """A token bucket per key (:func:`clinfm.govern.access.take_token`): ``per_minute`` requests a minute, refilled
    continuously, bursts up to a minute's worth. It runs in the server process (a microsecond a request) with the rate governance sets on the key;
    governance's shared database bucket costs a committed write (~17 ms on SQLite) per request."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key_id: str, per_minute: int | None) -> None:
        if per_minute is None:
            return
        if per_minute <= 0:
            raise QuotaExceeded(60)
        now = self.clock()
        with self._lock:
            b = self._buckets.get(key_id)
            if b is None:
                b = self._buckets[key_id] = _Bucket(float(per_minute), now)
            ok, b.tokens, retry_after = take_token(b.tokens, b.updated, now, per_minute)
            b.updated = now
            if not ok:
                raise QuotaExceeded(max(1, math.ceil(retry_after)))
