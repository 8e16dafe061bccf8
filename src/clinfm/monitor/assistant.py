"""The clinical assistant monitored like a model: one typed record per audited call (verifier, abstention,
latency, tokens, the clinician's rating), aggregated per monitoring window and judged by the same policy.

A record carries no text of the call (no prompt, answer or note): only ids, counts and times. Records come from
JSON Lines (:func:`read_calls`) or from the governance audit log's ``assist.answer`` entries
(:func:`calls_from_audit`), which ``clinfm.assist`` writes for every call.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clinfm.monitor.incidents import Alert
from clinfm.monitor.policy import Assistant


@dataclass(frozen=True, slots=True)
class AssistantCall:
    """One audited assistant call. ``statements``: statements the model generated; ``removed``: how many of
    them the verifier removed (unsupported by the record); ``abstained``: the assistant declined to answer;
    ``rating``: the clinician's feedback (1-5) when given."""

    call_id: str
    time: dt.datetime
    latency_ms: float
    tokens: int
    statements: int = 0
    removed: int = 0
    abstained: bool = False
    rating: int | None = None
    assistant_version: str = "assistant"

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or not math.isfinite(self.latency_ms):
            raise ValueError(
                f"call {self.call_id}: latency_ms {self.latency_ms!r} must be a finite number >= 0"
            )
        if self.tokens < 0:
            raise ValueError(f"call {self.call_id}: tokens {self.tokens!r} must be >= 0")
        if not 0 <= self.removed <= self.statements:
            raise ValueError(
                f"call {self.call_id}: removed {self.removed!r} must be between 0 and statements {self.statements!r}"
            )
        if self.rating is not None and not 1 <= self.rating <= 5:
            raise ValueError(f"call {self.call_id}: rating {self.rating!r} must be 1-5 or None")

    def as_dict(self) -> dict:
        out = asdict(self)
        out["time"] = self.time.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class AssistantWindow:
    """The assistant's calls in one monitoring window, aggregated."""

    calls: int
    removed_statement_rate: float | None
    abstention_rate: float | None
    latency_p95_ms: float | None
    mean_tokens: float | None
    ratings: int
    mean_rating: float | None

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def read_calls(path: str | Path) -> list[AssistantCall]:
    """Assistant calls from JSON Lines (one :class:`AssistantCall` per line, ``time`` in ISO form)."""
    path = Path(path)
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row["time"] = dt.datetime.fromisoformat(row["time"])
                out.append(AssistantCall(**row))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path} line {n}: not an assistant call record ({exc})") from None
    return out


AUDIT_ACTION = "assist.answer"
"""The audit entry ``clinfm.assist`` leaves per call (details: token counts, statements kept and removed by the
verifier, abstention, latency; hashes, never text)."""


def calls_from_audit(entries: Iterable[Any]) -> list[AssistantCall]:
    """Assistant calls from governance audit entries (``clinfm.govern.audit.AuditRecord``); entries of other
    actions are skipped. An ``assist.answer`` entry lacking a field it must carry is refused, naming it."""
    out = []
    for e in entries:
        if e.action != AUDIT_ACTION:
            continue
        d = e.details
        try:
            kept, removed = int(d["statements_kept"]), int(d["statements_removed"])
            t = dt.datetime.fromisoformat(e.timestamp)
            out.append(AssistantCall(
                call_id=f"audit-{e.seq}", time=t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t,
                latency_ms=float(d["latency_ms"]),
                tokens=int(d.get("prompt_tokens") or 0) + int(d.get("completion_tokens") or 0),
                statements=kept + removed, removed=removed, abstained=bool(d.get("abstained")),
                assistant_version=e.model_version_id or "assistant",
            ))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"audit entry {e.seq} ({AUDIT_ACTION}) is not a usable assistant call: {exc!r}") from None
    return out


def assistant_window(calls: Sequence[AssistantCall]) -> AssistantWindow:
    if not calls:
        return AssistantWindow(0, None, None, None, None, 0, None)
    statements = sum(c.statements for c in calls)
    ratings = [c.rating for c in calls if c.rating is not None]
    return AssistantWindow(
        calls=len(calls),
        removed_statement_rate=sum(c.removed for c in calls) / statements if statements else None,
        abstention_rate=sum(c.abstained for c in calls) / len(calls),
        latency_p95_ms=float(np.quantile([c.latency_ms for c in calls], 0.95)),
        mean_tokens=float(np.mean([c.tokens for c in calls])),
        ratings=len(ratings),
        mean_rating=float(np.mean(ratings)) if ratings else None,
    )


METRICS: dict[str, tuple[str, str]] = {
    # alert kind suffix: (AssistantWindow field, policy field)
    "removed_statements": ("removed_statement_rate", "max_removed_statement_rate"),
    "abstention": ("abstention_rate", "max_abstention_rate"),
    "latency": ("latency_p95_ms", "max_latency_p95_ms"),
    "tokens": ("mean_tokens", "max_mean_tokens"),
}


def assistant_alerts(
    w: AssistantWindow, rule: Assistant, window: int, start: dt.datetime, end: dt.datetime
) -> list[Alert]:
    """The policy's assistant thresholds crossed in one window (none with fewer than ``min_calls`` calls)."""
    where = (start.isoformat(), end.isoformat())
    out = []
    if w.calls >= rule.min_calls:
        for suffix, (name, limit_name) in METRICS.items():
            value, limit = getattr(w, name), getattr(rule, limit_name)
            if value is not None and value > limit:
                out.append(Alert(f"assistant.{suffix}", *where, round(value, 4), limit,
                                 f"assistant {name.replace('_', ' ')} {value:.3g} > {limit:g} over {w.calls} calls",
                                 window=window))  # fmt: skip
    if w.ratings >= rule.min_ratings and w.mean_rating is not None and w.mean_rating < rule.min_mean_rating:
        out.append(Alert("assistant.mean_rating", *where, round(w.mean_rating, 3), rule.min_mean_rating,
                         f"clinicians rated the assistant {w.mean_rating:.2f} < {rule.min_mean_rating:g} "
                         f"on average ({w.ratings} ratings)", window=window))  # fmt: skip
    return out


__all__ = [
    "AUDIT_ACTION", "AssistantCall", "AssistantWindow", "assistant_alerts", "assistant_window", "calls_from_audit",
    "read_calls",
]  # fmt: skip
