"""The hand-written notes on which ``deid-text --mode redact`` leaked identifiers in the hardening probe (issue 18).

The recognizers are the de-identification recall issue's (15); these cases keep what it fixes fixed. Each case is
a note and the identifying substrings that must not survive redaction. Cases that still leak on the code this
file was written against are marked ``xfail(strict=True)``: the day a recognizer catches one, the suite says so and
the mark must go.
"""

from __future__ import annotations

import pytest

RECALL = "recognizer recall: issue 15 (de-identification on real notes) fixes it"
CASES = [
    ("lowercase name after pt", "pt john smith seen today for cough, afebrile.", ["john smith"]),
    ("lowercase dr", "discussed with dr. jones, agrees with plan.", ["jones"]),
    ("lowercase surname, given", "smith, john - 67 y/o male, admitted for CHF exacerbation.", ["smith", "john"]),
    ("Vietnamese name", "Patient Nguyễn Văn Thành presented with chest pain.", ["Nguyễn", "Thành"]),
    ("Chinese characters", "患者王小明因胸痛入院。 Patient 王小明 admitted with chest pain.", ["王小明"]),
    ("0044 phone", "Daughter can be reached on 0044 20 7946 0958 after 5pm.", ["7946 0958"]),
    ("spelled-out email", "Send results to JSMITH AT YAHOO DOT COM please.", ["JSMITH"]),
    ("hospital number with year", "Hosp. no. 4455/2021, ward 7B.", ["4455/2021"]),
    ("spaced MRN", "MR# 7 7 8 8 9 9 on the wristband.", ["7 7 8 8 9 9"]),
    ("alphanumeric MRN", "MRN#:AB12-34-56 verified at bedside.", ["AB12-34-56"]),
    ("age in words", "Frail lady, age ninety-three, lives alone.", ["ninety-three"]),
    ("holiday date", "Last seen on Christmas Eve 2019 by the GP.", ["Christmas Eve 2019"]),
    ("date in words lowercase", "fell at home on march third, no LOC.", ["march third"]),
    ("lowercase street address", "lives at 42 elm street, springfield with her son.", ["42 elm street"]),
]
FAILING_ON_MAIN = {name for name, _, _ in CASES} - {"0044 phone", "lowercase dr", "alphanumeric MRN"}
"""Still leaking after issue 15's first recognizer work was merged (2026-12-08); strict, so a fix must remove its name here."""


@pytest.fixture(scope="module")
def engine():
    from clinfm.deid.text import NoteDeidentifier

    return NoteDeidentifier()


@pytest.mark.parametrize(
    ("note", "secrets"),
    [pytest.param(n, s, id=name, marks=[pytest.mark.xfail(strict=True, reason=RECALL)] if name in FAILING_ON_MAIN else [])
     for name, n, s in CASES],
)  # fmt: skip
def test_redaction_leaves_no_identifier(engine, note, secrets):
    redacted, _ = engine.deidentify(note, mode="redact")
    leaked = [s for s in secrets if s.lower() in redacted.lower()]
    assert not leaked, f"leaked {leaked} in {redacted!r}"
