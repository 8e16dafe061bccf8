"""Clinician feedback per model version and card kind: CDS Hooks feedback (accepted / overridden, override
reasons) and web-page ratings, from the JSON-lines files ``clinfm serve`` writes in its data folder.

Files (formats in ``clinfm/serve/README.md``): ``cds-feedback.jsonl`` (one feedback item a line), ``cds-cards.jsonl``
(every card served: the denominator), and ``web-feedback.jsonl``, one rating a line::

    {"received_at": ISO-8601, "org": str, "model_version": str, "prediction_id": str | null,
     "rating": "useful" | "not_useful", "reason": str | null}

An override whose reason code or display reads "not useful" (any case, ``-``/``_``/space) counts as not useful.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FEEDBACK_FILE, CARDS_FILE, WEB_FEEDBACK_FILE = "cds-feedback.jsonl", "cds-cards.jsonl", "web-feedback.jsonl"
_NOT_USEFUL = re.compile(r"^not[\s_-]*useful$", re.IGNORECASE)


def read_jsonl(path: str | Path | None) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (none when it does not exist); a broken line names its number."""
    if path is None or not Path(path).exists():
        return []
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path} line {n}: not JSON ({exc.msg})") from None
    return out


def is_not_useful(reason: dict[str, Any] | None) -> bool:
    if not isinstance(reason, dict):
        return False
    return any(
        isinstance(reason.get(k), str) and _NOT_USEFUL.match(reason[k].strip()) for k in ("code", "display")
    )


@dataclass(slots=True)
class FeedbackGroup:
    model_version: str
    card_kind: str
    cards_issued: int = 0
    feedback: int = 0
    accepted: int = 0
    overridden: int = 0
    not_useful: int = 0
    web_useful: int = 0
    web_not_useful: int = 0
    override_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.feedback if self.feedback else None

    @property
    def response_rate(self) -> float | None:
        return self.feedback / self.cards_issued if self.cards_issued else None

    def as_dict(self) -> dict:
        return asdict(self) | {"override_rate": self.override_rate, "response_rate": self.response_rate}


@dataclass(slots=True)
class FeedbackSummary:
    groups: list[FeedbackGroup]
    unmatched: int  # feedback on cards the server did not know (restart before the cards log, another tenant)

    def group(self, model_version: str, card_kind: str) -> FeedbackGroup | None:
        return next(
            (g for g in self.groups if (g.model_version, g.card_kind) == (model_version, card_kind)), None
        )

    def as_dict(self) -> dict:
        return {"groups": [g.as_dict() for g in self.groups], "unmatched": self.unmatched}


def feedback_summary(
    data_dir: str | Path | None = None,
    *,
    feedback_file: str | Path | None = None,
    cards_file: str | Path | None = None,
    web_feedback_file: str | Path | None = None,
    model_version: str | None = None,
    org: str | None = None,
) -> FeedbackSummary:
    """Counts per (model version, card kind) from serve's files in ``data_dir`` (or the files named).

    Feedback that lacks its model version (written before the card was known) is joined to the cards log by
    card uuid. ``model_version`` and ``org`` filter.
    """
    base = Path(data_dir) if data_dir is not None else None
    feedback = read_jsonl(feedback_file or (base / FEEDBACK_FILE if base else None))
    cards = read_jsonl(cards_file or (base / CARDS_FILE if base else None))
    web = read_jsonl(web_feedback_file or (base / WEB_FEEDBACK_FILE if base else None))
    if org is not None:
        feedback, cards, web = ([r for r in rows if r.get("org") == org] for rows in (feedback, cards, web))
    by_card = {c.get("card"): c for c in cards}
    groups: dict[tuple[str, str], FeedbackGroup] = {}

    def group(version: str | None, kind: str | None) -> FeedbackGroup | None:
        if version is None or (model_version is not None and version != model_version):
            return None
        key = (version, kind or "unknown")
        return groups.setdefault(key, FeedbackGroup(*key))

    for c in cards:
        g = group(c.get("model_version"), c.get("card_kind"))
        if g is not None:
            g.cards_issued += 1
    unmatched = 0
    for f in feedback:
        card = by_card.get(f.get("card"), {})
        version = f.get("model_version") or card.get("model_version")
        if version is None:
            unmatched += 1
            continue
        g = group(version, f.get("card_kind") or card.get("card_kind"))
        if g is None:
            continue
        g.feedback += 1
        if f.get("outcome") == "accepted":
            g.accepted += 1
        elif f.get("outcome") == "overridden":
            g.overridden += 1
            reason = f.get("override_reason")
            label = (reason or {}).get("code") or (reason or {}).get("display") or "(none given)"
            g.override_reasons[label] = g.override_reasons.get(label, 0) + 1
            g.not_useful += is_not_useful(reason)
    for w in web:
        g = group(w.get("model_version"), "web")
        if g is None:
            continue
        if w.get("rating") == "not_useful":
            g.web_not_useful += 1
            g.not_useful += 1
        elif w.get("rating") == "useful":
            g.web_useful += 1
    ordered = sorted(groups.values(), key=lambda g: (g.model_version, g.card_kind))
    for g in ordered:
        g.override_reasons = dict(Counter(g.override_reasons).most_common())
    return FeedbackSummary(ordered, unmatched)


__all__ = ["FeedbackGroup", "FeedbackSummary", "feedback_summary", "is_not_useful", "read_jsonl"]
