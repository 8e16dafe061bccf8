"""The audit log: an append-only, hash-chained record of registry changes, approvals, keys and prediction access.

Entry hash = SHA-256(previous hash + canonical JSON of the entry), canonical = sorted keys and no whitespace over
``seq, timestamp, actor, organization, action, model_version, subject, purpose, details``; the first entry
chains to 64 zeros. Entries never hold PHI: a subject is only its pseudonymous id, and :func:`check_no_phi`
refuses ``details`` with keys that name identifiers or free text (:data:`PHI_KEYS`). Values are not inspected,
so callers put counts, ids and hashes in ``details``, never a note or a name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinfm.govern.db import DB, GENESIS_HASH, AuditEntry, AuditHead, session_scope, utcnow

PHI_KEYS = frozenset(
    {
        "name", "first_name", "last_name", "given_name", "family_name", "full_name", "patient_name",
        "text", "text_value", "note", "notes", "note_text", "free_text",
        "birth_date", "birthdate", "date_of_birth", "dob", "birth_datetime",
        "address", "street", "city", "zip", "zip_code", "postal_code", "phone", "telephone", "fax", "email",
        "ssn", "social_security_number", "mrn", "medical_record_number",
    }
)  # fmt: skip
"""``details`` keys refused anywhere in the document (case-insensitive, ``-`` read as ``_``)."""

Problem = Literal["altered", "missing", "reordered"]


class PHIError(ValueError):
    """Audit details carried a key that names PHI."""


class AuditRecord(BaseModel):
    """One audit entry as read back, ``details`` parsed."""

    model_config = ConfigDict(from_attributes=True)
    seq: int
    timestamp: str
    actor: str
    org_id: str | None
    action: str
    model_version_id: str | None
    subject_id: str | None
    purpose: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @field_validator("details", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify_chain`: ``ok``, or the first bad entry (``seq``) and what is wrong with it."""

    ok: bool
    entries: int
    problem: Problem | None = None
    seq: int | None = None
    message: str = "audit chain intact"

    def __bool__(self) -> bool:
        return self.ok


# --- hashing -----------------------------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _body(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "timestamp": entry.timestamp,
        "actor": entry.actor,
        "organization": entry.org_id,
        "action": entry.action,
        "model_version": entry.model_version_id,
        "subject": entry.subject_id,
        "purpose": entry.purpose,
        "details": json.loads(entry.details),
    }


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256((prev_hash + canonical_json(_body(entry))).encode()).hexdigest()


def check_no_phi(details: Any, path: str = "details") -> None:
    """Refuse a ``details`` document with a key in :data:`PHI_KEYS` at any depth, naming where it is."""
    if isinstance(details, dict):
        for key, value in details.items():
            if str(key).strip().lower().replace("-", "_") in PHI_KEYS:
                raise PHIError(
                    f"audit {path} has key {key!r}, which names PHI; record ids, counts or hashes instead"
                )
            check_no_phi(value, f"{path}.{key}")
    elif isinstance(details, list | tuple):
        for i, value in enumerate(details):
            check_no_phi(value, f"{path}[{i}]")


# --- writing -----------------------------------------------------------------------------------------------
def append(
    session: Session,
    action: str,
    *,
    actor: str,
    org: str | None = None,
    model_version_id: str | None = None,
    subject_id: int | str | None = None,
    purpose: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry inside ``session``'s transaction (opened with ``write=True``), so it commits with the change.

    The chain head row is read ``FOR UPDATE``: with the SQLite ``BEGIN IMMEDIATE`` this makes appends strictly
    one after another on both backends.
    """
    details = dict(details or {})
    check_no_phi(details)
    org = org if org is not None else session.info.get("org_id")
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    entry = AuditEntry(
        seq=head.seq + 1,
        timestamp=utcnow().isoformat(timespec="microseconds"),
        actor=actor,
        org_id=org,
        action=action,
        model_version_id=model_version_id,
        subject_id=None if subject_id is None else str(subject_id),
        purpose=purpose,
        details=canonical_json(details),
        prev_hash=head.hash,
        hash="",
    )
    entry.hash = entry_hash(head.hash, entry)
    session.add(entry)
    head.seq, head.hash = entry.seq, entry.hash
    session.flush()
    return entry


def record(
    action: str,
    *,
    actor: str,
    org: str | None = None,
    model_version_id: str | None = None,
    subject_id: int | str | None = None,
    purpose: str | None = None,
    details: dict[str, Any] | None = None,
    db: DB = None,
) -> AuditRecord:
    """Append one entry in its own transaction."""
    with session_scope(db, write=True) as session:
        entry = append(
            session,
            action,
            actor=actor,
            org=org,
            model_version_id=model_version_id,
            subject_id=subject_id,
            purpose=purpose,
            details=details,
        )
        return AuditRecord.model_validate(entry)


def record_prediction_access(
    actor: str,
    org: str,
    model_version_id: str,
    subject_id: int | str,
    purpose: str,
    details: dict[str, Any] | None = None,
    db: DB = None,
) -> AuditRecord:
    """The entry every prediction read must leave: who, for which organization, which model, which subject, why."""
    return record(
        "prediction.access",
        actor=actor,
        org=org,
        model_version_id=model_version_id,
        subject_id=subject_id,
        purpose=purpose,
        details=details,
        db=db,
    )


def list_entries(
    org: str | None = None, *, since_seq: int = 0, limit: int = 1000, db: DB = None
) -> list[AuditRecord]:
    """Entries after ``since_seq`` in chain order; with ``org``, only that organization's."""
    with session_scope(db, org=org) as session:
        rows = session.execute(
            select(AuditEntry).where(AuditEntry.seq > since_seq).order_by(AuditEntry.seq).limit(limit)
        ).scalars()
        return [AuditRecord.model_validate(r) for r in rows]


# --- verifying ---------------------------------------------------------------------------------------------
def verify_chain(db: DB = None) -> VerifyResult:
    """Recompute the whole chain in insertion order and name the first altered, missing or reordered entry.

    * altered: an entry's content no longer gives its stored hash, or its stored hash is no longer the one its
      successor (or the chain head) committed to, i.e. it was rewritten and re-hashed;
    * missing: a sequence number is absent (a deleted row, or rows cut from the tail, caught by the head row);
    * reordered: an entry is present but not where it was appended.
    """
    with session_scope(db) as session:
        rows = session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
        head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    present = {r.seq for r in rows}

    def bad(problem: Problem, seq: int, message: str) -> VerifyResult:
        return VerifyResult(False, len(rows), problem, seq, message)

    prev_hash, expected = GENESIS_HASH, 1
    for row in rows:
        if row.seq != expected:
            if row.seq < expected:
                return bad(
                    "reordered", row.seq, f"entry seq {row.seq} appears again after seq {expected - 1}"
                )
            if expected in present:
                return bad(
                    "reordered", expected, f"entry seq {expected} is out of order: seq {row.seq} comes first"
                )
            return bad(
                "missing",
                expected,
                f"entry seq {expected} is missing (seq {row.seq} follows seq {expected - 1})",
            )
        if entry_hash(row.prev_hash, row) != row.hash:
            return bad(
                "altered", row.seq, f"entry seq {row.seq} was altered: its content does not match its hash"
            )
        if row.prev_hash != prev_hash:
            culprit = max(row.seq - 1, 1)
            return bad(
                "altered",
                culprit,
                f"entry seq {culprit} was altered: its hash is not the one entry seq {row.seq} chained to",
            )
        prev_hash, expected = row.hash, expected + 1
    last = expected - 1
    if head.seq > last:
        return bad(
            "missing",
            last + 1,
            f"entries seq {last + 1}..{head.seq} are missing (the chain head records seq {head.seq})",
        )
    if head.seq < last:
        return bad(
            "altered",
            head.seq + 1,
            f"entry seq {head.seq + 1} was added outside the chain (the chain head records seq {head.seq})",
        )
    if head.hash != prev_hash:
        return bad("altered", last, f"entry seq {last} was altered: its hash differs from the chain head")
    return VerifyResult(True, len(rows))
