"""Reasoning behind serving's seams: differential-diagnosis sessions (``reasoning.session``) and medication
safety checks (``reasoning.treatment``). Their answers are the reasoning package's pydantic models, passed on.
"""

from __future__ import annotations

from typing import Any

from clinfm.reasoning import session
from clinfm.reasoning.knowledge import KnowledgeBase, load_knowledge_base
from clinfm.reasoning.models import AnswerSource, AnswerValue, SessionState, TreatmentCheck
from clinfm.reasoning.record import summarize_record
from clinfm.reasoning.treatment import check_treatment
from clinfm.schema import Subject
from clinfm.serve.backends import Unavailable
from clinfm.serve.problems import Problem


class SessionDdx:
    """``reasoning.session`` over one loaded knowledge base; bad answers are 422 problems naming the evidence."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb

    def start(self, age: int | None, sex: str | None, initial_evidence: str | None, answers: dict[str, AnswerValue],
              budget: int | None, subject: Subject | None = None) -> SessionState:  # fmt: skip
        """With a subject, its record findings enter as answers "from the record", its sex and age fill gaps."""
        try:
            findings = None
            if subject is not None:
                found = summarize_record(self.kb, subject)
                findings, sex = found.findings, sex or found.sex
                age = age if age is not None else found.age
            state = session.start_session(age, sex, initial_evidence, self.kb, budget=budget, record=findings)
            for evidence_id, value in answers.items():
                state = session.answer(state, evidence_id, value, self.kb)
        except (KeyError, ValueError) as exc:
            raise Problem(422, _safe(exc), slug="invalid-answer") from None
        return state

    def answer(self, state: SessionState, evidence_id: str, value: AnswerValue,
               source: AnswerSource = "patient") -> SessionState:  # fmt: skip
        try:
            return session.answer(state, evidence_id, value, self.kb, source=source)
        except (KeyError, ValueError) as exc:
            raise Problem(422, _safe(exc), slug="invalid-answer") from None

    def dump(self, state: SessionState) -> dict[str, Any]:
        return state.model_dump(mode="json", exclude={"kb_source"})  # a server folder is nobody's business

    def explain(self, state: SessionState) -> str:
        return session.explain(state).text

    def question_text(self, evidence_id: str) -> str:
        return self.kb.evidence(evidence_id).question


def _safe(exc: Exception) -> str:
    """Reasoning errors name evidence ids and allowed values (knowledge-base terms), never patient data."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text[:300]


def ddx() -> SessionDdx | Unavailable:
    """The interview engine, or :class:`Unavailable` when ``$CLINFM_DDXPLUS_DIR`` names a folder that cannot be read."""
    try:
        kb = load_knowledge_base()
    except (FileNotFoundError, OSError, ValueError) as exc:
        return Unavailable("differential diagnosis", f"the DDXPlus knowledge base could not be read ({type(exc).__name__})")
    return SessionDdx(kb)


EGFR_CODES = ("LOINC//33914-3", "LOINC//62238-1", "LOINC//98979-8", "LOINC//48642-3", "LOINC//48643-1")
CREATININE_CODES = ("LOINC//2160-0", "LOINC//38483-4")


class TreatmentChecks:
    """``reasoning.treatment.check_treatment`` on codes without their ``RxNorm//`` prefix; with a subject of the
    store, its allergies, latest eGFR (or creatinine, age and sex) fill what the request left out."""

    def check(self, medications: list[str], allergies: list[str], egfr: float | None, creatinine_mg_dl: float | None,
              subject: Subject | None) -> TreatmentCheck:  # fmt: skip
        meds = [_bare(m) for m in medications]
        allergies = [_bare(a) for a in allergies]
        age = sex = None
        if subject is not None:
            found = _from_record(subject)
            allergies += [a for a in found["allergies"] if a not in allergies]
            egfr = egfr if egfr is not None else found["egfr"]
            creatinine_mg_dl = creatinine_mg_dl if creatinine_mg_dl is not None else found["creatinine"]
            age, sex = found["age"], found["sex"]
        try:
            return check_treatment(meds, allergies, egfr=egfr, creatinine=creatinine_mg_dl, age=age, sex=sex)
        except ValueError as exc:
            raise Problem(422, _safe(exc), slug="invalid-medication-list") from None


def _bare(code: str) -> str:
    return code.split("//", 1)[1] if code.startswith(("RxNorm//", "ALLERGY//RxNorm//")) and "//" in code else code


def _from_record(subject: Subject) -> dict[str, Any]:
    """Allergies (``ALLERGY//RxNorm//…``), latest eGFR / creatinine, age at the last event and sex."""
    timed = [e for e in subject.events if e.time is not None]
    latest: dict[str, float] = {}
    for e in timed:
        if e.numeric_value is not None and e.code in EGFR_CODES + CREATININE_CODES:
            latest["egfr" if e.code in EGFR_CODES else "creatinine"] = float(e.numeric_value)
    allergies = [e.code.removeprefix("ALLERGY//RxNorm//") for e in timed if e.code.startswith("ALLERGY//RxNorm//")]
    birth, last = subject.birth, (timed[-1].time if timed else None)
    age = (last - birth).days / 365.25 if birth and last else None
    sex = {"GENDER//F": "female", "GENDER//M": "male"}.get(next((c for c in subject.static_codes if c.startswith("GENDER//")), ""))
    return {"allergies": allergies, "egfr": latest.get("egfr"), "creatinine": latest.get("creatinine"), "age": age, "sex": sex}
