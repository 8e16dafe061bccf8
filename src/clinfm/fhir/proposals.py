"""Written FHIR resources (``POST`` ServiceRequest, MedicationRequest, Observation) kept as proposals for clinician
review in a SQLite file of their own, never in the source dataset.

A proposal is validated as FHIR R4B, must name a patient of the served dataset, and carries the result of the
treatment safety check when it orders a medication. A clinician accepts or rejects it; nothing here changes
the record, so the dataset's files are byte-identical after any number of writes.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITABLE = ("ServiceRequest", "MedicationRequest", "Observation")
STATUSES = ("proposed", "accepted", "rejected")

_DDL = """
CREATE TABLE IF NOT EXISTS proposal (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    actor TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    subject_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    resource TEXT NOT NULL,
    safety TEXT,
    reviewed_by TEXT,
    reviewed_at TEXT,
    review_reason TEXT
);
CREATE INDEX IF NOT EXISTS proposal_org_status ON proposal (org, status, created_at);
"""


class ProposalError(ValueError):
    """A written resource that cannot be kept: the message names the field and what was expected."""


@dataclass(frozen=True, slots=True)
class Proposal:
    id: str
    org: str
    actor: str
    resource_type: str
    subject_id: int
    status: str
    created_at: str
    resource: dict[str, Any]
    safety: dict[str, Any] | None = None
    reviewed_by: str | None = None
    reviewed_at: str | None = None
    review_reason: str | None = None

    def summary(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        return out


def validate_resource(resource_type: str, body: Any) -> tuple[dict[str, Any], int]:
    """The resource as validated R4B JSON, and the numeric id of the patient it is for."""
    if resource_type not in WRITABLE:
        raise ProposalError(f"writes are accepted for {list(WRITABLE)}, not {resource_type!r}")
    if not isinstance(body, dict):
        raise ProposalError(f"the body must be a FHIR {resource_type} resource (a JSON object)")
    if body.get("resourceType") != resource_type:
        raise ProposalError(f"resourceType {body.get('resourceType')!r} does not match the URL's {resource_type!r}")
    import importlib

    from pydantic import ValidationError

    model = getattr(importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}"), resource_type)
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ProposalError(f"{resource_type} is not valid FHIR R4B at {where or 'the root'}: {first.get('msg')}") from None
    ref = ((body.get("subject") or {}).get("reference") or "")
    sid = ref.rsplit("/", 1)[-1]
    if not ref.startswith("Patient/") or not sid.isdigit():
        raise ProposalError(f"subject.reference {ref!r} must be Patient/<numeric id> of a patient in the dataset")
    return json.loads(parsed.model_dump_json(exclude_none=True)), int(sid)


def medication_names(resource: dict[str, Any]) -> list[str]:
    """What the treatment check is given for a MedicationRequest: the medication's text or display (the check
    matches clinical drug names), else its RxNorm code."""
    concept = resource.get("medicationCodeableConcept") or {}
    codings = concept.get("coding", [])
    names = [concept.get("text")] + [c.get("display") for c in codings]
    names += [c.get("code") for c in codings if "rxnorm" in (c.get("system") or "").lower()]
    return [n for n in names if n][:1]


class ProposalStore:
    """Proposals in ``path`` (SQLite): add, list for review, accept or reject."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as con:
            con.executescript(_DDL)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def add(self, org: str, actor: str, resource_type: str, subject_id: int, resource: dict[str, Any],
            safety: dict[str, Any] | None = None) -> Proposal:  # fmt: skip
        pid = str(uuid.uuid4())
        resource = {**resource, "id": pid}
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        p = Proposal(pid, org, actor, resource_type, subject_id, "proposed", now, resource, safety)
        with self._lock, self._connect() as con:
            con.execute("INSERT INTO proposal (id, org, actor, resource_type, subject_id, status, created_at, resource,"
                        " safety) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (pid, org, actor, resource_type, subject_id, "proposed", now, json.dumps(resource),
                         json.dumps(safety) if safety is not None else None))  # fmt: skip
        return p

    def delete(self, org: str, pid: str) -> None:
        with self._lock, self._connect() as con:
            con.execute("DELETE FROM proposal WHERE id = ? AND org = ?", (pid, org))

    def get(self, org: str, pid: str) -> Proposal | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM proposal WHERE id = ? AND org = ?", (pid, org)).fetchone()
        return _proposal(row) if row else None

    def list(self, org: str, status: str | None = None, resource_type: str | None = None,
             subject_id: int | None = None, limit: int = 100) -> list[Proposal]:  # fmt: skip
        if status is not None and status not in STATUSES:
            raise ProposalError(f"status {status!r} is not one of {list(STATUSES)}")
        sql, args = "SELECT * FROM proposal WHERE org = ?", [org]
        for column, value in (("status", status), ("resource_type", resource_type), ("subject_id", subject_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        sql += " ORDER BY rowid LIMIT ?"
        with self._connect() as con:
            return [_proposal(r) for r in con.execute(sql, [*args, limit]).fetchall()]

    def review(self, org: str, pid: str, actor: str, decision: str, reason: str | None = None) -> Proposal:
        if decision not in ("accepted", "rejected"):
            raise ProposalError(f"decision {decision!r} is not 'accepted' or 'rejected'")
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._lock, self._connect() as con:
            cur = con.execute("UPDATE proposal SET status = ?, reviewed_by = ?, reviewed_at = ?, review_reason = ? "
                              "WHERE id = ? AND org = ? AND status = 'proposed'",
                              (decision, actor, now, reason, pid, org))  # fmt: skip
            changed = cur.rowcount
        p = self.get(org, pid)
        if p is None:
            raise KeyError(pid)
        if not changed:
            raise ProposalError(f"proposal {pid} was already {p.status}")
        return p


def _proposal(row: sqlite3.Row) -> Proposal:
    d = dict(row)
    d["resource"] = json.loads(d["resource"])
    d["safety"] = json.loads(d["safety"]) if d["safety"] else None
    return Proposal(**d)
