"""The audit chain: any edit, deletion or reordering of a row in the database file is found and named."""

from __future__ import annotations

import itertools
import sqlite3
import threading

import pytest

from clinfm.govern import PHIError, list_entries, record_prediction_access, verify_chain
from clinfm.govern.audit import record


def _fill(db: str, n: int = 6) -> None:
    for i in range(n):
        record("test.event", actor="alice", org="acme", details={"i": i, "score": 0.5 + i / 10}, db=db)


def _raw(db: str) -> sqlite3.Connection:
    return sqlite3.connect(db.removeprefix("sqlite:///"), isolation_level=None)


def test_intact_chain_verifies(db):
    _fill(db)
    result = verify_chain(db=db)
    assert result.ok and result.entries == 6 and result.problem is None
    entries = list_entries(db=db)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0].prev_hash == "0" * 64 and all(
        b.prev_hash == a.hash for a, b in itertools.pairwise(entries)
    )


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3",
        'UPDATE audit_log SET details = \'{"i":2,"score":0.99}\' WHERE seq = 3',
        "UPDATE audit_log SET timestamp = '2020-01-01T00:00:00.000000+00:00' WHERE seq = 3",
    ],
)
def test_an_edited_row_is_named(db, sql):
    _fill(db)
    with _raw(db) as conn:
        conn.execute(sql)
    result = verify_chain(db=db)
    assert not result and result.problem == "altered" and result.seq == 3
    assert "entry seq 3 was altered" in result.message


def test_an_edited_and_rehashed_row_is_named(db):
    _fill(db)
    from clinfm.govern.audit import entry_hash
    from clinfm.govern.db import AuditEntry, session_scope

    with session_scope(db) as session:  # a forger who knows the hash recipe rewrites entry 3 consistently
        row = session.get(AuditEntry, 3)
        row.actor = "mallory"
        row.hash = entry_hash(row.prev_hash, row)
    result = verify_chain(db=db)
    assert result.problem == "altered" and result.seq == 3
    assert "not the one entry seq 4 chained to" in result.message


def test_a_deleted_row_is_named(db):
    _fill(db)
    with _raw(db) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 4")
    result = verify_chain(db=db)
    assert result.problem == "missing" and result.seq == 4 and "entry seq 4 is missing" in result.message


def test_a_cut_tail_is_named(db):
    _fill(db)
    with _raw(db) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq >= 5")
    result = verify_chain(db=db)
    assert result.problem == "truncated" and result.seq == 5


def test_swapped_rows_are_named(db):
    _fill(db)
    cols = "seq, timestamp, actor, org_id, action, model_version_id, subject_id, purpose, details, prev_hash, hash"
    with _raw(db) as conn:  # swap the whole content of rows 2 and 3, keeping their physical slots
        r2 = conn.execute(f"SELECT {cols} FROM audit_log WHERE id = 2").fetchone()
        r3 = conn.execute(f"SELECT {cols} FROM audit_log WHERE id = 3").fetchone()
        conn.execute("UPDATE audit_log SET seq = -1 WHERE id = 3")
        sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
        conn.execute(f"UPDATE audit_log SET {sets} WHERE id = 2", r3)
        conn.execute(f"UPDATE audit_log SET {sets} WHERE id = 3", r2)
    result = verify_chain(db=db)
    assert result.problem == "reordered" and result.seq == 2
    assert "entry seq 2 is out of order" in result.message


def test_a_row_moved_to_the_end_is_named(db):
    _fill(db)
    with _raw(db) as conn:
        conn.execute("UPDATE audit_log SET id = 100 WHERE seq = 2")
    result = verify_chain(db=db)
    assert result.problem == "reordered" and result.seq == 2


def test_details_must_not_carry_phi(db):
    for details in (
        {"name": "Jane Doe"},
        {"ok": {"Birth-Date": "1950-01-01"}},
        {"rows": [{"note": "pt c/o pain"}]},
    ):
        with pytest.raises(PHIError, match="names PHI"):
            record("test.event", actor="alice", details=details, db=db)
    assert list_entries(db=db) == []


def test_prediction_access_is_recorded_with_a_pseudonymous_subject(db):
    entry = record_prediction_access(
        "svc (key k1)", "acme", "mv_1", 123456789, "treatment", {"score": 0.7}, db=db
    )
    assert (entry.action, entry.subject_id, entry.purpose, entry.org_id) == (
        "prediction.access",
        "123456789",
        "treatment",
        "acme",
    )
    assert verify_chain(db=db).ok


def _hammer(db: str, threads: int = 4, each: int = 15) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(each):
                record("test.concurrent", actor=f"worker-{t}", details={"i": i}, db=db)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    result = verify_chain(db=db)
    assert result.ok and result.entries == threads * each
    assert [e.seq for e in list_entries(db=db)] == list(range(1, threads * each + 1))


def test_concurrent_writers_keep_one_chain_sqlite(db):
    _hammer(db)


def test_concurrent_writers_keep_one_chain_postgresql(pg_db):
    _hammer(pg_db)
