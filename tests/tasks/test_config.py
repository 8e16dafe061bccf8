"""Task configs: every shipped task loads; bad fields, bad windows and absent codes are named."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from clinfm.tasks.config import (
    CodeNotFoundError,
    TaskConfigError,
    available_tasks,
    check_codes,
    load_task,
    match_codes,
    tasks_dir,
)


def test_shipped_tasks_load_and_document_their_windows():
    names = available_tasks()
    assert {
        "in_hospital_mortality",
        "readmission_30d",
        "long_length_of_stay",
        "new_type2_diabetes",
        "new_heart_failure",
        "new_chronic_kidney_disease",
        "hyperkalemia_next",
    } <= set(names)
    for name in names:
        task = load_task(name)
        assert task.description and task.prediction_time.anchor
        assert task.observation_window.end == dt.timedelta(0)
    mort = load_task("in_hospital_mortality")
    assert mort.prediction_time.offset == dt.timedelta(hours=24) and mort.exclusions.min_stay == dt.timedelta(
        hours=24
    )
    assert load_task("readmission_30d").outcome_window.end == dt.timedelta(days=30)


def test_a_task_written_as_json_reads_back_unchanged(tmp_path):
    """pydantic writes durations as ISO 8601 ("P30D"); a task saved with a model must load again as it was."""
    from clinfm.tasks.config import TaskConfig

    for name in available_tasks():
        task = load_task(name)
        assert TaskConfig.model_validate_json(task.model_dump_json()) == task, name
    path = _write(tmp_path, outcome_window={"start": "PT0S", "end": "P30DT12H"})
    assert load_task(path).outcome_window.end == dt.timedelta(days=30, hours=12)


def _write(tmp_path, **changes):
    raw = yaml.safe_load((tasks_dir() / "readmission_30d.yaml").read_text())
    for key, value in changes.items():
        raw[key] = value
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_field_is_named(tmp_path):
    with pytest.raises(TaskConfigError, match=r"lookahead.*unknown field"):
        load_task(_write(tmp_path, lookahead="3d"))
    with pytest.raises(TaskConfigError, match=r"exclusions\.min_staay"):
        load_task(_write(tmp_path, exclusions={"min_staay": "24h"}))


def test_window_that_ends_before_it_starts_is_named(tmp_path):
    with pytest.raises(TaskConfigError, match=r"outcome_window.*ends before it starts: start=30d end=1d"):
        load_task(_write(tmp_path, outcome_window={"start": "30d", "end": "1d"}))
    with pytest.raises(TaskConfigError, match=r"duration '30 days'"):
        load_task(_write(tmp_path, outcome_window={"start": "0h", "end": "30 days"}))


def test_code_absent_from_the_dataset_is_named():
    task = load_task("new_type2_diabetes")
    codes = ["SNOMED//1234", "ICD10CM//E11.9", "ICD10CM//I10"]
    with pytest.raises(CodeNotFoundError, match=r"outcome.codes \['SNOMED//44054006'\] never occur"):
        check_codes(task, codes, "ds")
    assert check_codes(task, ["ICD10CM//E11.9", "ICD9CM//250.02", "ICD9CM//250.01"], "ds") == [
        "ICD10CM//E11.9",
        "ICD9CM//250.02",
    ]  # 250.x1 is type 1
    with pytest.raises(CodeNotFoundError, match="none of outcome.codes"):
        check_codes(task, ["RxNorm//1"], "ds")
    assert match_codes(["ICD9CM//250.?[02]"], ["ICD9CM//250.12", "ICD9CM//250.13", "ICD9CM//250.2"]) == [
        "ICD9CM//250.12"
    ]
