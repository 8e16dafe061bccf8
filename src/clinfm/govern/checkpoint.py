"""Signed checkpoints of the audit chain head, exported outside the database after every append batch.

Each committed transaction that appended audit entries adds one line to an append-only JSON-lines file
(:func:`clinfm.govern.audit_keys.checkpoints_file`): ``{seq, hash, timestamp, key_id, signature}``, the signature
an Ed25519 signature over the canonical JSON of the other four. Whoever can rewrite the database but not this file
or the signing key cannot cut the tail, replace the chain or re-sign it without ``clinfm audit verify`` noticing.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from clinfm.govern import audit_keys
from clinfm.govern.db import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement "the chain had ``seq`` entries and its head was ``hash``", line ``line`` of the file."""

    seq: int
    hash: str
    timestamp: str
    key_id: str
    line: int


@dataclass(frozen=True)
class CheckpointLog:
    """What a checkpoint file holds: the valid checkpoints, and each line that failed (line number, why)."""

    path: Path
    exists: bool
    valid: tuple[Checkpoint, ...]
    invalid: tuple[tuple[int, str], ...]

    @property
    def latest(self) -> Checkpoint | None:
        return max(self.valid, key=lambda c: c.seq, default=None)


def _payload(seq: int, head_hash: str, timestamp: str, key_id: str) -> bytes:
    body = {"seq": seq, "hash": head_hash, "timestamp": timestamp, "key_id": key_id}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def export(seq: int, head_hash: str, path: Path | None = None) -> None:
    """Sign ``(seq, head_hash)`` and append it to the checkpoint file (one ``write`` of one line).

    Not fsynced: a power loss may drop the newest lines, which only leaves the tail after the previous checkpoint
    unanchored (``verify`` warns), never a false alarm; the process dying after ``write`` loses nothing."""
    key = audit_keys.signing_key()
    kid = audit_keys.key_id(key.public_key())
    timestamp = utcnow().isoformat(timespec="microseconds")
    signature = base64.b64encode(key.sign(_payload(seq, head_hash, timestamp, kid))).decode()
    line = json.dumps(
        {"seq": seq, "hash": head_hash, "timestamp": timestamp, "key_id": kid, "signature": signature},
        sort_keys=True,
    )
    path = path or audit_keys.checkpoints_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read(path: Path | None = None) -> CheckpointLog:
    """Parse and check every line of the checkpoint file against the verify key."""
    path = path or audit_keys.checkpoints_file()
    if not path.exists():
        return CheckpointLog(path, False, (), ())
    public = audit_keys.verify_key()
    valid: list[Checkpoint] = []
    invalid: list[tuple[int, str]] = []
    for number, text in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            doc = json.loads(text)
            seq, head_hash, timestamp, kid = int(doc["seq"]), str(doc["hash"]), str(doc["timestamp"]), str(doc["key_id"])
            signature = base64.b64decode(doc["signature"], validate=True)
        except (ValueError, KeyError, TypeError) as exc:
            invalid.append((number, f"not a checkpoint ({type(exc).__name__})"))
            continue
        if public is None:
            invalid.append((number, "no verify key to check its signature (set CLINFM_AUDIT_VERIFY_KEY_FILE)"))
            continue
        try:
            public.verify(signature, _payload(seq, head_hash, timestamp, kid))
        except InvalidSignature:
            invalid.append((number, f"its signature does not verify with key {audit_keys.key_id(public)}"))
            continue
        valid.append(Checkpoint(seq, head_hash, timestamp, kid, number))
    return CheckpointLog(path, True, tuple(valid), tuple(invalid))
