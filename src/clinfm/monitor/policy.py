"""The monitoring policy: window length and the thresholds that raise alerts, from
the packaged ``monitoring-policy.yaml`` or ``$CLINFM_MONITORING_POLICY`` (pydantic-validated; unknown keys are refused)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

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
    min_events: int = Field(200, ge=1)
    min_lab_values: int = Field(50, ge=1)


class PredictionDrift(_Strict):
    score_psi_max: float = Field(0.2, gt=0)
    min_predictions: int = Field(50, ge=1)


class Performance(_Strict):
    min_auroc: float = Field(0.65, ge=0, le=1)
    """Alert when a window's AUROC point estimate is below this."""
    max_abs_calibration_intercept: float = Field(0.5, gt=0)
    """Calibration-in-the-large (logit scale; 0 is ideal)."""
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
    """How the training-data profile is built (at training or replay time)."""

    top_codes: int = Field(20, ge=1)
    lab_codes: int = Field(10, ge=0)
    bins: int = Field(10, ge=2)
    min_lab_values: int = Field(50, ge=1)


class MonitoringPolicy(_Strict):
    """The defaults equal the packaged ``monitoring-policy.yaml``."""

    window: Duration = dt.timedelta(days=28)
    """Monitoring windows: performance, drift and alerts are computed per window of prediction times."""
    reference: Reference = Reference()
    input_drift: InputDrift = InputDrift()
    prediction_drift: PredictionDrift = PredictionDrift()
    performance: Performance = Performance()
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
