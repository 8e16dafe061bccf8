"""A note written piece by piece: each PHI value is appended with its label, so its gold offsets are exact by
construction. Trap strings (look-alikes that must not be flagged) and neutral spans are recorded the same way."""

from __future__ import annotations

import json
import string
from collections.abc import Iterable
from pathlib import Path

from clinfm.deid.evaluate import NEUTRAL  # gold neither missed when left nor a false alarm when removed

__all__ = ["NEUTRAL", "TRAP", "NoteBuilder", "read_jsonl", "write_jsonl"]
TRAP = "TRAP"  # text that must NOT be flagged: eponyms, drugs, facility words, look-alike numbers
_FORMATTER = string.Formatter()

Value = str | tuple[str, str]  # plain text, or (label, text)


class NoteBuilder:
    """Append text with `fill`; `(label, value)` fields become gold spans (or traps/neutral), strings stay plain."""

    def __init__(self, case: str | None = None) -> None:
        if case not in (None, "upper", "lower"):
            raise ValueError(f"case {case!r} is not one of None, 'upper', 'lower'")
        self.case = case  # applied to each piece before it is measured, so offsets stay exact
        self._parts: list[str] = []
        self._length = 0
        self.spans: list[dict] = []
        self.traps: list[dict] = []

    def add(self, text: str, label: str | None = None) -> NoteBuilder:
        if self.case == "upper":
            text = text.upper()
        elif self.case == "lower":
            text = text.lower()
        if label is not None and text:
            record = {"start": self._length, "end": self._length + len(text), "label": label}
            (self.traps if label == TRAP else self.spans).append(record)
        self._parts.append(text)
        self._length += len(text)
        return self

    def fill(self, template: str, **values: Value) -> NoteBuilder:
        """`template` with `{field}`s replaced by `values` (no format specs: braces in text are doubled)."""
        for literal, field, _spec, _conv in _FORMATTER.parse(template):
            self.add(literal)
            if field is None:
                continue
            if field not in values:
                raise KeyError(f"template field {field!r} has no value (given: {sorted(values)})")
            value = values[field]
            if isinstance(value, tuple):
                self.add(value[1], value[0])
            else:
                self.add(value)
        return self

    def text(self) -> str:
        return "".join(self._parts)

    def note(self, note_id: str, kind: str) -> dict:
        text = self.text()
        for span in self.spans + self.traps:
            if span["start"] >= span["end"]:
                raise ValueError(f"empty span {span} in note {note_id}")
        return {"id": note_id, "kind": kind, "text": text, "spans": self.spans, "traps": self.traps}


def write_jsonl(notes: Iterable[dict], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for note in notes:
            out.write(json.dumps(note, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
