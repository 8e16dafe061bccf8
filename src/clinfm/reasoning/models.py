"""Pydantic answer models of the reasoning package: what a CLI, an API or a language-model tool call gets back.

Every answer carries its result, a probability or severity, its uncertainty, the evidence it rests on, warnings,
an abstention flag with the reason, and the version of the knowledge it was computed from.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

AnswerValue = bool | int | str | list[str]
Sex = Literal["female", "male"]
AnswerSource = Literal["patient", "complaint", "record", "clinician"]


# --- differential diagnosis -------------------------------------------------------------------------------------

class AnsweredEvidence(BaseModel):
    evidence_id: str
    question: str
    value: AnswerValue
    present: bool = Field(description="True when the answer is 'yes' or a non-default categorical value")
    display: str = Field(description="The answer in words")
    unknown: bool = Field(False, description="The patient answered \"don't know\" (``present`` is then False)")
    source: AnswerSource = Field("patient", description=(
        "patient: an interview answer, scored through the answer-noise model; complaint: the chief complaint; "
        "record: read from the patient's record; clinician: entered or overridden by a clinician (the last three "
        "are taken as true)"))
    record_codes: list[str] = Field([], description="For source 'record': the record codes it was read from")


class Finding(BaseModel):
    """One answered evidence and how much it moves a pathology against the rest of the differential."""

    evidence_id: str
    question: str
    answer: str
    log_likelihood_ratio: float = Field(
        description="log P(answer | pathology) - log P(answer | the other pathologies, weighted by their posterior)")


class Candidate(BaseModel):
    rank: int
    pathology: str
    icd10: str
    severity: int = Field(description="DDXPlus severity, 1 (most severe) to 5")
    probability: float
    cant_miss: bool = Field(description="Severity <= 2 and posterior above the can't-miss threshold")
    findings_for: list[Finding] = []
    findings_against: list[Finding] = []


class DifferentialResult(BaseModel):
    candidates: list[Candidate] = Field(description="The top pathologies, then any can't-miss one below them")
    top: Candidate | None = Field(description="The leading pathology; None when the engine abstains")
    probability: float = Field(description="Posterior of the leading pathology")
    entropy_bits: float
    normalized_entropy: float = Field(description="Posterior entropy / log2(number of pathologies): 1 = flat")
    evidence: list[AnsweredEvidence]
    abstained: bool
    abstention_reason: str | None = None
    warnings: list[str] = []
    assumptions: list[str] = []
    kb_version: str


class Question(BaseModel):
    evidence_id: str
    text: str
    data_type: Literal["B", "C", "M"]
    options: list[str]
    is_antecedent: bool
    information_gain_bits: float


class SessionState(BaseModel):
    """A question-and-answer session; round-trips through JSON (``model_dump_json`` / ``model_validate_json``)."""

    kb_version: str
    kb_source: str | None = Field(None, description="Folder the knowledge base was loaded from")
    answer_model: str | None = Field(None, description="Version (hash) of the answer-noise model the session scores with")
    age: int | None
    sex: Sex | None
    answers: list[AnsweredEvidence] = []
    skipped: list[str] = Field([], description="Evidences answered 'don't know' (they are among ``answers``)")
    budget: int | None = Field(None, description="Most questions to ask (None: no limit)")
    confidence_threshold: float = Field(0.9, description="Stop when the calibrated posterior reaches this")
    questions_asked: int = 0
    differential: DifferentialResult
    next_question: Question | None
    finished: bool
    stop_reason: str | None = None


class Explanation(BaseModel):
    text: str
    differential: DifferentialResult


# --- treatment safety -------------------------------------------------------------------------------------------

Severity = Literal["contraindicated", "major", "moderate", "minor", "info"]


class MatchedMedication(BaseModel):
    input: str
    ingredients: list[str]
    rxnorm_codes: list[str]
    drug_classes: list[str]


class AllergyConflict(BaseModel):
    medication: str
    ingredient: str
    allergy: str
    relation: Literal["same ingredient", "same class", "cross-reactive class"]
    severity: Severity
    risk: str = Field(description="How likely a reaction is, in words, with its caveat")
    source: str


class Interaction(BaseModel):
    ingredient_a: str
    ingredient_b: str
    medications: list[str]
    severity: Severity
    effect: str
    management: str
    source: str


class RenalFlag(BaseModel):
    ingredient: str
    medication: str
    egfr: float
    rule: str = Field(description="The eGFR range the rule covers, e.g. '< 30'")
    severity: Severity
    action: str
    source: str


class DuplicateTherapy(BaseModel):
    medications: list[str]
    ingredients: list[str]
    reason: str
    severity: Severity


class RenalFunction(BaseModel):
    egfr: float
    method: str
    creatinine_mg_dl: float | None = None
    stage: str


class TreatmentCheck(BaseModel):
    medications: list[MatchedMedication]
    unmatched: list[str]
    allergies: list[str]
    unmatched_allergies: list[str]
    allergy_conflicts: list[AllergyConflict]
    interactions: list[Interaction]
    renal: RenalFunction | None
    renal_flags: list[RenalFlag]
    duplicates: list[DuplicateTherapy]
    highest_severity: Severity | None
    safe: bool = Field(description="No finding at moderate severity or above, and nothing left unchecked")
    abstained: bool
    abstention_reason: str | None = None
    warnings: list[str] = []
    kb_version: str
