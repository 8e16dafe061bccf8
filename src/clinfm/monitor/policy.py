"""The monitoring policy: window length and the thresholds that raise alerts, from
the packaged ``monitoring-policy.yaml`` or ``$CLINFM_MONITORING_POLICY`` (pydantic-validated; unknown keys are refused)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clinfm.defaults import resolve
from clinfm.tasks.config import Duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputDrift(_Strict):
    code_psi_max: float = Field(0.2, gt=0)
    lab_psi_max: float = Field(0.2, gt=0)
    unknown_share_increase_max: float = Field(0.05, ge=0, le=1)
    """Share of events with codes the model cannot see, above the training data's share."""
    missingness_increase_max: float = Field(0.2, ge=0, le=1)
    """Share of scored points lacking a key input in their observation window, above the reference's share."""
    min_events: int = Field(200, ge=1)
    min_lab_values: int = Field(50, ge=1)
    min_scored: int = Field(50, ge=1)
    """Fewer scored points in a window: no missingness alert for it."""
    noise_quantile: float = Field(0.99, gt=0, lt=1)
    """PSI thresholds are raised by what sampling noise stays under with this probability (window and
    reference sizes, chi-square), so a 250-event window does not alert on chance alone."""


class PredictionDrift(_Strict):
    score_psi_max: float = Field(0.2, gt=0)
    min_predictions: int = Field(50, ge=1)


class Performance(_Strict):
    min_auroc: float = Field(0.65, ge=0, le=1)
    """Alert when a window's AUROC point estimate is below this."""
    max_abs_calibration_intercept: float = Field(0.5, gt=0)
    """Calibration-in-the-large (logit scale; 0 is ideal)."""
    calibration_slope: tuple[float, float] = (0.5, 2.0)
    """Alert when a window's whole 95% CI of the calibration slope lies outside this range (1 is ideal)."""
    observed_expected: tuple[float, float] = (0.67, 1.5)
    """Observed / expected event rate outside this range alerts."""
    min_labels: int = Field(50, ge=1)
    min_positives: int = Field(10, ge=1)
    n_resamples: int = Field(500, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Performance:
        lo, hi = self.observed_expected
        if not 0 < lo < 1 < hi:
            raise ValueError(f"observed_expected {list(self.observed_expected)} must be [lo < 1, hi > 1]")
        return self


class Reference(_Strict):
    """What input drift is measured against. The profile is built when a model is trained: the events the model
    saw for its validation points (held-out subjects, prediction times in ``validation_window`` before the
    cutoff, each point's observation window), stored in the run folder's ``reference.json``."""

    mode: Literal["validation", "rolling", "seasonal"] = "validation"
    """validation: the stored profile. rolling: the sum of the previous ``rolling_windows`` monitoring windows.
    seasonal: the same calendar window one year earlier (and its neighbours). Both fall back to the stored
    profile until enough windows exist."""
    validation_window: Duration = dt.timedelta(days=3 * 365)
    rolling_windows: int = Field(12, ge=1)
    top_codes: int = Field(20, ge=1)
    lab_codes: int = Field(10, ge=0)
    bins: int = Field(10, ge=2)
    min_lab_values: int = Field(50, ge=1)
    key_inputs: int = Field(5, ge=0)
    """The model's most important codes (LightGBM gain) whose missingness is watched."""


class Incidents(_Strict):
    """Consecutive alerts of one kind (and code) become one incident."""

    merge_gap_windows: int = Field(1, ge=0)
    """Alerts this many quiet windows apart still belong to the same incident."""
    budget_per_year: float = Field(4, gt=0)
    """Incidents per 365 days the policy expects at most; more and the page says the policy is too noisy."""


class Assistant(_Strict):
    """Thresholds for the clinical assistant's audited calls, per monitoring window."""

    max_removed_statement_rate: float = Field(0.15, ge=0, le=1)
    """Share of generated statements the verifier removed."""
    max_abstention_rate: float = Field(0.3, ge=0, le=1)
    max_latency_p95_ms: float = Field(10_000, gt=0)
    max_mean_tokens: float = Field(2_000, gt=0)
    min_mean_rating: float = Field(3.0, ge=1, le=5)
    """Clinician feedback ratings (1-5); alert when a window's mean is below this."""
    min_calls: int = Field(20, ge=1)
    min_ratings: int = Field(10, ge=1)


class MonitoringPolicy(_Strict):
    """The defaults equal the packaged ``monitoring-policy.yaml``."""

    window: Duration = dt.timedelta(days=30)
    """Monitoring windows: performance, drift and alerts are computed per window of prediction times."""
    reference: Reference = Reference()
    input_drift: InputDrift = InputDrift()
    prediction_drift: PredictionDrift = PredictionDrift()
    performance: Performance = Performance()
    incidents: Incidents = Incidents()
    assistant: Assistant = Assistant()
    seed: int = 0


class PolicyError(ValueError):
    """The monitoring policy file is missing or invalid."""


def load_policy(path: str | Path | MonitoringPolicy | None = None) -> MonitoringPolicy:
    """The policy at ``path``, else ``$CLINFM_MONITORING_POLICY``, else the packaged ``monitoring-policy.yaml``."""
    if isinstance(path, MonitoringPolicy):
        return path
    path = resolve("monitoring_policy", path)
    try:
        return MonitoringPolicy.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    except OSError as exc:
        raise PolicyError(f"cannot read monitoring policy {str(path)!r}: {exc}") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise PolicyError(f"invalid monitoring policy {str(path)!r}: {exc}") from exc


__all__ = ["MonitoringPolicy", "PolicyError", "load_policy"]
