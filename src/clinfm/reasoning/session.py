"""An interview: start a session, answer questions, read the differential and its explanation.

Sessions are plain pydantic state (JSON round-trip) so an API can keep them between requests; every function
returns a new state. ``run_terminal`` drives a whole interview through injected ``ask``/``show`` callbacks so the
core never touches the terminal.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from clinfm.reasoning.differential import differential, log_posterior, normalize, parse_answer
from clinfm.reasoning.knowledge import KnowledgeBase, find_evidences, load_knowledge_base
from clinfm.reasoning.models import AnswerValue, DifferentialResult, Explanation, SessionState
from clinfm.reasoning.questions import CONFIDENCE_THRESHOLD, askable_mask, next_question, stop_reason

DONT_KNOW = "don't know"


def start_session(age: int | None = None, sex: str | None = None, initial_evidence: str | None = None,
                  kb: KnowledgeBase | None = None, *, budget: int | None = None,
                  confidence_threshold: float = CONFIDENCE_THRESHOLD) -> SessionState:
    """Open an interview for a patient; ``initial_evidence`` is the chief complaint (an evidence id, present)."""
    kb = kb or load_knowledge_base()
    if age is not None and not 0 <= age <= 120:
        raise ValueError(f"age {age!r} must lie in 0..120 years")
    if sex is not None and sex not in ("female", "male"):
        raise ValueError(f"sex {sex!r} must be 'female' or 'male' (or None when unknown)")
    answers = [parse_answer(kb, initial_evidence, _present_value(kb, initial_evidence))] if initial_evidence else []
    state = SessionState.model_construct(kb_version=kb.version, kb_source=kb.source, age=age, sex=sex,
                                         answers=answers, skipped=[], budget=budget,
                                         confidence_threshold=confidence_threshold, questions_asked=0)
    return _refresh(state, kb)


def answer(state: SessionState, evidence_id: str, value: AnswerValue, kb: KnowledgeBase | None = None) -> SessionState:
    """Record an answer (yes/no, a value code, or "don't know") and recompute the differential."""
    kb = _kb_for(state, kb)
    counted = state.questions_asked + (state.next_question is not None and evidence_id == state.next_question.evidence_id)
    if isinstance(value, str) and value.strip().lower() == DONT_KNOW:
        update = {"skipped": [*state.skipped, evidence_id], "questions_asked": counted}
        kb.evidence(evidence_id)  # validates the id
        return _refresh(state.model_copy(update=update), kb)
    new = parse_answer(kb, evidence_id, value)
    answers = [a for a in state.answers if a.evidence_id != evidence_id] + [new]
    parent = kb.evidence(evidence_id).parent
    if new.present and parent and parent not in {a.evidence_id for a in answers}:
        answers.insert(0, parse_answer(kb, parent, True))  # a described pain implies pain
    update = {"answers": answers, "questions_asked": counted,
              "skipped": [s for s in state.skipped if s != evidence_id]}
    return _refresh(state.model_copy(update=update), kb)


def current_differential(state: SessionState) -> DifferentialResult:
    return state.differential


def explain(state: SessionState) -> Explanation:
    """The differential in words: leading pathologies, the findings for and against each, can't-miss flags."""
    dx = state.differential
    lines = [(f"Findings: {len(dx.evidence)} answered, {len(state.skipped)} unknown; "
              f"posterior entropy {dx.normalized_entropy:.0%} of maximum.")]
    if dx.abstained:
        lines.append(f"No diagnosis proposed: {dx.abstention_reason}.")
    for c in dx.candidates:
        flag = " [CAN'T MISS]" if c.cant_miss else ""
        lines.append(f"{c.rank}. {c.pathology} ({c.icd10}, severity {c.severity}){flag}: {c.probability:.1%}")
        lines += [f"   + {f.question} -> {f.answer} (LLR {f.log_likelihood_ratio:+.2f})" for f in c.findings_for]
        lines += [f"   - {f.question} -> {f.answer} (LLR {f.log_likelihood_ratio:+.2f})" for f in c.findings_against]
    if state.stop_reason:
        lines.append(f"Stopped: {state.stop_reason}.")
    lines += [f"Warning: {w}" for w in dx.warnings]
    lines += [f"Assumption: {a}" for a in dx.assumptions]
    return Explanation(text="\n".join(lines), differential=dx)


def run_terminal(ask: Callable[[str, list[str]], str], show: Callable[[BaseModel], None],
                 kb: KnowledgeBase | None = None, *, budget: int | None = None,
                 confidence_threshold: float = CONFIDENCE_THRESHOLD) -> SessionState:
    """A whole interview: ``ask(prompt, options) -> reply`` collects input, ``show(model)`` displays a result.

    Asks age, sex and the chief complaint (words matched against the question texts), then the engine's
    questions until it is confident or the budget is spent; shows the differential after each answer and the
    explanation at the end.
    """
    kb = kb or load_knowledge_base()
    age_text = ask("Age in years (blank if unknown)", [])
    sex_text = ask("Sex", ["female", "male", "unknown"])
    complaint = _ask_complaint(ask, kb)
    state = start_session(int(age_text) if age_text.strip().isdigit() else None,
                          sex_text if sex_text in ("female", "male") else None, complaint, kb,
                          budget=budget, confidence_threshold=confidence_threshold)
    while not state.finished and state.next_question is not None:
        q = state.next_question
        reply = ask(q.text, q.options)
        state = answer(state, q.evidence_id, reply if reply in q.options else DONT_KNOW, kb)
        show(state.differential)
    show(explain(state))
    return state


def _ask_complaint(ask: Callable[[str, list[str]], str], kb: KnowledgeBase) -> str | None:
    while True:
        words = ask("Main reason for consulting, in a few words (blank to skip)", [])
        if not words.strip():
            return None
        hits = [(eid, text) for eid, text in find_evidences(words, kb)
                if kb.evidence(eid).is_binary and not kb.evidence(eid).is_antecedent]
        if hits:
            choice = ask("Which is closest?", [text for _, text in hits] + ["none of these"])
            chosen = [eid for eid, text in hits if text == choice]
            if chosen:
                return chosen[0]


# --- internals --------------------------------------------------------------------------------------------------

def _kb_for(state: SessionState, kb: KnowledgeBase | None) -> KnowledgeBase:
    kb = kb or load_knowledge_base(state.kb_source)
    if kb.version != state.kb_version:
        raise ValueError(f"session was built on knowledge base {state.kb_version}, not {kb.version}")
    return kb


def _present_value(kb: KnowledgeBase, evidence_id: str) -> AnswerValue:
    ev = kb.evidence(evidence_id)
    if ev.is_binary:
        return True
    raise ValueError(f"initial evidence {evidence_id} must be a yes/no symptom, not a {ev.data_type} question")


def _refresh(state: SessionState, kb: KnowledgeBase) -> SessionState:
    dx = differential(state.answers, state.sex, kb)
    post = normalize(log_posterior(kb, state.answers, state.sex))
    askable = askable_mask(kb, {a.evidence_id for a in state.answers} | set(state.skipped), state.sex)
    reason = stop_reason(post, state.questions_asked, state.budget, askable, state.confidence_threshold)
    question = None if reason else next_question(kb, post, askable)
    if reason is None and question is None:
        reason = "no remaining question can change the differential"
    data = {**dict(state), "differential": dx, "next_question": question, "finished": reason is not None,
            "stop_reason": reason}
    return SessionState.model_validate(data)
