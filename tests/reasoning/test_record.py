"""The record as evidence: MEDS codes -> DDXPlus evidences, shown as from the record, never asked, overridable."""

from __future__ import annotations

import datetime as dt

import pytest

from clinfm import schema
from clinfm.reasoning.answer_model import EXACT
from clinfm.reasoning.differential import log_posterior, normalize
from clinfm.reasoning.questions import askable_mask
from clinfm.reasoning.record import load_code_rules, record_findings, summarize_record
from clinfm.reasoning.session import answer, explain, start_session
from clinfm.schema import Event, Subject

NOW = dt.datetime(2024, 5, 1)


def _subject() -> Subject:
    return Subject(7, [
        Event(None, "GENDER//M"),
        Event(dt.datetime(1960, 3, 1), schema.BIRTH),
        Event(dt.datetime(2015, 1, 1), "ICD10CM//J44.1"),  # COPD, the KB's own ICD-10 for its COPD pathology
        Event(dt.datetime(2019, 6, 1), "ICD9CM//4280"),  # heart failure, ICD-9 without its dot
        Event(dt.datetime(2023, 1, 1), "ICD10CM//F17.210"),  # nicotine dependence
        Event(NOW - dt.timedelta(days=90), "ICD10PCS//0DTJ4ZZ"),  # a procedure three months ago: not "last month"
        Event(NOW, "LOINC//2160-0", 1.1),
        Event(NOW + dt.timedelta(days=5), "ICD10CM//J45.909"),  # after the reference time: not evidence
    ])  # fmt: skip


def test_record_codes_map_to_evidences(real_kb):
    found = summarize_record(real_kb, _subject(), as_of=NOW)
    by_id = {a.evidence_id: a for a in found.findings}
    assert set(by_id) == {"E_123", "E_106", "E_79"}  # COPD, heart failure, smoking; no surgery, no asthma
    assert by_id["E_123"].source == "record" and by_id["E_123"].record_codes == ["ICD10CM//J44.1"]
    assert by_id["E_106"].record_codes == ["ICD9CM//4280"] and by_id["E_79"].present
    assert found.sex == "male" and found.age == 64
    recent = record_findings(real_kb, [Event(NOW - dt.timedelta(days=10), "ICD10PCS//0DTJ4ZZ")], as_of=NOW)
    assert [a.evidence_id for a in recent] == ["E_196"]  # surgery within the last month


def test_kb_rows_use_the_knowledge_bases_icd10(real_kb):
    rules = [r for r in load_code_rules(real_kb) if r.evidence_id == "E_124" and "ICD10CM" in r.vocabularies]
    asthma = next(p for p in real_kb.pathologies if p.name == "Bronchospasm / acute asthma exacerbation")
    assert rules[0].prefixes == (asthma.icd10.replace(".", "").upper(),)
    with pytest.raises(ValueError, match="E_999"):
        load_code_rules(real_kb, "evidence_id,system,codes,window_days,note\nE_999,ICD10,J45,,x\n")
    with pytest.raises(ValueError, match="Nonexistent"):
        load_code_rules(real_kb, "evidence_id,system,codes,window_days,note\nE_124,KB,Nonexistent,,x\n")


def test_record_findings_are_not_asked_again_and_can_be_overridden(real_kb):
    found = summarize_record(real_kb, _subject(), as_of=NOW)
    state = start_session(found.age, found.sex, "E_66", real_kb, record=found.findings, model=EXACT, budget=10,
                          confidence_threshold=0.9999)
    record_ids = {"E_123", "E_106", "E_79"}
    assert record_ids <= {a.evidence_id for a in state.answers}
    mask = askable_mask(real_kb, state.answers, state.sex)
    assert not any(mask[real_kb.evidence_index[e]] for e in record_ids)
    asked = []
    while not state.finished:  # a whole interview, answering "no": never a record question
        asked.append(state.next_question.evidence_id)
        state = answer(state, state.next_question.evidence_id, "no", real_kb, model=EXACT)
    assert asked and not record_ids & set(asked)
    assert "From the record: Do you smoke cigarettes? -> yes (from the record)" in explain(state).text
    # the clinician says the patient never smoked: the record finding is replaced, the posterior follows
    over = answer(state, "E_79", "no", real_kb, model=EXACT, source="clinician")
    e79 = [a for a in over.answers if a.evidence_id == "E_79"]
    assert len(e79) == 1 and e79[0].source == "clinician" and not e79[0].present
    without = [a for a in state.answers if a.evidence_id != "E_79"] + e79
    assert over.differential.probability == pytest.approx(
        float(normalize(log_posterior(real_kb, without, "male", EXACT)).max()), abs=1e-5)
    assert over.differential.probability != pytest.approx(state.differential.probability, abs=1e-4)


def test_record_findings_must_be_marked_as_such(real_kb):
    from clinfm.reasoning.differential import parse_answer

    with pytest.raises(ValueError, match="source 'record'"):
        start_session(None, None, None, real_kb, record=[parse_answer(real_kb, "E_79", True)])
