"""Limits that keep one caller from exhausting what others need: per-tenant session stores, throttling of failed
authentication, quotas shared through the governance database, and audit entries for refusals that stay bounded.

Everything here is per server process except the quota, whose budget lives in the database (``rate_buckets``): a
process reserves a small slice of a key's tokens at a time (:data:`QUOTA_SLICE`), so N processes can together
exceed a key's rate by at most N slices, never by N times the rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clinfm.serve.security import QuotaExceeded

QUOTA_SLICE = 0.05
"""The share of a key's per-minute rate one process reserves from the database at a time (at least 1 token)."""


class TenantSessions:
    """In-memory sessions, capped per organization: a full organization evicts its own oldest session only."""

    def __init__(self, per_org: int = 1000) -> None:
        self.per_org = per_org
        self._by_org: dict[str, OrderedDict[str, Any]] = {}
        self._lock = threading.Lock()

    def put(self, org: str, sid: str, session: Any, limit: int | None = None) -> None:
        limit = limit or self.per_org
        with self._lock:
            mine = self._by_org.setdefault(org, OrderedDict())
            mine[sid] = session
            mine.move_to_end(sid)
            while len(mine) > limit:
                mine.popitem(last=False)

    def get(self, org: str, sid: str) -> Any | None:
        with self._lock:
            return self._by_org.get(org, {}).get(sid)

    def of(self, org: str) -> list[str]:
        with self._lock:
            return list(self._by_org.get(org, {}))


@dataclass
class AuthThrottle:
    """Failed authentications counted over a sliding window per (key id, client), per client and per key id; past a
    limit the next attempt is refused before any key is looked up or hashed.

    The per-key-id limit is high on purpose: key ids are not secret, so a low one would let anyone lock a key's owner
    out; guessing a 256-bit secret is hopeless anyway, what the throttle bounds is the slow-hash work."""

    limit_per_key_client: int = 5
    limit_per_client: int = 20
    limit_per_key: int = 100
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _fails: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, name: str, now: float) -> deque[float]:
        q = self._fails.get(name)
        if q is None:
            if len(self._fails) > 100_000:  # bounded: forget the oldest counters first
                for old in list(self._fails)[:10_000]:
                    del self._fails[old]
            q = self._fails[name] = deque()
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def check(self, key_id: str | None, client: str) -> None:
        """Raise :class:`QuotaExceeded` (retry-after seconds) while the key id or the client is throttled."""
        now = self.clock()
        with self._lock:
            for name, limit in self._names(key_id, client):
                q = self._recent(name, now)
                if len(q) >= limit:
                    raise QuotaExceeded(max(1, math.ceil(self.window_s - (now - q[0]))))

    def failed(self, key_id: str | None, client: str) -> None:
        now = self.clock()
        with self._lock:
            for name, _ in self._names(key_id, client):
                self._recent(name, now).append(now)

    def _names(self, key_id: str | None, client: str) -> list[tuple[str, int]]:
        names = [(f"client:{client}", self.limit_per_client)]
        if key_id is not None:
            names += [(f"key:{key_id}|{client}", self.limit_per_key_client), (f"key:{key_id}", self.limit_per_key)]
        return names


@dataclass
class SharedQuota:
    """A key's token bucket in the database, reached through ``reserve(key_id, wanted) -> (granted, retry_after_s)``,
    with what this process reserved kept in memory."""

    reserve: Callable[[str, int], tuple[int, float]]
    _held: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key_id: str, per_minute: int | None) -> None:
        if per_minute is None:
            return
        if per_minute <= 0:
            raise QuotaExceeded(60)
        with self._lock:
            if self._held.get(key_id, 0) > 0:
                self._held[key_id] -= 1
                return
        granted, retry_after = self.reserve(key_id, max(1, int(per_minute * QUOTA_SLICE)))
        if granted <= 0:
            raise QuotaExceeded(max(1, math.ceil(retry_after)))
        with self._lock:
            self._held[key_id] = self._held.get(key_id, 0) + granted - 1


@dataclass
class RefusalAudit:
    """At most one audit entry per (action, key id, client) per ``window_s``, carrying how many were suppressed,
    so a flood of bad requests cannot flood the audit chain."""

    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _last: dict[tuple[str, str, str], tuple[float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def due(self, action: str, key_id: str | None, client: str) -> int | None:
        """The number of refusals this entry stands for, or None when one was audited within the window."""
        name, now = (action, key_id or "-", client), self.clock()
        with self._lock:
            last = self._last.get(name)
            if last is not None and now - last[0] < self.window_s:
                self._last[name] = (last[0], last[1] + 1)
                return None
            if len(self._last) > 100_000:
                self._last.clear()
            self._last[name] = (now, 0)
            return 1 + (last[1] if last else 0)
