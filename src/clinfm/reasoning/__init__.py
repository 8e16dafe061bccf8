"""Clinical reasoning: a DDXPlus differential-diagnosis interview and medication safety checks.

The functions below are the package's tools (for the CLI, the API or a language model); each returns a
pydantic model that says what it found, how sure it is, what it rests on and when it abstains.
"""

from __future__ import annotations

from clinfm.reasoning.answer_model import AnswerModel, AnswerProfile, load_answer_model
from clinfm.reasoning.differential import differential, parse_answer
from clinfm.reasoning.knowledge import KnowledgeBase, find_evidences, load_knowledge_base
from clinfm.reasoning.models import DifferentialResult, Explanation, Question, SessionState, TreatmentCheck
from clinfm.reasoning.record import record_findings, summarize_record
from clinfm.reasoning.session import answer, explain, run_terminal, start_session
from clinfm.reasoning.treatment import (
    check_treatment,
    egfr_ckd_epi_2021,
    load_treatment_knowledge,
    match_medication,
    renal_function,
)

__all__ = [
    "AnswerModel", "AnswerProfile", "load_answer_model", "record_findings", "summarize_record",
    "DifferentialResult", "Explanation", "KnowledgeBase", "Question", "SessionState", "TreatmentCheck",
    "answer", "check_treatment", "differential", "egfr_ckd_epi_2021", "explain", "find_evidences",
    "load_knowledge_base", "load_treatment_knowledge", "match_medication", "parse_answer", "renal_function",
    "run_terminal", "start_session",
]

# Patient-record reasoning needs torch and the foundation model: imported on first use, so that the
# differential and treatment tools stay light to import.
_EVIDENCE = ("CitedEvent", "EvidenceItem", "RecordReasoning", "explain_forecast", "explain_subject", "load_model")
__all__ += list(_EVIDENCE)


def __getattr__(name: str):
    if name in _EVIDENCE:
        from clinfm.reasoning import evidence

        return getattr(evidence, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
