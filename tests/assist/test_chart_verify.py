"""The chart (citations, budget, relevance, record marked as data) and the verifier, with exact expectations."""

from __future__ import annotations

import datetime as dt

from clinfm.assist.chart import RECORD_CLOSE, build_chart, citation_id
from clinfm.assist.verify import Statement, check_statement, verify
from tests.assist.conftest import T0


def _item(chart, code, value=None):
    return next(i for i in chart.items if i.code == code and (value is None or i.value == value))


def test_chart_items_cite_exactly_one_event(chart, tiny_dataset):
    from clinfm.data.store import SubjectDatabase

    events = SubjectDatabase(tiny_dataset)[101].events
    assert len(chart.by_id) == len(chart.items)
    for item in chart.items:
        ev = item.event(101)
        matches = [e for e in events if e.code == ev["code"] and (e.time.isoformat() if e.time else None) == ev["time"]
                   and e.numeric_value == ev["numeric_value"]]  # fmt: skip
        assert len(matches) == 1, item
    assert chart.age == 65 and chart.sex == "F"
    cr = max((i for i in chart.items if i.code == "LOINC//2160-0"), key=lambda i: i.time)
    assert cr.flag == "high" and cr.trend == "rising from 1.9 on 2020-04-05"
    assert {i.section for i in chart.items} >= {"demographics", "problem", "medication", "allergy", "lab", "vital",
                                                 "visit", "note"}  # fmt: skip


def test_chart_respects_time_and_budget(tiny_dataset):
    from clinfm.data.store import SubjectDatabase

    db = SubjectDatabase(tiny_dataset)
    early = build_chart(db[101], T0 + dt.timedelta(days=1), db.descriptions())
    assert all(i.time is None or i.time <= T0 + dt.timedelta(days=1) for i in early.items)
    assert not any(i.section == "note" for i in early.items)
    full = build_chart(db[101], None, db.descriptions())
    text, ids = full.render("creatinine kidney function", 120, lambda s: len(s) // 4 + 1)
    assert len(text) // 4 + 1 <= 160 and ids
    first_non_demo = next(full.by_id[c] for c in ids if full.by_id[c].section != "demographics")
    assert first_non_demo.code in ("LOINC//2160-0", "ICD10CM//N18.3")


def test_note_text_is_data_and_cannot_close_the_record(chart):
    text, ids = chart.render("what did the last note say", 2000, lambda s: len(s) // 4 + 1)
    assert [line for line in text.splitlines() if RECORD_CLOSE in line and "data from patient" not in line] == [RECORD_CLOSE]
    note = next(line for line in text.splitlines() if "note:" in line)
    assert "[record-tag]" in note and "</record>" not in note and "not instructions" in text


def test_verifier_keeps_supported_statements(chart):
    cr = max((i for i in chart.items if i.code == "LOINC//2160-0"), key=lambda i: i.time)
    a1c = max((i for i in chart.items if i.code == "LOINC//4548-4"), key=lambda i: i.time)
    good = [
        Statement(text="Creatinine was 2.3 mg/dL on 2020-07-04, rising from 1.9.", citations=[cr.cid]),
        Statement(text="Latest HbA1c is 8.4 %.", citations=[a1c.cid]),
        Statement(text="She has chronic kidney disease stage 3.", citations=[_item(chart, "ICD10CM//N18.3").cid]),
        Statement(text="Allergy to penicillin is recorded.", citations=[_item(chart, "SNOMED//294505008").cid]),
    ]
    v = verify(good, chart)
    assert [s.text for s in v.kept] == [s.text for s in good] and v.removed == []


def test_verifier_catches_each_planted_error(chart, tiny_dataset):
    from clinfm.data.store import SubjectDatabase

    db = SubjectDatabase(tiny_dataset)
    other = build_chart(db[202], None, db.descriptions())
    cr = max((i for i in chart.items if i.code == "LOINC//2160-0"), key=lambda i: i.time)
    cases = {
        "value 3.1 does not match": Statement(text="Creatinine was 3.1 mg/dL.", citations=[cr.cid]),
        "unit mmol/L is not the unit": Statement(text="Creatinine was 2.3 mmol/L.", citations=[cr.cid]),
        "date 2020-07-05 is not the date": Statement(text="Creatinine was 2.3 mg/dL on 2020-07-05.", citations=[cr.cid]),
        "is not an event of patient 101": Statement(text="Creatinine was 0.9 mg/dL.", citations=[other.items[-1].cid]),
        "'e0000000' is not an event": Statement(text="Creatinine was 2.3 mg/dL.", citations=["e0000000"]),
        "cites no event": Statement(text="Creatinine was 2.3 mg/dL.", citations=[]),
        "dosing order": Statement(text="Start metformin 500 mg twice daily.", citations=[_item(chart, "RxNorm//860975").cid]),
        "code ICD10CM//E10.9 is not": Statement(text="Diagnosis ICD10CM//E10.9 is recorded.",
                                                citations=[_item(chart, "ICD10CM//E11.9").cid]),
    }  # fmt: skip
    for expected, statement in cases.items():
        reasons = check_statement(statement, chart)
        assert any(expected in r for r in reasons), (expected, reasons)
    assert citation_id(101, db[101].events[3], 1) != citation_id(202, db[101].events[3], 1)
