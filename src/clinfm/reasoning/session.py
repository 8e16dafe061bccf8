"""An interview: start a session, answer questions, read the differential and its explanation.

Sessions are plain pydantic state (JSON round-trip) so an API can keep them between requests; every function
returns a new state. Findings read from the patient's record (``record.record_findings``) enter as answers with
source "record": shown as from the record, never asked, and replaced by any answer given later for the same
evidence (a clinician's override). ``run_terminal`` drives a whole interview through injected ``ask``/``show``
callbacks so the core never touches the terminal.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from clinfm.reasoning.answer_model import AnswerModel, calibrated, load_answer_model, mixture_log_posterior
from clinfm.reasoning.differential import DONT_KNOW, differential, joint_log_posterior, normalize, parse_answer
from clinfm.reasoning.knowledge import KnowledgeBase, find_evidences, load_knowledge_base
from clinfm.reasoning.models import (
    AnsweredEvidence,
    AnswerSource,
    AnswerValue,
    DifferentialResult,
    Explanation,
    SessionState,
)
from clinfm.reasoning.questions import askable_mask, next_question, stop_reason


def start_session(age: int | None = None, sex: str | None = None, initial_evidence: str | None = None,
                  kb: KnowledgeBase | None = None, *, budget: int | None = None,
                  confidence_threshold: float | None = None, record: list[AnsweredEvidence] | None = None,
                  model: AnswerModel | None = None) -> SessionState:
    """Open an interview for a patient; ``initial_evidence`` is the chief complaint (an evidence id, present).

    ``record`` holds findings read from the patient's record; ``confidence_threshold`` defaults to the answer
    model's calibrated stopping threshold.
    """
    kb = kb or load_knowledge_base()
    model = model or load_answer_model()
    if age is not None and not 0 <= age <= 120:
        raise ValueError(f"age {age!r} must lie in 0..120 years")
    if sex is not None and sex not in ("female", "male"):
        raise ValueError(f"sex {sex!r} must be 'female' or 'male' (or None when unknown)")
    answers = list(record or [])
    bad = [a.evidence_id for a in answers if a.source != "record"]
    if bad:
        raise ValueError(f"record findings {bad} must have source 'record'")
    if initial_evidence:
        complaint = parse_answer(kb, initial_evidence, _present_value(kb, initial_evidence), source="complaint")
        answers = [a for a in answers if a.evidence_id != complaint.evidence_id] + [complaint]
    state = SessionState.model_construct(
        kb_version=kb.version, kb_source=kb.source, answer_model=model.version, age=age, sex=sex, answers=answers,
        skipped=[], budget=budget, questions_asked=0,
        confidence_threshold=model.threshold if confidence_threshold is None else confidence_threshold)
    return _refresh(state, kb, model)


def answer(state: SessionState, evidence_id: str, value: AnswerValue, kb: KnowledgeBase | None = None, *,
           source: AnswerSource = "patient", model: AnswerModel | None = None) -> SessionState:
    """Record an answer (yes/no, a value code or meaning, a list for multi-choice, or "don't know") and
    recompute the differential. An earlier answer to the same evidence, one from the record included, is
    replaced: ``source="clinician"`` marks an override the engine then takes as true."""
    kb = _kb_for(state, kb)
    model = _model_for(state, model)
    new = parse_answer(kb, evidence_id, value, source=source)
    counted = state.questions_asked + (state.next_question is not None and new.evidence_id == state.next_question.evidence_id)
    answers = [a for a in state.answers if a.evidence_id != new.evidence_id] + [new]
    parent = kb.evidence(new.evidence_id).parent
    if new.present and parent and parent not in {a.evidence_id for a in answers if a.present}:
        answers = [a for a in answers if a.evidence_id != parent]
        answers.insert(0, parse_answer(kb, parent, True, source=source))  # a described pain implies pain
    return _refresh(state.model_copy(update={"answers": answers, "questions_asked": counted}), kb, model)


def current_differential(state: SessionState) -> DifferentialResult:
    return state.differential


def explain(state: SessionState) -> Explanation:
    """The differential in words: leading pathologies, the findings for and against each, can't-miss flags."""
    dx = state.differential
    from_record = [a for a in state.answers if a.source == "record"]
    lines = [(f"Findings: {len(dx.evidence) - len(state.skipped)} answered, {len(state.skipped)} unknown, "
              f"{len(from_record)} from the record; posterior entropy {dx.normalized_entropy:.0%} of maximum.")]
    lines += [f"From the record: {a.question} -> {a.display} (codes {', '.join(a.record_codes)})" for a in from_record]
    if dx.abstained:
        lines.append(f"No diagnosis proposed: {dx.abstention_reason}.")
    sources = {a.evidence_id: a.source for a in state.answers}
    for c in dx.candidates:
        flag = " [CAN'T MISS]" if c.cant_miss else ""
        lines.append(f"{c.rank}. {c.pathology} ({c.icd10}, severity {c.severity}){flag}: {c.probability:.1%}")
        for sign, found in (("+", c.findings_for), ("-", c.findings_against)):
            lines += [f"   {sign} {f.question} -> {f.answer}{' (from the record)' if sources.get(f.evidence_id) == 'record' else ''}"
                      f" (LLR {f.log_likelihood_ratio:+.2f})" for f in found]
    if state.stop_reason:
        lines.append(f"Stopped: {state.stop_reason}.")
    lines += [f"Warning: {w}" for w in dx.warnings]
    lines += [f"Assumption: {a}" for a in dx.assumptions]
    return Explanation(text="\n".join(lines), differential=dx)


def run_terminal(ask: Callable[[str, list[str]], str], show: Callable[[BaseModel], None],
                 kb: KnowledgeBase | None = None, *, budget: int | None = None,
                 confidence_threshold: float | None = None, record: list[AnsweredEvidence] | None = None,
                 sex: str | None = None, age: int | None = None, model: AnswerModel | None = None) -> SessionState:
    """A whole interview: ``ask(prompt, options) -> reply`` collects input, ``show(model)`` displays a result.

    Asks age and sex (unless given, e.g. from the record) and the chief complaint (words matched against the
    question texts), shows the findings from the record, then the engine's questions until it is confident or
    the budget is spent; shows the differential after each answer and the explanation at the end.
    """
    kb = kb or load_knowledge_base()
    if age is None:
        age_text = ask("Age in years (blank if unknown)", [])
        age = int(age_text) if age_text.strip().isdigit() else None
    if sex is None:
        sex_text = ask("Sex", ["female", "male", "unknown"])
        sex = sex_text if sex_text in ("female", "male") else None
    complaint = _ask_complaint(ask, kb)
    state = start_session(age, sex, complaint, kb, budget=budget, confidence_threshold=confidence_threshold,
                          record=record, model=model)
    if record:
        show(state.differential)
    while not state.finished and state.next_question is not None:
        q = state.next_question
        reply = ask(q.text, q.options)
        try:
            state = answer(state, q.evidence_id, reply if reply in q.options else DONT_KNOW, kb, model=model)
        except ValueError:
            state = answer(state, q.evidence_id, DONT_KNOW, kb, model=model)
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


def _model_for(state: SessionState, model: AnswerModel | None) -> AnswerModel:
    model = model or load_answer_model()
    if state.answer_model and model.version != state.answer_model:
        raise ValueError(f"session was built with answer model {state.answer_model}, not {model.version} "
                         f"({model.source}); pass the model it was started with")
    return model


def _present_value(kb: KnowledgeBase, evidence_id: str) -> AnswerValue:
    ev = kb.evidence(evidence_id)
    if ev.is_binary:
        return True
    raise ValueError(f"initial evidence {evidence_id} must be a yes/no symptom, not a {ev.data_type} question")


def _refresh(state: SessionState, kb: KnowledgeBase, model: AnswerModel) -> SessionState:
    dx = differential(state.answers, state.sex, kb, model=model)
    joint = joint_log_posterior(kb, state.answers, state.sex, model)
    flat = normalize(joint.ravel()).reshape(joint.shape)  # (K, D) joint posterior over profile and pathology
    post = calibrated(mixture_log_posterior(joint), model)
    askable = askable_mask(kb, state.answers, state.sex)
    reason = stop_reason(post, state.questions_asked, state.budget, askable, state.confidence_threshold)
    question = None if reason else next_question(kb, flat, askable, model)
    if reason is None and question is None:
        reason = "no remaining question can change the differential"
    data = {**dict(state), "differential": dx, "next_question": question, "finished": reason is not None,
            "stop_reason": reason, "skipped": [a.evidence_id for a in state.answers if a.unknown]}
    return SessionState.model_validate(data)

