"""Prediction tasks as configuration: task YAML files (packaged in ``clinfm/defaults/tasks``, or the folder
``$CLINFM_TASKS_DIR``) read into strict pydantic models.

Every task names its prediction time, observation window, outcome window and exclusions; nothing about a
task lives in code except how its kind turns events into labels (``labelers.py``).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from clinfm.defaults import resolve

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(s|min|h|d|w|y)\s*$")
_ISO_DURATION = TypeAdapter(dt.timedelta)
_UNIT_SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365.25 * 86400}


def parse_duration(value: object) -> object:
    """``"24h"``, ``"30d"``, ``"-365d"``, ``"1y"`` (365.25 days), an ISO 8601 duration (``"P30D"``, what a
    task written as JSON holds) or a number of seconds -> ``timedelta``."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return dt.timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
        try:
            if value.lstrip("-").startswith("P"):
                return _ISO_DURATION.validate_python(value)
        except ValidationError:
            pass
        raise ValueError(f"duration {value!r} is not '<number><s|min|h|d|w|y>' such as '24h' or '30d'")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    return value


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PredictionTime(_Strict):
    """When a prediction is made.

    * ``admission_start``: ``offset`` after an inpatient admission starts (``VISIT//<type>//START``);
    * ``discharge``: at the end of the stay (``VISIT//<type>//END``) plus ``offset``;
    * ``visit_start``: at the start of every visit of ``visit_types`` (outpatient or inpatient) plus ``offset``;
    * ``index_dates``: on each fixed calendar date in ``index_dates``, for every subject under observation;
    * ``lab_result``: at the time of each result of the task's lab (the prediction is about the next one).
    """

    anchor: Literal["admission_start", "discharge", "visit_start", "index_dates", "lab_result"]
    offset: Duration = dt.timedelta(0)
    visit_types: list[str] = Field(default_factory=lambda: ["IP"])
    index_dates: list[dt.datetime] = Field(default_factory=list)

    @model_validator(mode="after")
    def _dates_for_index_anchor(self) -> PredictionTime:
        if self.anchor == "index_dates" and not self.index_dates:
            raise ValueError("prediction_time.index_dates is empty but anchor is 'index_dates'")
        return self


class Window(_Strict):
    """A window relative to the prediction time: ``start`` and ``end`` offsets (negative = before).

    ``start: null`` opens the window to the whole past (observation windows); ``end: null`` with
    ``until_discharge: true`` closes an outcome window at the end of the stay the prediction is made in.
    Events exactly at ``start`` are outside, events exactly at ``end`` inside: ``(start, end]``.
    """

    start: Duration | None = None
    end: Duration | None = None
    until_discharge: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"window ends before it starts: start={_fmt(self.start)} end={_fmt(self.end)}")
        return self


class Outcome(_Strict):
    """What counts as a positive.

    ``codes`` are globs over whole codes (``ICD10CM//E11*``, ``ICD9CM//250.?[02]``, ``MEDS_DEATH``); for a
    lab task they name the lab and ``above``/``below`` give the abnormal range of its ``numeric_value``;
    for a length-of-stay task ``min_stay`` is the length beyond which a stay is long.
    """

    codes: list[str] = Field(default_factory=list)
    above: float | None = None
    below: float | None = None
    min_stay: Duration | None = None
    unit: str | None = None


class Exclusions(_Strict):
    """Who is left out, and why (each rule is counted in the labeling summary)."""

    min_stay: Duration | None = None
    """Stays that end at or before ``admission + min_stay`` (the patient is gone at prediction time)."""
    death_before_prediction: bool = True
    """Subjects who died at or before the prediction time."""
    in_hospital_death: bool = False
    """Stays that ended in death (readmission: a dead patient cannot be readmitted)."""
    prior_outcome: bool = False
    """Subjects with an outcome code at or before the prediction time (incident-diagnosis tasks)."""
    min_age: float | None = None
    """Age in years at prediction time."""
    require_history: bool = False
    """At least one event in the observation window."""
    require_follow_up: bool = False
    """At least one event after the end of the outcome window, or the outcome itself (no silent censoring)."""


class TaskConfig(_Strict):
    """One prediction task."""

    name: str
    kind: Literal[
        "inpatient_mortality", "readmission", "long_length_of_stay", "new_diagnosis", "abnormal_next_lab"
    ]
    description: str
    prediction_time: PredictionTime
    observation_window: Window = Window(start=None, end=dt.timedelta(0))
    outcome_window: Window
    outcome: Outcome = Outcome()
    exclusions: Exclusions = Exclusions()
    min_positives: int = Field(10, ge=1)
    """Fewer positives (or negatives) than this in the test split and the task stops instead of reporting."""

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        ow = self.observation_window
        if ow.end is not None and ow.end > dt.timedelta(0):
            raise ValueError(
                f"observation_window.end={_fmt(ow.end)} is after the prediction time: it would leak"
            )
        if self.outcome_window.start is not None and self.outcome_window.start < dt.timedelta(0):
            raise ValueError(
                f"outcome_window.start={_fmt(self.outcome_window.start)} is before the prediction time"
            )
        if self.outcome_window.end is None and not self.outcome_window.until_discharge:
            raise ValueError("outcome_window needs an end or until_discharge: true")
        needs_codes = self.kind in ("new_diagnosis", "abnormal_next_lab", "inpatient_mortality")
        if needs_codes and not self.outcome.codes:
            raise ValueError(
                f"outcome.codes is empty but task kind {self.kind!r} needs the codes of its outcome"
            )
        if self.kind == "abnormal_next_lab" and self.outcome.above is None and self.outcome.below is None:
            raise ValueError("outcome.above and outcome.below are both empty: an abnormal lab needs a range")
        if self.kind == "long_length_of_stay" and self.outcome.min_stay is None:
            raise ValueError("outcome.min_stay is empty but task kind 'long_length_of_stay' needs it")
        return self


class TaskConfigError(ValueError):
    """A task file is unreadable or breaks the task contract; the message names the field and the value."""


class CodeNotFoundError(TaskConfigError):
    """A task names codes that never occur in the dataset it is applied to."""


def _fmt(td: dt.timedelta) -> str:
    hours = td.total_seconds() / 3600
    return f"{hours / 24:g}d" if hours % 24 == 0 else f"{hours:g}h"


def load_task(name_or_path: str | Path) -> TaskConfig:
    """Read a task from a YAML path, or by name from :func:`tasks_dir`; errors name the field and value."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = tasks_dir() / f"{name_or_path}.yaml"
    if not path.exists():
        raise TaskConfigError(f"task {str(name_or_path)!r} is neither a YAML file nor one of {available_tasks()}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TaskConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TaskConfigError(f"{path}: expected a mapping of task fields, got {type(raw).__name__}")
    try:
        return TaskConfig.model_validate(raw)
    except ValidationError as exc:
        raise TaskConfigError(f"{path}: {_explain(exc, raw)}") from exc


def _explain(exc: ValidationError, raw: dict) -> str:
    """One line per problem: ``field.path = value: what is wrong``."""
    lines = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(task)"
        msg = "unknown field (not part of the task contract)" if e["type"] == "extra_forbidden" else e["msg"]
        value = e.get("input")
        shown = f" = {value!r}" if e["loc"] and not isinstance(value, dict) else ""
        lines.append(f"{where}{shown}: {msg}")
    return "; ".join(lines)


def tasks_dir() -> Path:
    """Where named tasks live: ``$CLINFM_TASKS_DIR``, else the packaged ``clinfm/defaults/tasks``."""
    return resolve("tasks")


def available_tasks() -> list[str]:
    """The named tasks (``clinfm evaluate DATASET --task NAME`` reads ``tasks_dir()/NAME.yaml``)."""
    return sorted(p.stem for p in tasks_dir().glob("*.yaml"))


def match_codes(patterns: list[str], codes: list[str]) -> list[str]:
    """The codes of ``codes`` that any glob of ``patterns`` matches (case-sensitive)."""
    regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)) if patterns else None
    return [c for c in codes if regex and regex.match(c)]


def check_codes(task: TaskConfig, dataset_codes: list[str], dataset_name: str) -> list[str]:
    """Resolve ``outcome.codes`` against the dataset's codes.

    Code lists are written to travel between sites (ICD-9, ICD-10 and SNOMED side by side), so a pattern
    of a vocabulary the dataset does not hold at all is simply skipped. But when none of a vocabulary's
    patterns occurs although the dataset holds that vocabulary, or nothing matches at all, the task is
    almost certainly mistyped or inapplicable: raise :class:`CodeNotFoundError` naming field and values.
    Returns the matched dataset codes.
    """
    patterns = task.outcome.codes
    matched = match_codes(patterns, dataset_codes)
    vocabularies = {c.split("//", 1)[0] for c in dataset_codes}
    by_vocab: dict[str, list[str]] = {}
    for p in patterns:
        by_vocab.setdefault(p.split("//", 1)[0], []).append(p)
    for vocab, group in by_vocab.items():
        if vocab in vocabularies and not match_codes(group, dataset_codes):
            raise CodeNotFoundError(
                f"task {task.name!r}: outcome.codes {group} never occur in dataset {dataset_name!r} "
                f"(which does hold {vocab} codes)"
            )
    if not matched:
        raise CodeNotFoundError(
            f"task {task.name!r}: none of outcome.codes {patterns} occurs in dataset {dataset_name!r} "
            f"(its vocabularies: {sorted(vocabularies)})"
        )
    return matched
