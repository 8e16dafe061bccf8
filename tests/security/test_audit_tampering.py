"""A database administrator's edits of the audit log, each on a copy of the registry, are found and named.

The attacker here holds the database (any SQL) but neither the MAC key nor the checkpoint signing key, which live
outside it; each case is one the hardening probe made ``clinfm audit verify`` call "intact" before.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinfm.govern.audit import canonical_json, record, verify_chain

pytestmark = pytest.mark.usefixtures("isolated_home")

COLS = "seq, timestamp, actor, org_id, action, model_version_id, subject_id, purpose, details, prev_hash, hash"


def _fill(db: str, n: int = 6) -> None:
    for i in range(n):
        record("test.event", actor="alice", org="acme", details={"i": i}, db=db)


def _copy(db: str, tmp_path: Path) -> tuple[str, sqlite3.Connection]:
    """A byte copy of the registry (what a DBA edits), and a raw connection to it."""
    src = sqlite3.connect(db.removeprefix("sqlite:///"))
    path = tmp_path / "copy.db"
    dst = sqlite3.connect(path, isolation_level=None)
    src.backup(dst)
    src.close()
    return f"sqlite:///{path}", dst


def _sha_recipe(prev: str, row: dict) -> str:
    """The old unkeyed recipe: all a forger without the key can compute."""
    body = {"seq": row["seq"], "timestamp": row["timestamp"], "actor": row["actor"], "organization": row["org_id"],
            "action": row["action"], "model_version": row["model_version_id"], "subject": row["subject_id"],
            "purpose": row["purpose"], "details": json.loads(row["details"])}  # fmt: skip
    return hashlib.sha256((prev + canonical_json(body)).encode()).hexdigest()


def _rows(conn: sqlite3.Connection) -> list[dict]:
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute(f"SELECT id, {COLS} FROM audit_log ORDER BY id")]


def test_untouched_copy_verifies(db, tmp_path):
    _fill(db)
    copy, _ = _copy(db, tmp_path)
    result = verify_chain(db=copy)
    assert result.ok and result.entries == 6 and result.checkpoint_seq == 6


def test_cut_tail_with_head_updated_is_truncation(db, tmp_path):
    _fill(db)
    copy, conn = _copy(db, tmp_path)
    h4 = conn.execute("SELECT hash FROM audit_log WHERE seq = 4").fetchone()[0]
    conn.execute("DELETE FROM audit_log WHERE seq > 4")
    conn.execute("UPDATE audit_head SET seq = 4, hash = ?", (h4,))
    result = verify_chain(db=copy)
    assert not result.ok and result.problem == "truncated" and result.seq == 5
    assert "entries seq 5..6" in result.message and "checkpoint" in result.message


def test_every_row_deleted_and_head_reset_is_truncation(db, tmp_path):
    _fill(db)
    copy, conn = _copy(db, tmp_path)
    conn.execute("DELETE FROM audit_log")
    conn.execute("UPDATE audit_head SET seq = 0, hash = ?", ("0" * 64,))
    result = verify_chain(db=copy)
    assert not result.ok and result.problem == "truncated" and result.seq == 1
    assert "entries seq 1..6" in result.message


def test_edited_row_with_every_hash_recomputed_is_named(db, tmp_path):
    _fill(db)
    copy, conn = _copy(db, tmp_path)
    conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    prev = "0" * 64
    for row in _rows(conn):  # the 20-line script: re-hash the whole chain and the head with the public recipe
        h = _sha_recipe(prev, {**row, "prev_hash": prev})
        conn.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?", (prev, h, row["id"]))
        prev = h
    conn.execute("UPDATE audit_head SET hash = ?", (prev,))
    result = verify_chain(db=copy)
    assert not result.ok and result.problem == "altered" and result.seq == 1
    assert "MAC" in result.message


def test_edited_row_relabelled_as_legacy_and_rehashed_is_caught_by_the_checkpoint(db, tmp_path):
    _fill(db)
    copy, conn = _copy(db, tmp_path)
    conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    prev = "0" * 64
    for row in _rows(conn):
        h = _sha_recipe(prev, {**row, "prev_hash": prev})
        conn.execute("UPDATE audit_log SET prev_hash = ?, hash = ?, scheme = 'sha256' WHERE id = ?", (prev, h, row["id"]))
        prev = h
    conn.execute("UPDATE audit_head SET hash = ?", (prev,))
    result = verify_chain(db=copy)
    assert not result.ok and result.problem == "altered" and result.seq == 1
    assert "signed checkpoint" in result.message


def test_inserted_promote_row_is_forgery(db, tmp_path):
    _fill(db)
    copy, conn = _copy(db, tmp_path)
    seq, prev = conn.execute("SELECT seq, hash FROM audit_head").fetchone()
    row = {"seq": seq + 1, "timestamp": "2026-01-01T00:00:00.000000+00:00", "actor": "mallory", "org_id": "acme",
           "action": "model.promote", "model_version_id": "mv_x", "subject_id": None, "purpose": None,
           "details": '{"to":"general"}'}  # fmt: skip
    h = _sha_recipe(prev, row)
    conn.execute(
        f"INSERT INTO audit_log ({COLS}, scheme) VALUES (?,?,?,?,?,?,?,?,?,?,?, 'hmac-sha256')",
        (*row.values(), prev, h),
    )
    conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (seq + 1, h))
    result = verify_chain(db=copy)
    assert not result.ok and result.problem == "forged" and result.seq == 7
    assert "not written by ClinFM" in result.message


def test_deleted_head_row_is_reported_not_a_crash(db, tmp_path):
    _fill(db)
    copy, conn = _copy(db, tmp_path)
    conn.execute("DELETE FROM audit_head")
    result = verify_chain(db=copy)
    assert not result.ok and result.problem == "head-missing"
    assert "audit_head" in result.message and result.entries == 6


def test_forged_checkpoint_line_is_named(db, tmp_path):
    _fill(db)
    from clinfm.govern import audit_keys

    path = audit_keys.checkpoints_file()
    line = json.loads(path.read_text().splitlines()[-1])
    line["seq"] = 99
    with path.open("a") as f:
        f.write(json.dumps(line) + "\n")
    result = verify_chain(db=db)
    assert not result.ok and result.problem == "checkpoint-forged"
    assert "line 7" in result.message


def test_missing_checkpoint_file_is_reported(db, tmp_path):
    _fill(db)
    from clinfm.govern import audit_keys

    audit_keys.checkpoints_file().unlink()
    result = verify_chain(db=db)
    assert not result.ok and result.problem == "checkpoint-missing"


def test_key_file_is_private_and_refused_when_exposed(db):
    from clinfm.govern import audit_keys

    _fill(db, 1)
    path = audit_keys.mac_key_file()
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o664)
    with pytest.raises(audit_keys.AuditKeyError, match="mode 0664"):
        record("test.event", actor="alice", db=db)


def test_production_never_generates_a_key(db, monkeypatch):
    from clinfm.govern import audit_keys

    monkeypatch.setenv("CLINFM_ENV", "production")
    with pytest.raises(audit_keys.AuditKeyError, match="production"):
        record("test.event", actor="alice", db=db)
    assert not audit_keys.mac_key_file().exists()


def test_cli_verify_names_the_entry(db, tmp_path, monkeypatch):
    from clinfm.cli import app

    _fill(db)
    copy, conn = _copy(db, tmp_path)
    conn.execute("DELETE FROM audit_head")
    monkeypatch.setenv("CLINFM_DATABASE_URL", copy)
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert "audit_head" in result.output and "Traceback" not in result.output


def test_init_keys_writes_private_files_and_never_overwrites(tmp_path):
    from clinfm.cli import app
    from clinfm.govern import audit_keys

    result = CliRunner().invoke(app, ["audit", "init-keys", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    for name in ("audit.key", "audit-signing.pem"):
        assert (tmp_path / "keys" / name).stat().st_mode & 0o777 == 0o600
    assert CliRunner().invoke(app, ["audit", "init-keys", str(tmp_path / "keys")]).exit_code == 2
    with pytest.raises(audit_keys.AuditKeyError, match="exists"):
        audit_keys.generate_keys(tmp_path / "keys")
