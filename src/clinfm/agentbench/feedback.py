"""Clinician feedback on assistant answers (rating, correction, reason), kept as JSON lines beside the server's
data; ``clinfm assist-finetune`` turns corrections into instruction examples and names their ids in the lineage.

A line holds ids, the rating and the clinician's own words; the question and correction are free text a
clinician typed about a pseudonymous subject, so the file is the organization's data and is never logged.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_lock = threading.Lock()


class Feedback(BaseModel):
    """What a clinician says about one answer."""

    model_config = ConfigDict(extra="forbid")
    rating: int = Field(ge=-1, le=1, description="-1 wrong or harmful, 0 unhelpful, 1 right")
    correction: str | None = Field(None, max_length=4000, description="What the answer should have said.")
    reason: str | None = Field(None, max_length=2000)
    question: str | None = Field(None, max_length=2000, description="The question asked (for instruction examples).")
    subject_id: int | None = Field(None, ge=0)


def record_feedback(path: str | Path, answer_id: str, feedback: Feedback, org: str, actor: str) -> dict[str, Any]:
    entry = {"id": f"fb_{uuid.uuid4().hex[:12]}", "answer_id": answer_id, "org": org, "actor": actor,
             "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **feedback.model_dump()}  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, path.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry


def read_feedback(path: str | Path, org: str | None = None) -> list[dict[str, Any]]:
    """Every entry (of ``org``); a malformed line is skipped, never fatal."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and (org is None or entry.get("org") == org):
            out.append(entry)
    return out
