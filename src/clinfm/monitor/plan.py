"""The predetermined change control plan: which changes to a deployed model are allowed (retraining on newer data,
recalibration), how they are made, and the bounds a candidate must meet against the incumbent, read from
the packaged ``change-plan.yaml`` or ``$CLINFM_CHANGE_PLAN`` (pydantic-validated; unknown keys are refused)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clinfm.defaults import resolve
from clinfm.tasks.config import Duration

Change = Literal["retrain", "recalibrate"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataWindows(_Strict):
    """Relative to the cutoff (the change's "now"; default: the latest outcome known in the dataset)."""

    train_window: Duration = dt.timedelta(days=365)
    """Retraining uses train/tuning subjects' labels with prediction times in [cutoff - train_window, cutoff)."""
    recalibration_window: Duration = dt.timedelta(days=180)
    """Recalibration fits on tuning subjects' labels with prediction times in this window before the cutoff."""
    evaluation_window: Duration = dt.timedelta(days=365)
    """Candidate and incumbent are compared on held-out subjects' labels in this window before the cutoff."""


class Bounds(_Strict):
    """What a candidate must meet on the held-out comparison (paired bootstrap, subjects resampled)."""

    max_auroc_drop: float = Field(0.02, ge=0, le=1)
    """The lower 95% bound of AUROC(candidate) - AUROC(incumbent) must be at least -max_auroc_drop."""
    max_calibration_error: float = Field(0.05, ge=0, le=1)
    """The candidate's expected calibration error (10 bins), point estimate."""
    max_abs_calibration_intercept: float | None = Field(0.3, gt=0)
    min_evaluation_labels: int = Field(100, ge=1)
    min_evaluation_positives: int = Field(20, ge=1)
    n_resamples: int = Field(1000, ge=100)
    seed: int = 0


class Governance(_Strict):
    report_kind: str = "change_comparison"
    model_name: str | None = None
    """The registered name of an accepted candidate (default: the incumbent's name, as its next version)."""
    try_validated_gate: bool = True
    """After registering an accepted candidate in draft, ask for the ``validated`` gate (never further)."""


class ChangePlan(_Strict):
    name: str
    description: str = ""
    allowed_changes: list[Change] = Field(min_length=1)
    method: Change
    recalibration: Literal["platt", "isotonic"] = "platt"
    data: DataWindows = DataWindows()
    bounds: Bounds = Bounds()
    governance: Governance = Governance()

    @model_validator(mode="after")
    def _method_allowed(self) -> ChangePlan:
        if self.method not in self.allowed_changes:
            raise ValueError(f"method {self.method!r} is not among allowed_changes {self.allowed_changes}")
        return self


class PlanError(ValueError):
    """The change plan is missing or invalid."""


def load_plan(path: str | Path | ChangePlan | None = None) -> ChangePlan:
    if isinstance(path, ChangePlan):
        return path
    """The plan at ``path``, else ``$CLINFM_CHANGE_PLAN``, else the packaged ``change-plan.yaml``."""
    path = resolve("change_plan", path)
    try:
        return ChangePlan.model_validate(yaml.safe_load(path.read_text()) or {})
    except OSError as exc:
        raise PlanError(f"cannot read change plan {str(path)!r}: {exc}") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise PlanError(f"invalid change plan {str(path)!r}: {exc}") from exc


__all__ = ["ChangePlan", "PlanError", "load_plan"]
