"""De-identification on real clinical text: each miss class found on the PhysioNet nursing notes and in templated
notes, with exact spans; a list of traps that must raise no false alarm; compact dates through surrogates."""

from __future__ import annotations

import pytest

from clinfm.deid.recognizers.labelled_field import field_labels
from clinfm.deid.surrogates import SurrogateGenerator, shift_date
from clinfm.deid.text import NoteDeidentifier


@pytest.fixture(scope="module")
def engine() -> NoteDeidentifier:
    return NoteDeidentifier()


def found(engine: NoteDeidentifier, text: str) -> list[tuple[str, str]]:
    return [(s.label, s.text(text)) for s in engine.detect(text)]


MISS_CLASSES = [
    # month/day without a year, in clinical context
    ("READMITTED TO CCU 9/7 FROM OR", [("DATE", "9/7")]),
    ("ADMITTED TO CCU 8/25 @2330.", [("DATE", "8/25")]),
    ("GI-appetite good LBM 11/4  Activity-OOB", [("DATE", "11/4")]),
    ("echo 8/87 showing EF 20-25%", [("DATE", "8/87")]),
    ("ceftaz rec'd 8/2 - 8/10. currently", [("DATE", "8/2"), ("DATE", "8/10")]),
    ("pt's birthday is tomorrow, may 16, 2015.", [("DATE", "may 16, 2015")]),
    # clinicians, relatives and patients in shorthand, lower case and capitals
    ("plan picc placement (dr vasquez to decide) when inr< 2.0", [("NAME", "vasquez")]),
    ("DR SWACKHAMER AWARE. MG LEVEL 1.6", [("NAME", "SWACKHAMER")]),
    ("pt of dr. john bowman.   allergies", [("NAME", "john bowman")]),
    ("1 dtr laverne does speak some eng", [("NAME", "laverne")]),
    ("communication with husband milovan.", [("NAME", "milovan")]),
    ("mrs. Burns con't to be heavily sedated", [("NAME", "Burns")]),
    ("KEEP ROMERO FAMILY AWARE OF PLAN", [("NAME", "ROMERO")]),
    ("Dr. Rakusin and Toolis aware.", [("NAME", "Rakusin"), ("NAME", "Toolis")]),
    ("Hank Przybylo (son) cell# 450-928-6612", [("NAME", "Hank Przybylo"), ("PHONE", "450-928-6612")]),
    ("lorrie morales is a 70 yr old female", [("NAME", "lorrie morales")]),
    # signatures with credentials
    ("ALL IS WELL AT THIS TIME. Q. LANDER RRT  ", [("NAME", "Q. LANDER")]),
    ("QUIET NIGHT FOR PT.     EARL N. RAND, RRT  ", [("NAME", "EARL N. RAND")]),
    ("later this evening.  V. Finn, RRT  ", [("NAME", "V. Finn")]),
    # headers, banners and signature blocks
    ("Patient: GARCÍA-LÓPEZ, MARÍA J.\n", [("NAME", "GARCÍA-LÓPEZ, MARÍA J.")]),
    ("PATIENT: DE LA CRUZ, ANA\n", [("NAME", "DE LA CRUZ, ANA")]),
    ("Patient: O'NEIL, SEAN P.  MRN: 1234567", [("NAME", "O'NEIL, SEAN P."), ("MRN", "1234567")]),
    ("WHITCOMBE, EVANGELINE R   DOB 02/03/1931", [("NAME", "WHITCOMBE, EVANGELINE R"), ("DATE", "02/03/1931")]),
    ("Attending: Pieter van der Berg, MD", [("NAME", "Pieter van der Berg")]),
    ("Electronically signed: Siobhán Ó Briain, RN", [("NAME", "Siobhán Ó Briain")]),
    # compact dates
    ("DOB: 01MAR1922", [("DATE", "01MAR1922")]),
    ("Specimen collected 02JUL2022 at bedside", [("DATE", "02JUL2022")]),
    # labelled fields: the label stays, the value goes, spaces inside included
    ("Unit No.: 0012 3456 admitted", [("MRN", "0012 3456")]),
    ("Hospital Number: H-2231-889", [("MRN", "H-2231-889")]),
    ("Subscriber ID: XJH 8844 21907", [("HEALTH_PLAN_ID", "XJH 8844 21907")]),
    ("Group Nbr 88123", [("HEALTH_PLAN_ID", "88123")]),
    ("Encounter ID=ENC-99812", [("OTHER_ID", "ENC-99812")]),
    ("SSN (last 4): 6789", [("SSN", "6789")]),
    ("last four of SSN 4421 confirmed", [("SSN", "4421")]),
    # vehicles and biometrics
    ("parked; Massachusetts plate 7KX-P219 noted", [("VEHICLE_ID", "7KX-P219")]),
    ("MA plate ABC 1234 in the lot", [("VEHICLE_ID", "ABC 1234")]),
    ("plate 4TRS882 (NH) towed", [("VEHICLE_ID", "4TRS882")]),
    ("identity confirmed by palm-vein scan, template PV-88213-A.", [("BIOMETRIC_ID", "PV-88213-A")]),
    # web addresses with a scheme or www.
    ("see www.mychart.org/login for results", [("URL", "www.mychart.org/login")]),
    ("go to https://portal.example.com/x.", [("URL", "https://portal.example.com/x")]),
    # the hardening probe's leak classes (issue 18): names in lower case, capitals, diacritics and Chinese
    ("pt john smith seen today for cough, afebrile.", [("NAME", "john smith")]),
    ("PATIENT JOHN SMITH ADMITTED", [("NAME", "JOHN SMITH")]),
    ("smith, john - 67 y/o male, admitted for CHF exacerbation.", [("NAME", "smith, john")]),
    ("Patient Nguyễn Văn Thành presented with chest pain.", [("NAME", "Nguyễn Văn Thành")]),
    ("NGUYỄN VĂN THÀNH, 67M", [("NAME", "NGUYỄN VĂN THÀNH")]),
    ("患者王小明因胸痛入院。 Patient 王小明 admitted with chest pain.", [("NAME", "王小明"), ("NAME", "王小明")]),
    ("王小明先生今日复诊。", [("NAME", "王小明")]),
    # e-mails spelled out, labelled values with a slash-year or digits written apart
    ("Send results to JSMITH AT YAHOO DOT COM please.", [("EMAIL", "JSMITH AT YAHOO DOT COM")]),
    ("email j.smith (at) gmail (dot) com", [("EMAIL", "j.smith (at) gmail (dot) com")]),
    ("Hosp. no. 4455/2021, ward 7B.", [("MRN", "4455/2021")]),
    ("MR# 7 7 8 8 9 9 on the wristband.", [("MRN", "7 7 8 8 9 9")]),
    ("MR# 7 7 8 8 9 9. Seen.", [("MRN", "7 7 8 8 9 9")]),
    ("MRN 12 34 56 verified", [("MRN", "12 34 56")]),
    # ages over 89 and dates written in words, holidays with a year, streets in lower case
    ("Frail lady, age ninety-three, lives alone.", [("AGE_OVER_89", "ninety-three")]),
    ("a ninety-one year old woman", [("AGE_OVER_89", "ninety-one")]),
    ("aged one hundred and two", [("AGE_OVER_89", "one hundred and two")]),
    ("in her nineties", [("AGE_OVER_89", "nineties")]),
    ("Last seen on Christmas Eve 2019 by the GP.", [("DATE", "Christmas Eve 2019")]),
    ("visited over thanksgiving 2020.", [("DATE", "thanksgiving 2020")]),
    ("fell at home on march third, no LOC.", [("DATE", "march third")]),
    ("seen on the third of March by GP", [("DATE", "third of March")]),
    ("March the twenty-first, 2020", [("DATE", "March the twenty-first, 2020")]),
    ("lives at 42 elm street, springfield with her son.", [("ADDRESS", "42 elm street, springfield")]),
]


@pytest.mark.parametrize(("text", "expected"), MISS_CLASSES)
def test_each_miss_class_is_found_with_its_exact_span(engine, text, expected):
    assert found(engine, text) == expected


TRAPS = [
    "BP 132/84 HR 80 SR",
    "2/6 murmur at LSB",
    "pain 7/10 relieved with MSO4",
    "c/o 3-4/10 cpain in am",
    "changed ivf to 1/2 NS at 150cc/hr",
    "PSV increased to 10/5 overnight",
    "on ac 600x12/5/40%. no changes made",
    "strength 5/5 in all extremities",
    "PT TOLERATED WELL TODAY.FI NO NEW ISSUES",
    "OOB TO CHAIR AT BEDSIDE.AM LABS SENT",
    "UO 380CC.NO BM",
    "ACCESS: LEFT RADIAL A-LINE, RIGHT SC",
    "TENDERNESS AND INC LFT'S AND LIPASE, ? GALLSTONE PANCREATITIS",
    "Alert and oriented x3, denies discomfort",
    "SKIN INTACT. DENIES DISCOMFORT.",
    "Foley catheter draining amber urine",
    "Parkinson disease, Babinski sign negative, Crohn disease in remission",
    "Atenolol increased to 50mg. Nystatin to mouth for thrush.",
    "transferred to CCU from the cath lab",
    "SEDATION WEANED AND PT CHANGED FROM AC TO PS",
    "MD'S PREFER TO HAVE PT ON MORE",
    "3 WAY FOLEY IN PLACE & DRAINING",
    "SONS IN VISITING TODAY. THEY WERE UPDATED",
    "foley draining amber urine 100-200cc/hr",
    "Grade 2/4 edema, pulses +2/4",
    # look-alikes of the leak classes above
    "pt tolerating diet",
    "patient states pain is better",
    "pt will follow up",
    "pt rose from bed",
    "Pt Tolerating diet",
    "PT LETHARGIC BUT AROUSABLE",
    "NEURO: PATIENT SEDATED ON PROPOFOL",
    "pain, nausea - started yesterday",
    "Sjögren syndrome and Guillain-Barré syndrome",
    "Ménière disease, café au lait spots",
    "患者因胸痛入院。",
    "seen at the clinic, follow up in a week",
    "Hosp. course uncomplicated",
    "Unit #: 4",
    "Magnesium sulfate March 3 mg dose",
    "age 45, eighty percent",
    "ninety minutes later",
    "Christmas at home with family",
    "the first of all things",
    "second of three doses",
    "picked up at Main Street Pharmacy",
    "walked 2 blocks down the street",
    "2 lines in place. 3 way foley",
]


@pytest.mark.parametrize("text", TRAPS)
def test_trap_raises_no_false_alarm(engine, text):
    assert found(engine, text) == []


def test_compact_date_shifts_and_stays_compact():
    assert shift_date("01MAR1922", 10) == "11MAR1922"
    assert shift_date("02jul2022", -400) == "28may2021"
    assert shift_date("15Mar21", -400) == "09Feb20"  # fixed width kept
    assert shift_date("31DEC1999", 1) == "01JAN2000"


def test_compact_date_surrogate_round_trip_is_consistent_per_subject(engine):
    note = "DOB: 01MAR1922. Seen 02JUL2022 by Dr. Okonkwo; DOB 01MAR1922 confirmed."
    spans = engine.detect(note)
    out = engine.apply(note, spans, "surrogate", subject_key="subject-1", date_shift_days=30)
    assert "01MAR1922" not in out and "02JUL2022" not in out and "Okonkwo" not in out
    assert out.count("31MAR1922") == 2 and "01AUG2022" in out  # same date -> same surrogate, still compact
    again = engine.apply(note, spans, "surrogate", subject_key="subject-1", date_shift_days=30)
    assert again == out  # the same subject gets the same surrogates in every note
    back = engine.detect(out)
    assert [(s.label, s.text(out)) for s in back if s.label == "DATE"] == [
        ("DATE", "31MAR1922"),
        ("DATE", "01AUG2022"),
        ("DATE", "31MAR1922"),
    ]  # the shifted compact dates are still recognised as dates


def test_field_labels_are_data_with_every_label_known():
    labels = field_labels()
    assert len(labels) > 60
    assert {label for label, _, _ in labels} == {"MRN", "HEALTH_PLAN_ID", "ACCOUNT_NUMBER", "OTHER_ID"}


def test_dates_in_words_shift_in_words():
    assert shift_date("march third", 30) == "april second"
    assert shift_date("third of March", 30) == "second of April"
    assert shift_date("THIRD OF MARCH", 30) == "SECOND OF APRIL"
    assert shift_date("March the twenty-first, 2020", 30) == "April the twentieth, 2020"
    assert shift_date("Christmas Eve 2019", 30) is None  # a holiday is redacted, not moved off its day


def test_leak_class_surrogates_hide_every_value_and_stay_consistent_per_subject(engine):
    note = (
        "smith, john - 67 y/o male. pt john smith seen on march third and again on the third of March. "
        "Patient 王小明, age ninety-three, last seen Christmas Eve 2019. Send to JSMITH AT YAHOO DOT COM. "
        "MR# 7 7 8 8 9 9. Hosp. no. 4455/2021. lives at 42 elm street, springfield."
    )
    spans = engine.detect(note)
    out = engine.apply(note, spans, "surrogate", subject_key="subject-1", date_shift_days=30)
    for secret in ("smith", "john", "march third", "王小明", "ninety-three", "2019", "JSMITH", "7 7 8 8 9 9",
                   "4455/2021", "elm street", "springfield"):  # fmt: skip
        assert secret.lower() not in out.lower(), secret
    assert "april second" in out and "second of April" in out and "[DATE]" in out and "age 90+" in out
    surname = SurrogateGenerator("subject-1", 30).surrogate("NAME", "smith")
    assert out.count(surname) == 2  # "smith, john" and "john smith": the same surname both times
    assert engine.apply(note, spans, "surrogate", subject_key="subject-1", date_shift_days=30) == out
