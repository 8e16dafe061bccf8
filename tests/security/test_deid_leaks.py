"""The hand-written notes on which ``deid-text --mode redact`` leaked identifiers in the hardening probe (issue 18).

The recognizers are the de-identification recall issue's (15); these cases keep what it fixes fixed. Each case is
a note and the identifying substrings that must not survive redaction. Every case passes: a case added here that
still leaks must be fixed in the recognizers, not marked as expected to fail.
"""

from __future__ import annotations

import pytest

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
    # the same classes in other shapes
    ("name in capitals after patient", "PATIENT JOHN SMITH ADMITTED FROM ED", ["JOHN", "SMITH"]),
    ("Chinese name before a cue", "王小明先生今日复诊。", ["王小明"]),
    ("Vietnamese name in capitals", "NGUYỄN VĂN THÀNH, 67M, DOB on file", ["NGUYỄN", "THÀNH"]),
    ("e-mail spelled out in lower case", "mail her at j.smith (at) gmail (dot) com", ["j.smith", "gmail"]),
    ("spaced MRN closing a sentence", "MRN 12 34 56. Seen in clinic.", ["12 34 56", "56"]),
    ("age in words with a unit", "a ninety-one year old woman", ["ninety-one"]),
    ("day of the month in words", "seen on the third of March by the GP", ["third of March"]),
    ("holiday with a year", "visited over thanksgiving 2020", ["thanksgiving 2020"]),
]


@pytest.fixture(scope="module")
def engine():
    from clinfm.deid.text import NoteDeidentifier

    return NoteDeidentifier()


@pytest.mark.parametrize(("note", "secrets"), [pytest.param(n, s, id=name) for name, n, s in CASES])
def test_redaction_leaves_no_identifier(engine, note, secrets):
    redacted, _ = engine.deidentify(note, mode="redact")
    leaked = [s for s in secrets if s.lower() in redacted.lower()]
    assert not leaked, f"leaked {leaked} in {redacted!r}"
