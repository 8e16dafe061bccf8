"""Clinical-note de-identification: each recognizer on positive and negative examples, the allow-list, the three
modes, surrogate consistency, date shifting, chunk borders, and recall/precision on the fixture notes."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from clinfm.deid.surrogates import SurrogateGenerator, shift_date
from clinfm.deid.text import LABELS, NoteDeidentifier, Span, resolve_overlaps

NOTES = Path(__file__).resolve().parents[1] / "fixtures" / "notes" / "clinical_notes.jsonl"


@pytest.fixture(scope="session")
def engine() -> NoteDeidentifier:
    return NoteDeidentifier()


def found(engine: NoteDeidentifier, text: str) -> set[tuple[str, str]]:
    return {(s.label, s.text(text)) for s in engine.detect(text)}


POSITIVES = [
    ("MRN: 00123456 on file.", "MRN", "00123456"),
    ("Med Rec # 7730021 verified.", "MRN", "7730021"),
    ("medical record number 55102934", "MRN", "55102934"),
    ("Acct # 40029118745", "ACCOUNT_NUMBER", "40029118745"),
    ("account no. 770012845 billed", "ACCOUNT_NUMBER", "770012845"),
    ("Member ID: XJH884421907", "HEALTH_PLAN_ID", "XJH884421907"),
    ("policy # W2284419035", "HEALTH_PLAN_ID", "W2284419035"),
    ("Medicare MBI 1EG4-TE5-MK73 on card", "HEALTH_PLAN_ID", "1EG4-TE5-MK73"),
    ("Vaccine Lot# ABC123 given", "DEVICE_ID", "ABC123"),
    ("ICD serial number PJN7719345", "DEVICE_ID", "PJN7719345"),
    (
        "UDI (01)00884521062047(17)250101(10)AB1234 logged",
        "DEVICE_ID",
        "(01)00884521062047(17)250101(10)AB1234",
    ),
    ("Prescriber DEA AB1234563.", "LICENSE_NUMBER", "AB1234563"),
    ("signed, BD5623411", "LICENSE_NUMBER", "BD5623411"),  # DEA checksum holds without a cue
    ("NPI 1487392015", "LICENSE_NUMBER", "1487392015"),
    ("ordering provider 1487392015 notified", "LICENSE_NUMBER", "1487392015"),  # NPI check digit holds
    ("state medical license # MD-44812", "LICENSE_NUMBER", "MD-44812"),
    ("VIN 1FTFW1ET5DFC10312", "VEHICLE_ID", "1FTFW1ET5DFC10312"),
    ("car 1HGCM82633A004352 towed", "VEHICLE_ID", "1HGCM82633A004352"),  # VIN check digit holds
    ("license plate 7KXP219", "VEHICLE_ID", "7KXP219"),
    ("92 y/o F with CHF", "AGE_OVER_89", "92"),
    ("age 94, lives alone", "AGE_OVER_89", "94"),
    ("a 95-year-old man", "AGE_OVER_89", "95"),
    ("aged 101 and independent", "AGE_OVER_89", "101"),
    ("96F found on floor", "AGE_OVER_89", "96"),
    ("Lives at 123 Main St with wife.", "ADDRESS", "123 Main St"),
    (
        "Moved to 77 Elm Street, Apt 4B, Lowell, MA 01852 last year",
        "ADDRESS",
        "77 Elm Street, Apt 4B, Lowell, MA 01852",
    ),
    ("Visiting from Portland, ME 04101 for the summer.", "ADDRESS", "Portland, ME 04101"),
    ("zip code 02139", "ADDRESS", "02139"),
    ("Seen by Dr. Page today.", "NAME", "Page"),
    ("Discussed with Dr Smith", "NAME", "Smith"),
    ("pt's daughter mary called", "NAME", "mary"),
    ("wife Susan at bedside", "NAME", "Susan"),
    ("son John brought meds", "NAME", "John"),
    ("Electronically signed by: Jane Roe, MD", "NAME", "Jane Roe"),
    ("cc: Alan Kim", "NAME", "Alan Kim"),
    ("Attending: Priya Raman", "NAME", "Priya Raman"),
    ("Dictated by Gregory Mills", "NAME", "Gregory Mills"),
    ("Follow up on 3/14 in clinic", "DATE", "3/14"),
    ("DOB 03/14/21", "DATE", "03/14/21"),
    ("Surgery 14-Mar-2021.", "DATE", "14-Mar-2021"),
    ("CT on 2021-03-14 showed", "DATE", "2021-03-14"),
    ("Seen Mar 14th for rash", "DATE", "Mar 14th"),
    ("admitted March 14, 2021 with", "DATE", "March 14, 2021"),
    ("Call 617-555-1234 with results", "PHONE", "617-555-1234"),
    ("Clinic (617) 555-0142", "PHONE", "(617) 555-0142"),
    ("F: 617-555-9999", "FAX", "617-555-9999"),
    ("fax 617.555.0101", "FAX", "617.555.0101"),
    ("email jroe@mercy.example.org today", "EMAIL", "jroe@mercy.example.org"),
    ("SSN 531-22-0198", "SSN", "531-22-0198"),
    ("see https://portal.example.org/pt/88213 for photos", "URL", "https://portal.example.org/pt/88213"),
    ("login from 203.0.113.47 flagged", "IP_ADDRESS", "203.0.113.47"),
    ("fingerprint ID FP-88213-7734 enrolled", "BIOMETRIC_ID", "FP-88213-7734"),
    ("Accession #: CT-2023-0088152", "OTHER_ID", "CT-2023-0088152"),
    ("Specimen ID: S22-004871", "OTHER_ID", "S22-004871"),
]


@pytest.mark.parametrize(
    ("text", "label", "value"), POSITIVES, ids=[f"{p[1]}-{i}" for i, p in enumerate(POSITIVES)]
)
def test_recognizer_positive(engine, text, label, value):
    assert (label, value) in found(engine, text)


NEGATIVES = [
    ("85 yo M with HTN", "AGE_OVER_89"),
    ("Na 136, K 5.9, Cr 1.4, glucose 182", None),
    ("BP 120/80, HR 72, RR 16, SpO2 96% RA", None),
    ("metformin 500 mg bid, lisinopril 10 mg daily", None),
    ("Room 12, bed 2", None),
    ("Strength 5/5 in all extremities, pain 3/10, take 1/2 tab", None),
    ("Symptoms for 3 days, started 2 weeks ago, worse at 10:00", None),
    ("History of MI in 2009.", None),
    ("Moved here from Ohio.", None),
    ("Plan: continue metformin. Group B strep negative.", None),
    ("lot of pain", None),
    ("daughter brought the medication list", None),
    ("T 99.1 F, 100 mg given", None),
    ("specimen 1487392016 received", "LICENSE_NUMBER"),  # ten digits, NPI check digit fails
]


@pytest.mark.parametrize(("text", "label"), NEGATIVES)
def test_recognizer_negative(engine, text, label):
    spans = engine.detect(text)
    if label is None:
        assert spans == [], [(s.label, s.text(text)) for s in spans]
    else:
        assert label not in {s.label for s in spans}


ALLOWED = [
    "Parkinson disease", "Foley catheter", "Apgar 8/9", "Glasgow Coma Scale 14", "Cushing syndrome",
    "Babinski downgoing", "Hodgkin lymphoma", "Crohn disease", "Alzheimer disease", "Down syndrome", "Bell palsy",
    "Graves disease", "Hashimoto thyroiditis", "Addison disease", "Wilson disease", "Kawasaki disease",
    "Guillain-Barré syndrome", "Tylenol 650 mg", "Lasix 40 mg IV", "Zofran 4 mg", "Eliquis 5 mg bid",
]  # fmt: skip


def test_allow_list_terms_survive(engine):
    text = "Hx: " + ". ".join(ALLOWED) + "."
    spans = engine.detect(text)
    assert spans == [], [(s.label, s.text(text)) for s in spans]


def test_pattern_beats_allow_list_for_a_real_name(engine):
    text = "Seen by Dr. Wilson for Wilson disease."
    assert found(engine, text) == {("NAME", "Wilson")}
    assert engine.deidentify(text)[0] == "Seen by Dr. [NAME] for Wilson disease."


NOTE = "Pt seen by Dr. Page on 03/14/2021. Wife Susan called 617-555-1234. Dr. Page will call Susan back. MRN: 00123456."


def test_span_is_frozen_and_holds_no_text(engine):
    span = engine.detect(NOTE)[0]
    assert set(span.to_dict()) == {"start", "end", "label", "score", "recognizer"}
    with pytest.raises(AttributeError):
        span.start = 0  # type: ignore[misc]


def test_spans_are_sorted_and_disjoint(engine):
    spans = engine.detect(NOTE)
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
    assert {s.label for s in spans} <= set(LABELS)


def test_redact_mode(engine):
    text, spans = engine.deidentify(NOTE, mode="redact")
    assert text == (
        "Pt seen by Dr. [NAME] on [DATE]. Wife [NAME] called [PHONE]. Dr. [NAME] will call [NAME] back. MRN: [MRN]."
    )
    assert len(spans) == 7


def test_tag_mode_numbers_consistently(engine):
    text, _ = engine.deidentify(NOTE, mode="tag")
    assert text == (
        "Pt seen by Dr. [NAME:1] on [DATE:1]. Wife [NAME:2] called [PHONE:1]. Dr. [NAME:1] will call [NAME:2] back. "
        "MRN: [MRN:1]."
    )


def test_surrogate_mode_replaces_every_value(engine):
    text, _ = engine.deidentify(NOTE, mode="surrogate", subject_key="subject-1", date_shift_days=49)
    for original in ("Page", "Susan", "617-555-1234", "00123456", "03/14/2021"):
        assert original not in text
    assert "05/02/2021" in text
    assert "[" not in text


def test_surrogates_consistent_within_subject_across_notes(engine):
    a, _ = engine.deidentify("Wife Susan Miller at bedside.", mode="surrogate", subject_key="s-1")
    b, _ = engine.deidentify("Called wife Susan Miller re: plan.", mode="surrogate", subject_key="s-1")
    fake_a = a.removeprefix("Wife ").removesuffix(" at bedside.")
    fake_b = b.removeprefix("Called wife ").removesuffix(" re: plan.")
    assert fake_a == fake_b != "Susan Miller"
    others = {engine.deidentify("Wife Susan Miller at bedside.", mode="surrogate", subject_key=f"s-{i}")[0]
              for i in range(2, 8)}  # fmt: skip
    assert len(others) >= 5  # different subjects generally get different fakes


def test_surrogate_shapes():
    gen = SurrogateGenerator("s-1")
    assert gen.surrogate("AGE_OVER_89", "92") == "90+"
    mrn = gen.surrogate("MRN", "MR-0012345")
    assert mrn != "MR-0012345" and len(mrn) == 10 and mrn[2] == "-" and mrn[3:].isdigit()
    assert gen.surrogate("MRN", "MR-0012345") == mrn
    phone = gen.surrogate("PHONE", "(617) 555-1234")
    assert phone[0] == "(" and phone[4:6] == ") " and phone[9] == "-"
    assert SurrogateGenerator("s-1", 5).surrogate("DATE", "sometime soon") == "[DATE]"


@pytest.mark.parametrize(
    ("original", "days", "expected"),
    [
        ("03/14/2021", 49, "05/02/2021"),
        ("March 14, 2021", 49, "May 2, 2021"),
        ("3/14/21", 1, "3/15/21"),
        ("2021-03-14", -14, "2021-02-28"),
        ("14-Mar-2021", 30, "13-Apr-2021"),
        ("Mar 14th", 19, "Apr 2nd"),
        ("12/31/2020", 1, "01/01/2021"),
        ("MARCH 2021", 31, "APRIL 2021"),
        ("Monday, October 16, 2023", 1, "Tuesday, October 17, 2023"),
        ("2/30/2021", 1, None),
    ],
)
def test_date_shift_keeps_format(original, days, expected):
    assert shift_date(original, days) == expected


def test_chunk_border_neither_loses_nor_duplicates():
    small = NoteDeidentifier(max_chunk_chars=400, chunk_overlap=120)
    filler = "Pt resting comfortably, vitals stable, no acute events overnight. "
    text = filler * 5
    border = 400 - 120  # the first cut falls near here
    text = (
        text[: border - 8]
        + " Wife Susan Miller called. "
        + text[border - 8 :]
        + "MRN: 00123456. "
        + filler * 8
    )
    spans = small.detect(text)
    names = [s.text(text) for s in spans if s.label == "NAME"]
    assert names == ["Susan Miller"]
    assert [s.text(text) for s in spans if s.label == "MRN"] == ["00123456"]
    whole = NoteDeidentifier.__new__(NoteDeidentifier)  # same analyzer, one chunk
    whole.__dict__ = {**small.__dict__, "max_chunk_chars": 100_000, "chunk_overlap": 2_000}
    assert [(s.start, s.end, s.label) for s in whole.detect(text)] == [
        (s.start, s.end, s.label) for s in spans
    ]


def test_long_note_in_chunks(engine):
    block = "Day {i}: Wife Susan called 617-555-1234. K 4.1, BP 120/80. Pt comfortable, ambulating with PT.\n"
    text = "".join(block.format(i=i) for i in range(1100))  # ~105 KB: two chunks
    spans = engine.detect(text)
    counts = Counter(s.label for s in spans)
    assert counts["NAME"] == 1100 and counts["PHONE"] == 1100


def test_resolve_overlaps_prefers_score_then_length():
    text = "x" * 40
    spans = [
        Span(0, 10, "NAME", 0.85, "a"),
        Span(5, 20, "ADDRESS", 0.9, "b"),
        Span(18, 30, "ADDRESS", 0.8, "c"),
    ]
    out = resolve_overlaps(spans, text)
    assert [(s.start, s.end, s.label) for s in out] == [(0, 5, "NAME"), (5, 30, "ADDRESS")]


def test_deidentify_many_matches_single(engine):
    texts = [NOTE, "", "Nothing here but K 5.9."]
    many = engine.deidentify_many(texts, mode="tag")
    assert many == [engine.deidentify(t, mode="tag") for t in texts]
    assert many[1] == ("", [])


def test_unknown_mode_is_refused(engine):
    with pytest.raises(ValueError, match="mode 'mask'"):
        engine.deidentify(NOTE, mode="mask")  # type: ignore[arg-type]


def test_no_note_text_in_logs(engine, caplog):
    caplog.set_level("DEBUG", logger="clinfm")
    engine.deidentify(NOTE, mode="redact")
    assert "Susan" not in caplog.text and "617-555" not in caplog.text


def _char_scores(engine: NoteDeidentifier):
    rows = [json.loads(line) for line in NOTES.read_text(encoding="utf-8").splitlines()]
    predictions = engine.detect_many([r["text"] for r in rows])
    gold_chars, hit_chars = Counter(), Counter()
    predicted = true_predicted = 0
    for row, spans in zip(rows, predictions):
        text = row["text"]
        covered = {i for s in spans for i in range(s.start, s.end)}
        gold = {
            i: g["label"] for g in row["spans"] for i in range(g["start"], g["end"]) if not text[i].isspace()
        }
        for i, label in gold.items():
            gold_chars[label] += 1
            hit_chars[label] += i in covered
        for i in covered:
            if not text[i].isspace():
                predicted += 1
                true_predicted += i in gold
    return rows, gold_chars, hit_chars, true_predicted / predicted


def test_fixture_notes_cover_every_label():
    rows = [json.loads(line) for line in NOTES.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 30
    assert {s["label"] for r in rows for s in r["spans"]} == set(LABELS)
    for row in rows:  # gold offsets point at the values, not at whitespace
        for s in row["spans"]:
            value = row["text"][s["start"] : s["end"]]
            assert value and value == value.strip()


def test_recall_and_precision_on_clinical_notes(engine):
    _, gold, hit, precision = _char_scores(engine)
    recall = {label: hit[label] / gold[label] for label in gold}
    assert min(recall.values()) >= 0.97, recall
    assert sum(hit.values()) / sum(gold.values()) >= 0.99
    assert precision >= 0.85


def test_surrogate_without_a_date_shift_never_keeps_a_real_date(engine):
    text, spans = engine.deidentify("Seen on 03/14/2021 by Dr. Page.", mode="surrogate", date_shift_days=0)
    assert "03/14/2021" not in text and "[DATE]" in text and "Page" not in text
