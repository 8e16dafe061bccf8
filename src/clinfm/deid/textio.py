"""De-identify notes JSONL to JSONL, line by line: a bad line goes to a quarantine file with its line number and
the reason (never its text) and never stops the batch; the counts returned reconcile."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clinfm.deid.text import MODES as TEXT_MODES
from clinfm.deid.text import NoteDeidentifier, Span

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("detect", "redact", "tag", "surrogate")


@dataclass(frozen=True)
class NoteRecord:
    line: int
    id: object
    text: str
    subject_key: str | None
    date_shift_days: int


class BadLine(ValueError):
    """A JSONL line that cannot be de-identified; the message is the quarantine reason."""


def parse_line(raw: bytes, line: int) -> NoteRecord:
    """One input line -> a NoteRecord, or BadLine naming what is wrong (never quoting the note)."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    if not decoded.strip():
        raise BadLine("empty line, expected a JSON object")
    try:
        obj = json.loads(decoded)
    except json.JSONDecodeError as exc:
        raise BadLine(f"malformed JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise BadLine(f"expected a JSON object, got {type(obj).__name__}")
    for field in ("id", "text"):
        if field not in obj:
            raise BadLine(f"missing field {field!r}")
    text = obj["text"]
    if not isinstance(text, str):
        raise BadLine(f"field 'text' must be a string, got {_json_type(text)}")
    key = obj.get("subject_key")
    if key is not None and not isinstance(key, str):
        raise BadLine(f"field 'subject_key' must be a string or null, got {_json_type(key)}")
    shift = obj.get("date_shift_days", 0)
    if shift is None:
        shift = 0
    if not isinstance(shift, int) or isinstance(shift, bool):
        raise BadLine(f"field 'date_shift_days' must be an integer, got {_json_type(shift)}")
    return NoteRecord(line, obj["id"], text, key, shift)


def _json_type(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), "null" if value is None else type(value).__name__)


def deid_jsonl(
    in_path: str | Path,
    out_path: str | Path,
    mode: str = "redact",
    quarantine_path: str | Path | None = None,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    engine: NoteDeidentifier | None = None,
) -> dict:
    """Read `{"id", "text"[, "subject_key", "date_shift_days"]}` lines, write `{"id", "spans"[, "text"]}` lines.

    `mode`: detect (spans only), redact, tag or surrogate. Bad lines go to `quarantine_path` (default:
    OUT.quarantine.jsonl, created only when needed) as `{"line", "reason"}`. `progress(n)` is called with the
    number of lines handled so far. Returns counts: lines_read == written + quarantined.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    in_path, out_path = Path(in_path), Path(out_path)
    quarantine_path = Path(quarantine_path) if quarantine_path else out_path.with_suffix(".quarantine.jsonl")
    engine = engine or NoteDeidentifier()
    counts: Counter = Counter(lines_read=0, written=0, quarantined=0, spans=0)
    labels: Counter = Counter()
    quarantine = None
    batch: list[NoteRecord] = []

    def flush(out) -> None:
        texts = [r.text for r in batch]
        results: Sequence[tuple[str | None, list[Span]]]
        if mode in TEXT_MODES:
            results = engine.deidentify_many(
                texts, mode, [r.subject_key for r in batch], [r.date_shift_days for r in batch]
            )
        else:  # detect
            results = [(None, spans) for spans in engine.detect_many(texts)]
        for record, (new_text, spans) in zip(batch, results):
            row = {"id": record.id, "spans": [s.to_dict() for s in spans]}
            if new_text is not None:
                row["text"] = new_text
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            counts["written"] += 1
            counts["spans"] += len(spans)
            labels.update(s.label for s in spans)
        batch.clear()
        if progress:
            progress(counts["lines_read"])

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with in_path.open("rb") as src, out_path.open("w", encoding="utf-8") as out:
        for number, raw in enumerate(src, start=1):
            counts["lines_read"] += 1
            try:
                batch.append(parse_line(raw.rstrip(b"\r\n"), number))
            except BadLine as exc:
                if quarantine is None:
                    quarantine = quarantine_path.open("w", encoding="utf-8")
                quarantine.write(json.dumps({"line": number, "reason": str(exc)}) + "\n")
                counts["quarantined"] += 1
            if len(batch) >= batch_size:
                flush(out)
        if batch:
            flush(out)
    if quarantine is not None:
        quarantine.close()
    if progress:
        progress(counts["lines_read"])
    log.info("deid-text: %d lines read, %d written, %d quarantined, %d spans", counts["lines_read"],
             counts["written"], counts["quarantined"], counts["spans"])  # fmt: skip
    return {**counts, "spans_by_label": dict(sorted(labels.items())), "quarantine_path": str(quarantine_path)}
