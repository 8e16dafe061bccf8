"""The API's request and response bodies (pydantic), shared by the REST, FHIR, CDS Hooks and web routes.

Numbers and flags are strict (``false`` is not ``0``) but an integral float such as ``337.0`` is accepted as
an integer, as JSON Schema allows (not above 2**53, where the fraction may already be lost); date-times are ISO 8601
strings within :func:`clinfm.serve.inputs.in_range`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    model_validator,
)

from clinfm.serve.inputs import ClinicalDateTime, integral


def Int(ge: int | None = None, le: int | None = None) -> Any:
    return Annotated[int, Strict(), Field(ge=ge, le=le), BeforeValidator(integral)]


SubjectId = Int(ge=0, le=2**63 - 1)
Purpose = Literal["treatment", "operations", "research", "quality", "demo"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- models ----------------------------------------------------------------------------------------------
class ModelSummary(BaseModel):
    version: str
    name: str
    lifecycle_state: str
    produces_cards: bool
    card_url: str
    description: str = ""


class ModelList(BaseModel):
    models: list[ModelSummary]
    default_version: str | None


# --- prediction -------------------------------------------------------------------------------------------
class PredictRequest(Body):
    """One subject at one prediction time: a subject in the store, or an inline FHIR R4 Bundle."""

    subject_id: SubjectId | None = Field(None, description="Pseudonymous subject id in the served dataset.")  # type: ignore[valid-type]
    bundle: dict[str, Any] | None = Field(None, description="A FHIR R4 Bundle holding one Patient and their record.")
    prediction_time: ClinicalDateTime | None = Field(
        None, description="Only events before this time are used; default: just after the last event."
    )
    horizon_days: Int(ge=1, le=3650) | None = None  # type: ignore[valid-type]
    outcomes: list[Annotated[StrictStr, Field(min_length=1, max_length=64)]] | None = Field(
        None, max_length=20, description="Outcome codes or families (MEDS_DEATH, ICD10CM//I50*); default: the model's."
    )
    model_version: Annotated[StrictStr, Field(min_length=1, max_length=100)] | None = None
    purpose: Purpose = "treatment"
    store_bundle: StrictBool = Field(False, description="Keep the de-identified events of an inline Bundle.")

    @model_validator(mode="after")
    def _one_source(self) -> PredictRequest:
        if (self.subject_id is None) == (self.bundle is None):
            raise ValueError("give exactly one of subject_id (a subject in the store) or bundle (an inline FHIR Bundle)")
        return self


class EvidenceItem(BaseModel):
    """An event in the record that moved a prediction, in the de-identified time frame."""

    time: dt.datetime | None
    code: str
    description: str
    kind: str
    effect: float | None = Field(None, description="Change in probability when this group of events is removed.")


class RiskForecast(BaseModel):
    outcome: str
    description: str
    probability: float
    ci_low: float
    ci_high: float
    evidence: list[EvidenceItem] = []


class NextDiagnosis(BaseModel):
    code: str
    description: str
    probability: float
    ci_low: float | None = None
    ci_high: float | None = None
    evidence: list[EvidenceItem] = []


class PredictResponse(BaseModel):
    prediction_id: str
    model_version: str
    lifecycle_state: str
    subject_id: int = Field(description="Pseudonymous subject id.")
    prediction_time: dt.datetime
    horizon_days: int
    n_samples: int
    withheld: bool = Field(False, description="True for a silent model: computed and stored, not shown.")
    risks: list[RiskForecast] = []
    next_diagnoses: list[NextDiagnosis] = []
    warnings: list[str] = []


# --- differential diagnosis -----------------------------------------------------------------------------
AnswerValue = StrictBool | Annotated[StrictStr, Field(max_length=100)] | list[Annotated[StrictStr, Field(max_length=100)]] | Int()


class DdxStart(Body):
    age: Int(ge=0, le=120) | None = None  # type: ignore[valid-type]
    sex: Literal["female", "male"] | None = None
    initial_evidence: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = Field(
        None, description="The chief complaint as a knowledge-base evidence id (answered 'present')"
    )
    answers: dict[Annotated[str, Field(min_length=1, max_length=64)], AnswerValue] = Field(  # type: ignore[valid-type]
        default_factory=dict, max_length=300, description="Answers already known: evidence id -> value"
    )
    budget: Int(ge=1, le=300) | None = Field(None, description="Most questions to ask")  # type: ignore[valid-type]
    subject_id: SubjectId | None = Field(  # type: ignore[valid-type]
        None, description="A subject of the store: antecedents and conditions from its record enter as findings "
                          "'from the record' (never asked; answer the evidence to override), with its sex and age "
                          "when the request leaves them out")


class DdxAnswer(Body):
    evidence: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    value: AnswerValue = Field(  # type: ignore[valid-type]
        description="true/false for a yes-no question, the chosen value for a categorical one, a list for "
                    "multi-choice, or \"don't know\""
    )
    source: Literal["patient", "clinician"] = Field(
        "patient", description="patient: scored through the answer-noise model; clinician: taken as true (an override)")


class DdxState(BaseModel):
    session_id: str
    state: dict[str, Any]


# --- treatment --------------------------------------------------------------------------------------------
class Medication(Body):
    code: Annotated[StrictStr, Field(min_length=1, max_length=100)] | None = Field(None, description="RxNorm//123 or a code")
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None


class TreatmentCheckRequest(Body):
    medications: list[Medication] = Field(min_length=1, max_length=100)
    allergies: list[Annotated[StrictStr, Field(max_length=200)]] = Field(default_factory=list, max_length=100)
    egfr: Annotated[float, Strict(), Field(ge=0, le=300)] | None = None
    creatinine_mg_dl: Annotated[float, Strict(), Field(gt=0, le=30)] | None = None
    subject_id: SubjectId | None = Field(None, description="Read allergies and labs from the store as well.")  # type: ignore[valid-type]


class TreatmentCheckResponse(BaseModel):
    result: dict[str, Any]
