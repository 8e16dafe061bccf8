"""Identifiers after a field label: "<label>: value", "<label> No.: value", "<label> # value", whatever the value's
shape, spaces inside included ("Unit No.: 0012 3456"). The labels are data (`field_labels.txt`), not one regex a
label; the label itself stays in the note."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

_NUMBER_WORD = r"(?:number|numb|num\.?|nbr\.?|no\.?|#|id|i\.d\.|identifier|code|ref(?:erence)?)"
# A value: starts alphanumeric, holds a digit; groups after a space count only while they hold a digit too.
# Or digits written in groups of one to four with single spaces ("7 7 8 8 9 9", "12 34 56"); a slash joins a
# number and its year ("4455/2021") in the first shape.
_VALUE = (
    r"(?P<phi>\d{1,4}(?: \d{1,4}){2,}(?![A-Za-z0-9@/]|\.\d)"
    r"|(?=[A-Za-z0-9-]*\d|[A-Za-z0-9-]+ [A-Za-z0-9-]*\d)[A-Za-z0-9](?:[A-Za-z0-9./-]*[A-Za-z0-9])?"
    r"(?: (?=[A-Za-z0-9-]*\d)[A-Za-z0-9][A-Za-z0-9-]{1,}[A-Za-z0-9])*)(?![A-Za-z0-9@/])"
)


@lru_cache(maxsize=1)
def field_labels() -> tuple[tuple[str, str, bool], ...]:
    """(Safe Harbor label, label words, whether the words name an identifier on their own) from the data file."""
    raw = resources.files("clinfm.deid").joinpath("field_labels.txt").read_text(encoding="utf-8")
    rows = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip():
            raise ValueError(f"field_labels.txt line {number}: {line!r} is not '<LABEL><TAB><label words>'")
        words = parts[1].strip()
        rows.append((parts[0].strip(), words.rstrip("*"), words.endswith("*")))
    return tuple(rows)


def _alternation(phrases: list[str]) -> str:
    escaped = sorted({re.escape(p).replace(r"\ ", r"\s+") for p in phrases}, key=len, reverse=True)
    return "(?:" + "|".join(escaped) + ")"


def _patterns() -> tuple[GroupPattern, ...]:
    by_label: dict[str, tuple[list[str], list[str]]] = {}
    for label, words, own in field_labels():
        by_label.setdefault(label, ([], []))[1 if own else 0].append(words)
    patterns = []
    for label, (plain, own) in by_label.items():
        heads = []
        if plain:  # "Unit No.:", "Policy #", "Subscriber ID:", "Record Number ="
            heads.append(rf"{_alternation(plain)}(?![A-Za-z])\.?[ \t]*{_NUMBER_WORD}(?:[ \t]*{_NUMBER_WORD})?[ \t]*[:=#]?")
        if own:  # "MRN 001234", "HRN: 55-1023"
            heads.append(rf"{_alternation(own)}(?![A-Za-z])(?:[ \t]*{_NUMBER_WORD})?[ \t]*[:=#]?")
        rx = rf"(?i:(?<![A-Za-z0-9])(?:{'|'.join(heads)}))[ \t]*(?:(?i:is)[ \t]+)?{_VALUE}"
        patterns.append(GroupPattern(f"field_{label.lower()}", rx, 0.85, label))
    return tuple(patterns)


class LabelledFieldRecognizer(GroupPatternRecognizer):
    """A value after a label from the field-label vocabulary; two digits at least, so "Unit #: 4" stays."""

    CONTEXT = ("number", "id", "no")
    PATTERNS = _patterns()

    def validate(self, value: str, pattern: GroupPattern) -> bool:
        if re.fullmatch(r"\d{1,3}-\d{1,3}", value):
            return False  # "34-40" is a range of readings
        return sum(ch.isdigit() for ch in value) >= 3 and not re.fullmatch(r"(?:19|20)\d\d", value)
