"""Incidents, not alert walls: consecutive alerts of one kind (and code) merge into one incident with a start, an
end, its peak and what changed most, and the policy's alert budget says whether the policy is too noisy to trust.

An alert's ``value`` and ``threshold`` are on the same scale; its severity is ``value / threshold`` for
upper limits and ``threshold / value`` for lower ones, so an incident's peak is its most severe window.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clinfm.monitor.policy import Incidents


@dataclass(frozen=True, slots=True)
class Alert:
    """A threshold crossed in one window: what, where (a code for labs and key inputs), the value and the
    threshold, the window's index in the report, and the bins that moved most (before/after shares)."""

    kind: str  # input_drift.codes | .lab | .unknown_codes | .missingness | prediction_drift | performance.* | assistant.*
    window_start: str
    window_end: str
    value: float
    threshold: float | list[float]
    message: str
    code: str | None = None
    window: int | None = None
    changes: tuple[dict, ...] = ()

    @property
    def severity(self) -> float:
        """How far past its threshold (1 = at it); a range threshold counts the side crossed."""
        t = self.threshold
        lo, hi = (t[0], t[1]) if isinstance(t, list | tuple) else (None, t)
        if lo is not None and self.value < lo:
            return lo / self.value if self.value > 0 else math.inf
        if self.kind in LOWER_LIMITS:
            return hi / self.value if self.value > 0 else math.inf
        return self.value / hi if hi else math.inf

    def as_dict(self) -> dict:
        return {
            "kind": self.kind, "window_start": self.window_start, "window_end": self.window_end,
            "value": self.value, "threshold": self.threshold, "message": self.message, "code": self.code,
            "window": self.window, "changes": list(self.changes),
        }  # fmt: skip


LOWER_LIMITS = frozenset({"performance.auroc", "assistant.mean_rating"})
"""Alert kinds whose threshold is a lower bound."""


@dataclass(slots=True)
class Incident:
    """Alerts of one kind and code in windows at most ``merge_gap_windows`` apart."""

    id: str
    kind: str
    code: str | None
    start: str
    end: str
    windows: list[int]
    alerts: list[Alert] = field(default_factory=list)

    @property
    def peak(self) -> Alert:
        return max(self.alerts, key=lambda a: (a.severity, a.window_start))

    @property
    def title(self) -> str:
        return self.kind + (f" {self.code}" if self.code else "")

    def as_dict(self) -> dict:
        peak = self.peak
        return {
            "id": self.id, "kind": self.kind, "code": self.code, "start": self.start, "end": self.end,
            "windows": self.windows, "alerts": len(self.alerts),
            "peak": {"window": peak.window, "window_start": peak.window_start, "value": peak.value,
                     "threshold": peak.threshold, "message": peak.message},
            "changes": list(peak.changes),
        }  # fmt: skip


def group_incidents(
    alerts: Sequence[Alert], rule: Incidents | None = None,
    judged: Mapping[tuple[str, str | None], Collection[int]] | None = None,
) -> list[Incident]:  # fmt: skip
    """Merge alerts into incidents, ordered by start. Two alerts of one kind and code belong together when at
    most ``merge_gap_windows`` windows between them were judged quiet: ``judged`` says, per (kind, code), in
    which windows the check ran (a window with too few events or no predictions cannot end an incident, so a
    task scored once a year keeps one incident across the empty months). Without it every window counts."""
    rule = rule or Incidents()
    by_key: dict[tuple[str, str | None], list[Alert]] = {}
    for a in sorted(alerts, key=lambda a: (a.window if a.window is not None else -1, a.window_start)):
        by_key.setdefault((a.kind, a.code), []).append(a)
    incidents: list[Incident] = []
    for key, items in by_key.items():
        ran = sorted(judged[key]) if judged is not None and key in judged else None
        current: list[Alert] = []
        for a in items:
            if current and not _close(current[-1], a, rule.merge_gap_windows, ran):
                incidents.append(_incident(*key, current))
                current = []
            current.append(a)
        if current:
            incidents.append(_incident(*key, current))
    incidents.sort(key=lambda i: (i.start, i.kind, i.code or ""))
    for n, inc in enumerate(incidents, 1):
        inc.id = f"incident-{n}"
    return incidents


def _close(a: Alert, b: Alert, gap: int, judged: list[int] | None) -> bool:
    if a.window is None or b.window is None:
        return False
    if judged is None:
        return b.window - a.window - 1 <= gap
    quiet = bisect.bisect_left(judged, b.window) - bisect.bisect_right(judged, a.window)
    return quiet <= gap


def _incident(kind: str, code: str | None, alerts: list[Alert]) -> Incident:
    windows = sorted({a.window for a in alerts if a.window is not None})
    return Incident("", kind, code, min(a.window_start for a in alerts), max(a.window_end for a in alerts),
                    windows, list(alerts))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Budget:
    """Incidents per 365 days against the policy's budget."""

    incidents: int
    days: float
    per_year: float
    budget_per_year: float

    @property
    def over(self) -> bool:
        return self.per_year > self.budget_per_year

    def as_dict(self) -> dict[str, Any]:
        return {"incidents": self.incidents, "days": round(self.days, 1), "per_year": round(self.per_year, 2),
                "budget_per_year": self.budget_per_year, "over_budget": self.over}  # fmt: skip


def budget(incidents: Sequence[Incident], first: dt.datetime, last: dt.datetime, rule: Incidents) -> Budget:
    days = max((last - first).total_seconds() / 86400, 1.0)
    # a span shorter than a year is judged as a year: three incidents in one month are not 36 a year
    per_year = len(incidents) * 365 / max(days, 365)
    return Budget(len(incidents), days, per_year, rule.budget_per_year)


__all__ = ["LOWER_LIMITS", "Alert", "Budget", "Incident", "budget", "group_incidents"]
