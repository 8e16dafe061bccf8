"""The audit log: an append-only chain of registry changes, approvals, keys and prediction access, keyed and anchored.

Entry MAC = HMAC-SHA256(key, previous MAC + canonical JSON of the entry), canonical = sorted keys and no whitespace
over ``seq, timestamp, actor, organization, action, model_version, subject, purpose, details``; the first entry
chains to 64 zeros. The key lives outside the database (:mod:`clinfm.govern.audit_keys`), so rewriting and
re-chaining rows needs more than SQL access; after each committed append batch the chain head is signed (Ed25519)
and appended to a checkpoint file outside the database (:mod:`clinfm.govern.checkpoint`), so a cut tail or a
replaced chain is found even by someone holding the MAC key. Entries written before keying (``scheme`` ``sha256``)
are accepted only as a prefix of the chain. Entries never hold PHI: a subject is only its pseudonymous id, and
:func:`check_no_phi` refuses ``details`` with keys that name identifiers or free text (:data:`PHI_KEYS`). Values are
not inspected, so callers put counts, ids and hashes in ``details``, never a note or a name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from clinfm.govern import audit_keys, checkpoint
from clinfm.govern.db import DB, GENESIS_HASH, AuditEntry, AuditHead, GovernSession, session_scope, utcnow

log = logging.getLogger(__name__)
KEYED = "hmac-sha256"
UNKEYED = "sha256"

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

Problem = Literal[
    "altered", "missing", "reordered", "truncated", "forged", "head-missing", "checkpoint-missing",
    "checkpoint-forged", "key-missing",
]  # fmt: skip


class PHIError(ValueError):
    """Audit details carried a key that names PHI."""


class AuditIntegrityError(LookupError):
    """The chain cannot be appended to (its head row is gone): run ``clinfm audit verify``."""


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
    checkpoint_seq: int | None = None
    """The newest signed checkpoint the chain was checked against."""
    warnings: tuple[str, ...] = field(default_factory=tuple)

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


def entry_hash(prev_hash: str, entry: AuditEntry, key: bytes | None = None) -> str:
    """The entry's MAC under ``key`` (default: the configured audit key); ``key=b""`` gives the unkeyed recipe."""
    message = (prev_hash + canonical_json(_body(entry))).encode()
    key = audit_keys.mac_key() if key is None else key
    if not key:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


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
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        raise AuditIntegrityError("the audit_head row is missing: run `clinfm audit verify` before writing")
    key = audit_keys.mac_key()
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
        scheme=KEYED,
    )
    entry.hash = entry_hash(head.hash, entry, key)
    session.add(entry)
    head.seq, head.hash = entry.seq, entry.hash
    session.flush()
    session.info["audit_checkpoint"] = (entry.seq, entry.hash)
    return entry


@event.listens_for(GovernSession, "after_commit")
def _export_checkpoint(session: Session) -> None:
    """One signed checkpoint per committed batch; a failure is logged and the next batch's checkpoint covers it."""
    pending = session.info.pop("audit_checkpoint", None)
    if pending is None:
        return
    try:
        checkpoint.export(*pending)
    except (OSError, audit_keys.AuditKeyError) as exc:
        log.error("audit checkpoint of seq %d not exported: %s", pending[0], exc)


@event.listens_for(GovernSession, "after_rollback")
def _drop_checkpoint(session: Session) -> None:
    session.info.pop("audit_checkpoint", None)


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
def verify_chain(db: DB = None, *, checkpoints: Path | None = None) -> VerifyResult:
    """Recompute the whole chain in insertion order, then hold it against its head row and the signed checkpoints.

    Names the first bad entry:

    * altered: an entry's MAC does not verify (or no longer links to its successor) at a position a checkpoint
      covers, or the chain differs from a signed checkpoint: the entry was rewritten;
    * forged: an entry after the newest checkpoint whose MAC does not verify, or an unkeyed entry after keyed
      ones: it was added by someone without the key;
    * missing / reordered: a sequence number is absent, or present out of place;
    * truncated: the chain ends before its head row or the newest checkpoint says it reached;
    * head-missing, checkpoint-missing, checkpoint-forged, key-missing: the anchors themselves are gone or fake.
    """
    with session_scope(db) as session:
        rows = session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
        head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
    key = audit_keys.mac_key(create=False)
    log_ = checkpoint.read(checkpoints)
    latest = log_.latest
    covered = latest.seq if latest else 0
    present = {r.seq for r in rows}
    warnings: list[str] = []

    def bad(problem: Problem, seq: int | None, message: str) -> VerifyResult:
        return VerifyResult(False, len(rows), problem, seq, message, covered or None, tuple(warnings))

    if log_.invalid:
        number, why = log_.invalid[0]
        return bad("checkpoint-forged", None, f"checkpoint line {number} of {log_.path} is forged: {why}")
    keyed_rows = [r for r in rows if r.scheme == KEYED]
    if keyed_rows and key is None:
        return bad("key-missing", keyed_rows[0].seq, "keyed entries exist but no audit key is configured "
                   f"(CLINFM_AUDIT_KEY or {audit_keys.mac_key_file()})")  # fmt: skip
    if keyed_rows and not log_.exists:
        return bad("checkpoint-missing", None, f"keyed entries exist but the checkpoint file {log_.path} is "
                   "missing: every append batch writes one, so it was removed or CLINFM_AUDIT_CHECKPOINTS is wrong")  # fmt: skip

    prev_hash, expected, seen_keyed = GENESIS_HASH, 1, False
    for row in rows:
        if row.seq != expected:
            if row.seq < expected:
                return bad("reordered", row.seq, f"entry seq {row.seq} appears again after seq {expected - 1}")
            if expected in present:
                return bad("reordered", expected, f"entry seq {expected} is out of order: seq {row.seq} comes first")
            return bad("missing", expected, f"entry seq {expected} is missing (seq {row.seq} follows seq {expected - 1})")
        if row.scheme == KEYED:
            seen_keyed = True
        elif seen_keyed:
            return bad("forged", row.seq, f"entry seq {row.seq} is unkeyed after keyed entries: not written by ClinFM")
        if entry_hash(row.prev_hash, row, key if row.scheme == KEYED else b"") != row.hash:
            if row.seq > covered:
                return bad("forged", row.seq, f"entry seq {row.seq} does not carry a valid MAC: not written by ClinFM "
                           f"(after the newest signed checkpoint, seq {covered})")  # fmt: skip
            return bad("altered", row.seq, f"entry seq {row.seq} was altered: its content does not match its MAC")
        if row.prev_hash != prev_hash:
            culprit = max(row.seq - 1, 1)
            return bad("altered", culprit,
                       f"entry seq {culprit} was altered: its hash is not the one entry seq {row.seq} chained to")  # fmt: skip
        prev_hash, expected = row.hash, expected + 1
    last = expected - 1
    by_seq = {r.seq: r.hash for r in rows}
    for cp in sorted(log_.valid, key=lambda c: c.seq):
        if cp.seq <= last and by_seq.get(cp.seq) != cp.hash:
            return bad("altered", cp.seq, f"entries up to seq {cp.seq} were rewritten: the chain there differs from "
                       f"the signed checkpoint of {cp.timestamp} (line {cp.line} of {log_.path})")  # fmt: skip
    if covered > last:
        return bad("truncated", last + 1, f"entries seq {last + 1}..{covered} are missing: the signed checkpoint of "
                   f"{latest.timestamp} records seq {covered}, the chain ends at seq {last}")  # fmt: skip
    if head is None:
        return bad("head-missing", None, f"the audit_head row is missing (the chain has {last} entries): "
                   "it was deleted; appends are refused until it is restored from the newest checkpoint")  # fmt: skip
    if head.seq > last:
        return bad("truncated", last + 1,
                   f"entries seq {last + 1}..{head.seq} are missing (the chain head records seq {head.seq})")
    if head.seq < last:
        return bad("forged", head.seq + 1,
                   f"entry seq {head.seq + 1} was added outside the chain (the chain head records seq {head.seq})")
    if head.hash != prev_hash:
        return bad("altered", last, f"entry seq {last} was altered: its hash differs from the chain head")
    unkeyed = len(rows) - len(keyed_rows)
    if unkeyed:
        warnings.append(f"entries seq 1..{unkeyed} predate the keyed chain (unkeyed SHA-256); only the signed "
                        "checkpoints after them protect them")  # fmt: skip
    if last > covered:
        warnings.append(f"entries seq {covered + 1}..{last} are after the newest signed checkpoint")
    return VerifyResult(True, len(rows), checkpoint_seq=covered or None, warnings=tuple(warnings))
