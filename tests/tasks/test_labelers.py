"""Labelers on hand-built timelines (exact labels) and on Eunomia (counts reported honestly)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from clinfm.tasks.config import CodeNotFoundError, load_task
from clinfm.tasks.labelers import label_dataset
from tests.tasks.synthetic import T0, write_dataset

H, D = dt.timedelta(hours=1), dt.timedelta(days=1)


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    rows = [
        # 1: dies on day 3 of a 5-day stay -> positive for mortality
        (1, None, "GENDER//F"),
        (1, T0 - 60 * 365 * D, "MEDS_BIRTH"),
        (1, T0, "VISIT//IP//START"),
        (1, T0 + 5 * D, "VISIT//IP//END"),
        (1, T0 + 3 * D, "MEDS_DEATH"),
        # 2: 12 h stay -> excluded (min_stay); readmitted 10 days later for 9 days
        (2, None, "GENDER//M"),
        (2, T0, "VISIT//IP//START"),
        (2, T0 + 12 * H, "VISIT//IP//END"),
        (2, T0 + 10 * D, "VISIT//IP//START"),
        (2, T0 + 19 * D, "VISIT//IP//END"),
        # 3: dies 20 h after admission -> excluded (death before the prediction time)
        (3, T0, "VISIT//IP//START"),
        (3, T0 + 20 * H, "MEDS_DEATH"),
        (3, T0 + 2 * D, "VISIT//IP//END"),
        # 4: potassium 4.0 -> 6.1 (next day) -> 4.2 (20 days later, outside 7 d)
        (4, T0, "MIMIC_LAB//50971", 4.0),
        (4, T0 + D, "MIMIC_LAB//50971", 6.1),
        (4, T0 + 21 * D, "MIMIC_LAB//50971", 4.2),
        (4, T0, "VISIT//IP//START"),
        (4, T0 + 3 * D, "VISIT//IP//END"),
        (4, T0 + 200 * D, "ICD10CM//I50.9"),
        (4, T0 + 900 * D, "CPT4//99213"),
    ]
    return write_dataset(tmp_path_factory.mktemp("ward"), rows)


def _labels(task, path):
    r = label_dataset(load_task(task), path)
    return r, {(s, t): v for s, t, v in r.labels.iter_rows()}


def test_mortality_at_24h(ward):
    r, labels = _labels("in_hospital_mortality", ward)
    assert labels == {(1, T0 + D): True, (2, T0 + 10 * D + D): False, (4, T0 + D): False}
    assert (
        r.excluded["stay of 1d or shorter"] == 1 and r.excluded["died at or before the prediction time"] == 1
    )
    assert r.labels.columns == ["subject_id", "prediction_time", "boolean_value"]
    assert r.positives == 1


def test_readmission_and_length_of_stay(ward):
    r, labels = _labels("readmission_30d", ward)
    assert (
        labels[(2, T0 + 12 * H)] is True
        and labels[(2, T0 + 19 * D)] is False
        and labels[(4, T0 + 3 * D)] is False
    )
    assert (1, T0 + 5 * D) not in labels and r.excluded["died in hospital"] == 2
    _, los = _labels("long_length_of_stay", ward)
    assert los[(2, T0 + 11 * D)] is True and los[(4, T0 + D)] is False


def test_new_diagnosis_and_next_lab(ward):
    _, dx = _labels("new_heart_failure", ward)
    assert dx == {(4, T0 + 3 * D): True}  # subject 2 has no follow-up past the year: censored, excluded
    r, k = _labels("hyperkalemia_next", ward)
    assert k == {(4, T0): True}  # the 6.1 result has no next one within 7 days
    assert r.excluded["no next result within the outcome window"] == 2


def test_eunomia_counts_and_absent_outcomes(eunomia_meds):
    with pytest.raises(CodeNotFoundError, match="MEDS_DEATH"):
        label_dataset(load_task("in_hospital_mortality"), eunomia_meds)
    stroke = label_dataset(load_task("new_stroke"), eunomia_meds)
    assert stroke.positives > 50 and stroke.summary()["positives"] == stroke.positives
    assert stroke.labels.filter(pl.col("prediction_time").dt.month() != 1).height == 0
