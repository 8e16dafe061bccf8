"""The seams between serving and the core packages: what serving needs from governance, the model and
reasoning, as small protocols, with adapters over the real packages (``govern_adapters``, ``model_adapter``).

A piece that is not configured (no dataset, no secret, no checkpoint, an unreadable knowledge base) is an
:class:`Unavailable` object that answers 503 with the reason, so the API stays up, says what is missing, and
never invents a key, a model state or a number.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from clinfm.reasoning.models import AnswerSource, AnswerValue, SessionState, TreatmentCheck
from clinfm.schema import Subject
from clinfm.serve.problems import Problem
from clinfm.serve.security import Principal

CARD_STATES = frozenset({"pilot", "general"})
"""Lifecycle states whose predictions reach clinicians (CDS cards, web risk panel, API results)."""
SERVING_STATES = frozenset({"silent", "pilot", "general"})
"""States that run on live requests; ``silent`` computes and stores but shows nothing."""


class AuthError(Exception):
    """A key that is unknown, expired or revoked. ``reason`` is safe to show (it names no key material)."""

    def __init__(self, reason: Literal["unknown", "expired", "revoked"]) -> None:
        super().__init__(reason)
        self.reason = reason


# --- governance ------------------------------------------------------------------------------------------
class AccessBackend(Protocol):
    def authenticate(self, api_key: str) -> Principal:
        """The key's principal; raises :class:`AuthError` for an unknown, expired or revoked key."""

    def may_use_subject(self, principal: Principal, subject_id: int) -> bool:
        """Consent (per-subject opt-out) for inference on a subject of the principal's organization."""

    def scope_allows(self, granted: frozenset[str], needed: str) -> bool:
        """Whether the granted SMART scopes cover ``needed``."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """A registered model version and where it stands."""

    version: str
    name: str
    state: str
    run_dir: str | None = None
    description: str = ""

    @property
    def produces_cards(self) -> bool:
        return self.state in CARD_STATES

    @property
    def serves(self) -> bool:
        return self.state in SERVING_STATES


class RegistryBackend(Protocol):
    def deployments(self, org: str) -> list[Deployment]:
        """The organization's registered model versions (another tenant's are invisible)."""

    def card(self, org: str, version: str, fmt: Literal["json", "html", "markdown"]) -> Any:
        """The generated model card; raises ``KeyError`` for a version the organization does not have."""


class AuditBackend(Protocol):
    async def record_prediction(
        self, *, actor: str, org: str, model_version: str, subject: str, purpose: str, detail: dict[str, Any]
    ) -> None:
        """Append one prediction-access entry (never PHI: pseudonymous subject only)."""


# --- the model -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ForecastQuery:
    subject: Subject  # de-identified: pseudonymous id, shifted times
    prediction_time: dt.datetime
    horizon_days: int
    outcomes: tuple[str, ...] | None
    n_samples: int
    seed: int


@dataclass(slots=True)
class Attribution:
    time: dt.datetime | None
    code: str
    description: str
    effect: float | None = None


@dataclass(slots=True)
class Estimate:
    name: str  # outcome or diagnosis code
    description: str
    probability: float
    ci_low: float | None
    ci_high: float | None
    evidence: list[Attribution] = field(default_factory=list)


@dataclass(slots=True)
class Forecast:
    risks: list[Estimate]
    next_diagnoses: list[Estimate]
    n_samples: int
    warnings: list[str] = field(default_factory=list)


class Forecaster(Protocol):
    version: str

    def forecast_batch(self, queries: list[ForecastQuery]) -> list[Forecast]:
        """One forecast per query; called from one worker thread with batches of concurrent requests."""


class ForecasterLoader(Protocol):
    def __call__(self, deployment: Deployment) -> Forecaster: ...


# --- reasoning -------------------------------------------------------------------------------------------
class DdxBackend(Protocol):
    def start(self, age: int | None, sex: str | None, initial_evidence: str | None, answers: dict[str, AnswerValue],
              budget: int | None, subject: Subject | None = None) -> SessionState:  # fmt: skip
        """A new interview, with the chief complaint, the answers already known and the record's findings applied."""

    def answer(self, state: SessionState, evidence_id: str, value: AnswerValue,
               source: AnswerSource = "patient") -> SessionState:  # fmt: skip
        """The session after one more answer (``source="clinician"``: taken as true, an override); a bad
        evidence id or value is a 422 problem."""

    def dump(self, state: SessionState) -> dict[str, Any]: ...


class TreatmentBackend(Protocol):
    def check(
        self, medications: list[str], allergies: list[str], egfr: float | None, creatinine_mg_dl: float | None,
        subject: Subject | None,
    ) -> TreatmentCheck: ...


# --- placeholders for what is not there ------------------------------------------------------------------
@dataclass
class Unavailable:
    """Stands in for a missing piece: every call answers 503 naming what is missing."""

    what: str
    reason: str

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise Problem(503, f"{self.what} is not available: {self.reason}", slug="unavailable")

    authenticate = may_use_subject = scope_allows = card = record_prediction = _refuse
    start = answer = dump = check = forecast_batch = _refuse

    def deployments(self, org: str) -> list[Deployment]:
        return []

    @property
    def available(self) -> bool:
        return False
