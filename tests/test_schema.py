from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from clinfm import schema


def test_codes_follow_the_conventions():
    assert schema.make_code("ICD10CM", "E11.9") == "ICD10CM//E11.9"
    assert schema.visit_code("IP", "START") == "VISIT//IP//START"
    assert schema.gender_code("female") == "GENDER//F"
    assert schema.gender_code("M") == "GENDER//M"
    assert schema.gender_code(None) == "GENDER//UNKNOWN"
    assert schema.vocabulary_of("LOINC//2160-0") == "LOINC"
    assert schema.vocabulary_of("MEDS_BIRTH") == "MEDS_BIRTH"


@pytest.mark.parametrize(
    ("code", "parent"),
    [("ICD10CM//E11.65", "ICD10CM//E11.6"), ("ICD10CM//E11.6", "ICD10CM//E11"), ("ICD9CM//250.00", "ICD9CM//250.0"),
     ("ICD10CM//E11", None), ("LOINC//2160-0", None)],
)  # fmt: skip
def test_parent_codes_of_icd(code, parent):
    assert schema.parent_code(code) == parent


def test_bad_codes_are_refused_with_the_value():
    with pytest.raises(ValueError, match="vocabulary='ICD10CM' value=''"):
        schema.make_code("ICD10CM", "")
    with pytest.raises(ValueError, match="'XX'"):
        schema.visit_code("XX", "START")


def test_times_are_stored_as_naive_utc():
    t = dt.datetime(2020, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert schema.to_utc_naive(t) == dt.datetime(2020, 1, 1, 17, 0)


def test_events_table_matches_meds_and_validation_catches_drift():
    table = schema.events_table({"subject_id": [1, 1], "time": [None, dt.datetime(2000, 1, 1)],
                                 "code": ["GENDER//F", "MEDS_BIRTH"]})  # fmt: skip
    schema.validate_events(table)
    assert table.schema == schema.EVENT_SCHEMA
    wrong = table.set_column(0, "subject_id", pa.array([1, 1], pa.int32()))
    with pytest.raises(ValueError, match="schema"):
        schema.validate_events(wrong)
