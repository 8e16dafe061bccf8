"""deid_jsonl: every mode's output shape, per-line subject keys and date shifts, and bad lines quarantined with
exact reasons (never note text) while the batch goes on and the counts reconcile."""

from __future__ import annotations

import json

import pytest

from clinfm.deid.text import NoteDeidentifier
from clinfm.deid.textio import MODES, deid_jsonl


@pytest.fixture(scope="module")
def engine() -> NoteDeidentifier:
    return NoteDeidentifier()


NOTE = "Wife Susan called on 03/14/2021 from 617-555-1234."


def write_lines(path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("mode", MODES)
def test_modes_output_shape(tmp_path, engine, mode):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(
        src, [json.dumps({"id": 7, "text": NOTE, "subject_key": "s1", "date_shift_days": 49}).encode()]
    )
    counts = deid_jsonl(src, out, mode=mode, engine=engine)
    [row] = read_jsonl(out)
    assert row["id"] == 7
    assert [(s["label"], NOTE[s["start"] : s["end"]]) for s in row["spans"]] == [
        ("NAME", "Susan"), ("DATE", "03/14/2021"), ("PHONE", "617-555-1234")
    ]  # fmt: skip
    assert set(row["spans"][0]) == {"start", "end", "label", "score", "recognizer"}
    expected = {
        "redact": "Wife [NAME] called on [DATE] from [PHONE].",
        "tag": "Wife [NAME:1] called on [DATE:1] from [PHONE:1].",
    }
    if mode == "detect":
        assert "text" not in row
    elif mode == "surrogate":
        assert (
            "05/02/2021" in row["text"] and "Susan" not in row["text"] and "617-555-1234" not in row["text"]
        )
    else:
        assert row["text"] == expected[mode]
    assert counts["lines_read"] == counts["written"] == 1 and counts["quarantined"] == 0
    assert counts["spans_by_label"] == {"DATE": 1, "NAME": 1, "PHONE": 1}


def test_surrogate_subject_key_per_line(tmp_path, engine):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        {"id": i, "text": "Seen with wife Susan Miller.", "subject_key": key} for i, key in enumerate("aab")
    ]
    write_lines(src, [json.dumps(x).encode() for x in lines])
    deid_jsonl(src, out, mode="surrogate", engine=engine)
    texts = [r["text"] for r in read_jsonl(out)]
    assert texts[0] == texts[1] != texts[2]


BAD = [
    (b'{"id": 1, "text": "ok \xff\xfe"}', "not valid UTF-8 (byte 0xff at offset 22)"),
    (b'{"id": 2, "text": "unterminated', "malformed JSON (Unterminated string starting at, column 19)"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"id": 4}', "missing field 'text'"),
    (b'{"text": "no id"}', "missing field 'id'"),
    (b'{"id": 6, "text": 42}', "field 'text' must be a string, got integer"),
    (b'{"id": 7, "text": null}', "field 'text' must be a string, got null"),
    (
        b'{"id": 8, "text": "x", "subject_key": 5}',
        "field 'subject_key' must be a string or null, got integer",
    ),
    (
        b'{"id": 9, "text": "x", "date_shift_days": "3"}',
        "field 'date_shift_days' must be an integer, got string",
    ),
    (b"   ", "empty line, expected a JSON object"),
]


def test_bad_lines_are_quarantined_and_counts_reconcile(tmp_path, engine):
    src, out, quarantine = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "bad.jsonl"
    good = [json.dumps({"id": "a", "text": NOTE}).encode(), json.dumps({"id": "b", "text": ""}).encode()]
    write_lines(src, [good[0]] + [line for line, _ in BAD] + [good[1]])
    seen: list[int] = []
    counts = deid_jsonl(src, out, mode="redact", quarantine_path=quarantine, batch_size=1, progress=seen.append,
                        engine=engine)  # fmt: skip
    assert counts["lines_read"] == len(BAD) + 2 == counts["written"] + counts["quarantined"]
    assert counts["quarantined"] == len(BAD)
    assert read_jsonl(quarantine) == [{"line": i + 2, "reason": reason} for i, (_, reason) in enumerate(BAD)]
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[1] == {"id": "b", "spans": [], "text": ""}  # an empty note is valid: no spans
    assert "Susan" not in quarantine.read_text() and "unterminated" not in quarantine.read_text()
    assert seen[-1] == counts["lines_read"] and seen == sorted(seen)


def test_default_quarantine_path_only_when_needed(tmp_path, engine):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(src, [json.dumps({"id": 1, "text": "K 5.9"}).encode()])
    counts = deid_jsonl(src, out, mode="detect", engine=engine)
    assert counts["quarantine_path"] == str(tmp_path / "out.quarantine.jsonl")
    assert not (tmp_path / "out.quarantine.jsonl").exists()


def test_unknown_mode_is_refused(tmp_path, engine):
    with pytest.raises(ValueError, match="mode 'mask' is not one of detect, redact, tag, surrogate"):
        deid_jsonl(tmp_path / "in.jsonl", tmp_path / "out.jsonl", mode="mask", engine=engine)
