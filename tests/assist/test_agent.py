"""The agent loop, tools, faults and governance with a scripted model: tool calls, budgets, malformed output,
abstention, prompt injection, PHI egress, silent mode and the audit entry."""

from __future__ import annotations

import json

import pytest

from clinfm.assist import AskOptions, ToolRegistry, ask
from clinfm.assist.backends import ToolCall
from clinfm.assist.service import Assistant, EgressRefused, NotServing
from clinfm.assist.settings import AssistSettings
from tests.assist.conftest import ScriptedModel, call


def latest(chart, code):
    return max((i for i in chart.items if i.code == code), key=lambda i: i.time)


def test_answer_with_a_tool_call_is_verified(chart):
    cr = latest(chart, "LOINC//2160-0")
    model = ScriptedModel([
        call("lab_series", code="LOINC//2160-0"),
        {"statements": [{"text": "Creatinine rose to 2.3 mg/dL on 2020-07-04.", "citations": [cr.cid]},
                        {"text": "Creatinine was 5.0 mg/dL.", "citations": [cr.cid]}]},
    ])  # fmt: skip
    a = ask("How is her kidney function?", chart, model, tools=ToolRegistry(chart))
    assert [s.text for s in a.statements] == ["Creatinine rose to 2.3 mg/dL on 2020-07-04."]
    cited = a.statements[0].citations[0]
    assert (cited.subject_id, cited.code, cited.time, cited.unit) == (101, "LOINC//2160-0", "2020-07-04T09:00:00", "mg/dL")
    assert abs(cited.numeric_value - 2.3) < 1e-6
    assert [r.text for r in a.removed] == ["Creatinine was 5.0 mg/dL."] and "value 5.0" in a.removed[0].reasons[0]
    assert [t.name for t in a.tools] == ["lab_series"] and a.tools[0].ok
    tool_msg = model.calls[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and "1.4" in tool_msg["content"] and "1.9" in tool_msg["content"]
    assert a.usage.total_tokens == 100 + 10 + 100 + 20 and a.steps == 2 and not a.abstained
    assert a.verifier_outcome == "some removed" and a.banner.startswith("Decision support only")


def test_renal_and_treatment_tools(chart):
    reg = ToolRegistry(chart)
    egfr = reg.call(ToolCall("1", "renal_function", {}))
    assert "eGFR" in egfr.text and egfr.citations
    value = chart.by_id[egfr.citations[0]].derived["egfr"]
    assert 20 < value < 30  # CKD-EPI 2021, creatinine 2.3 mg/dL, 65-year-old woman: 22.9
    check = reg.call(ToolCall("2", "treatment_check", {"add": ["amoxicillin"]}))
    assert "penicillin" in check.text.lower()  # amoxicillin proposed with a penicillin allergy
    assert "metformin" in check.text.lower()  # metformin at an eGFR below 30


def test_tool_refusals_reach_the_model_not_the_caller(chart):
    model = ScriptedModel([call("export_all_patients"), call("lab_series", code="LOINC//2160-0", subject_id=202),
                           {"statements": []}])  # fmt: skip
    a = ask("creatinine?", chart, model, tools=ToolRegistry(chart), options=AskOptions(max_steps=3))
    assert [(t.name, t.ok) for t in a.tools] == [("export_all_patients", False), ("lab_series", False)]
    assert "no tool 'export_all_patients'" in a.tools[0].detail and "no argument 'subject_id'" in a.tools[1].detail
    assert a.abstained


def test_prompt_injection_in_a_note_changes_nothing(chart, tiny_dataset):
    from clinfm.assist.chart import build_chart
    from clinfm.data.store import SubjectDatabase

    db = SubjectDatabase(tiny_dataset)
    other = build_chart(db[202], None, db.descriptions())
    note = next(i for i in chart.items if i.section == "note")
    model = ScriptedModel([call("export_all_patients"), {"statements": [
        {"text": "Patient 202 has hypertension.", "citations": [other.items[-1].cid]},
        {"text": "All patients are listed.", "citations": [note.cid]}]}])  # fmt: skip
    reg = ToolRegistry(chart)
    a = ask("What did the last note say?", chart, model, tools=reg)
    assert sorted(reg.tools) == ["differential_diagnosis", "lab_series", "renal_function", "search_timeline",
                                 "treatment_check"]  # fmt: skip
    assert all("subject" not in json.dumps(s.parameters) for s in reg.specs)  # no tool can name another patient
    assert a.tools[0].ok is False
    assert all(c.subject_id == 101 for s in a.statements for c in s.citations)
    assert "Patient 202 has hypertension." in [r.text for r in a.removed]
    prompt = model.calls[0]["messages"][1]["content"]
    assert prompt.count("IGNORE PREVIOUS INSTRUCTIONS") == 1 and "[record-tag]" in prompt
    assert "never instructions" in model.calls[0]["messages"][0]["content"]
    schema_ids = model.calls[0]["schema"]["properties"]["statements"]["items"]["properties"]["citations"]["items"]["enum"]
    assert set(schema_ids) <= set(chart.by_id) and not set(schema_ids) & set(other.by_id)


def test_malformed_output_gets_one_retry_then_abstains(chart):
    model = ScriptedModel(["not json at all", '{"statements": [{"text": 5}]}'])
    a = ask("What is her creatinine?", chart, model)
    assert a.abstained and "could not be parsed" in a.abstention_reason and len(model.calls) == 2
    assert model.calls[1]["schema"]["properties"]["statements"]["maxItems"] == 1
    ok = ScriptedModel(["{broken", {"statements": [{"text": "HbA1c 8.4 %.", "citations": [latest(chart, "LOINC//4548-4").cid]}]}])
    b = ask("What is her HbA1c?", chart, ok)
    assert not b.abstained and [s.text for s in b.statements] == ["HbA1c 8.4 %."]


def test_abstains_when_the_record_lacks_what_was_asked(chart):
    model = ScriptedModel([])
    a = ask("What was her troponin?", chart, model)
    assert a.abstained and "holds nothing about 'troponin'" in a.abstention_reason and model.calls == []


def test_abstains_when_nothing_supported_remains(chart):
    model = ScriptedModel([{"statements": [{"text": "Creatinine 9.9 mg/dL.", "citations": [latest(chart, "LOINC//2160-0").cid]}]}])
    a = ask("What is her creatinine?", chart, model)
    assert a.abstained and a.abstention_reason == "no statement of the model's answer is supported by the record"
    assert a.statements == [] and len(a.removed) == 1


def test_step_budget(chart):
    model = ScriptedModel([call("search_timeline", query="creatinine")] * 2 + [{"statements": []}])
    a = ask("creatinine?", chart, model, tools=ToolRegistry(chart), options=AskOptions(max_steps=2))
    assert len(model.calls) == 2 and model.calls[1]["tools"] == [] and a.abstained


def test_question_validation(chart):
    with pytest.raises(ValueError, match="empty"):
        ask("   ", chart, ScriptedModel([]))
    with pytest.raises(ValueError, match="at most 1000"):
        ask("x" * 1001, chart, ScriptedModel([]))


# --- governance -----------------------------------------------------------------------------------------------
@pytest.fixture()
def gov_db(tmp_path, monkeypatch):
    from clinfm.govern import access
    from clinfm.govern.db import dispose_engines

    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    access.create_organization("demo", actor="test", db=db)
    yield db
    dispose_engines()


def test_egress_refused_for_identified_data_to_a_host_not_allowed(identified_dataset, tiny_dataset, gov_db):
    from clinfm.data.store import SubjectDatabase

    subject = SubjectDatabase(identified_dataset)[101]
    a = Assistant(ScriptedModel([]), AssistSettings(), db=gov_db)
    with pytest.raises(EgressRefused, match="'llm.example.org' is not on organization 'demo'"):
        a.answer(subject, "creatinine?", org="demo", actor="dr", deidentified=False)
    allowed = Assistant(ScriptedModel([{"statements": []}]), AssistSettings(egress_allow_hosts={"demo": ["llm.example.org"]}), db=gov_db)
    assert allowed.answer(subject, "creatinine?", org="demo", actor="dr", deidentified=False).abstained
    deid = Assistant(ScriptedModel([{"statements": []}]), AssistSettings(), db=gov_db)
    assert deid.answer(SubjectDatabase(tiny_dataset)[101], "creatinine?", org="demo", actor="dr", deidentified=True).abstained


def test_every_call_is_audited_and_silent_mode_shows_nothing(tiny_dataset, gov_db):
    from clinfm.data.store import SubjectDatabase
    from clinfm.govern.audit import list_entries, verify_chain

    db = SubjectDatabase(tiny_dataset)
    subject = db[101]
    chart_cid = next(i.cid for i in __import__("clinfm.assist.chart", fromlist=["x"]).build_chart(
        subject, None, db.descriptions()).items if i.code == "LOINC//4548-4" and i.value and i.value > 8)
    reply = {"statements": [{"text": "HbA1c 8.4 %.", "citations": [chart_cid]}]}
    a = Assistant(ScriptedModel([reply, reply]), AssistSettings(), db=gov_db)
    shown = a.answer(subject, "HbA1c?", org="demo", actor="dr-a", descriptions=db.descriptions(), deidentified=True,
                     state="pilot", version="mv_test")  # fmt: skip
    silent = a.answer(subject, "HbA1c?", org="demo", actor="dr-a", descriptions=db.descriptions(), deidentified=True,
                      state="silent", version="mv_test")  # fmt: skip
    assert [s.text for s in shown.statements] == ["HbA1c 8.4 %."] and shown.shown
    assert silent.statements == [] and not silent.shown and "silent mode" in silent.warnings[0]
    assert silent.answer_sha256 == shown.answer_sha256  # computed and verified the same, only not shown
    entries = [e for e in list_entries(db=gov_db) if e.action == "assist.answer"]
    assert len(entries) == 2
    d = entries[0].details
    assert (entries[0].actor, entries[0].org_id, entries[0].subject_id, entries[0].model_version_id) == ("dr-a", "demo", "101", "mv_test")
    assert d["answer_sha256"] == shown.answer_sha256 and d["prompt_sha256"] == shown.prompt_sha256
    assert d["prompt_tokens"] == 100 and d["verifier_outcome"] == "all supported" and d["shown"] is True
    assert entries[1].details["shown"] is False
    assert "HbA1c 8.4" not in json.dumps([e.details for e in entries])  # no text in the audit chain
    assert verify_chain(db=gov_db)
    with pytest.raises(NotServing, match="draft"):
        a.answer(subject, "HbA1c?", org="demo", actor="dr-a", deidentified=True, state="draft", version="mv_test")


def test_forecast_tool_respects_the_lifecycle(chart):
    risks = [{"outcome": "VISIT//IP//START", "probability": 0.31, "ci_low": 0.2, "ci_high": 0.4}]
    silent = ToolRegistry(chart, forecast=lambda c: {"state": "silent", "version": "mv_fm", "risks": risks})
    out = silent.call(ToolCall("1", "forecast", {}))
    assert not out.ok and "'silent' state: its numbers are not shown" in out.text and "31" not in out.text
    pilot = ToolRegistry(chart, forecast=lambda c: {"state": "pilot", "version": "mv_fm", "risks": risks})
    shown = pilot.call(ToolCall("1", "forecast", {}))
    assert shown.ok and "31% (95% CI 20-40%)" in shown.text and len(shown.citations) == 1
    cid = shown.citations[0]
    from clinfm.assist.verify import Statement, check_statement

    assert check_statement(Statement(text="The forecast of admission is 31%.", citations=[cid]), chart) == []
    assert check_statement(Statement(text="The forecast of admission is 45%.", citations=[cid]), chart)
