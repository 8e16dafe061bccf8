"""``clinfm ask`` and ``clinfm assist-register`` through the CLI, against the scripted OpenAI-compatible server."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.assist.conftest import Scripted, chat


def _cid(dataset, code):
    from clinfm.assist.chart import build_chart
    from clinfm.data.store import SubjectDatabase

    db = SubjectDatabase(dataset)
    return max((i for i in build_chart(db[101], None, db.descriptions()).items if i.code == code), key=lambda i: i.time)


def test_ask_prints_verified_statements_with_cited_events(tiny_dataset, openai_server, tmp_path, monkeypatch):
    from clinfm.cli import app

    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    url, script = openai_server
    cr = _cid(tiny_dataset, "LOINC//2160-0")
    script.replies.append(Scripted(body=chat(json.dumps({"statements": [
        {"text": "Creatinine was 2.3 mg/dL on 2020-07-04.", "citations": [cr.cid]},
        {"text": "Creatinine was 4.1 mg/dL.", "citations": [cr.cid]}]}))))  # fmt: skip
    args = ["ask", str(tiny_dataset), "101", "What is her latest creatinine?", "--backend", "openai", "--base-url", url,
            "--model", "m"]  # fmt: skip
    r = CliRunner().invoke(app, args, env={"COLUMNS": "200", "CLINFM_ASSIST_USE_TOOLS": "false"})
    assert r.exit_code == 0, r.output
    assert "Creatinine was 2.3 mg/dL on 2020-07-04." in r.output and cr.cid in r.output and "LOINC//2160-0" in r.output
    assert "removed:" in r.output and "value 4.1 does not match a cited event" in r.output
    assert "Decision support only" in r.output and "not governed here" in r.output
    r = CliRunner().invoke(app, ["ask", str(tiny_dataset), "999", "x?"])
    assert r.exit_code == 2 and "subject 999 is not in" in r.output


def test_ask_refuses_identified_data_to_an_unlisted_host(identified_dataset, openai_server, tmp_path, monkeypatch):
    from clinfm.cli import app

    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    url, script = openai_server
    r = CliRunner().invoke(app, ["ask", str(identified_dataset), "101", "creatinine?", "--backend", "openai",
                                 "--base-url", url, "--model", "m"], env={"COLUMNS": "200"})  # fmt: skip
    assert r.exit_code == 2 and "egress allow-list" in r.output and script.requests == []


def test_register_then_the_lifecycle_governs_ask(tiny_dataset, openai_server, tmp_path, monkeypatch):
    from clinfm.cli import app
    from clinfm.govern import access
    from clinfm.govern.card import build_card
    from clinfm.govern.registry import list_models

    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    url, _ = openai_server
    access.create_organization("local", actor="test")
    backend = ["--backend", "openai", "--base-url", url, "--model", "m"]
    r = CliRunner().invoke(app, ["assist-register", str(tiny_dataset), "--org", "local", *backend])
    assert r.exit_code == 0, r.output
    (v,) = list_models(org="local")
    assert v.state == "draft" and v.name == "assistant-m"
    card = build_card(v)
    assert "Statements in words" in json.dumps(card) and json.loads((tmp_path / "home" / "assistants").glob(
        "*/assistant.json").__next__().read_text())["prompt_template_sha256"]  # fmt: skip
    r = CliRunner().invoke(app, ["ask", str(tiny_dataset), "101", "creatinine?", *backend], env={"CLINFM_ASSIST_USE_TOOLS": "false"})
    assert r.exit_code == 2 and "in state 'draft'" in r.output


def test_demo_step_asks_one_question_and_prints_the_verified_answer(tiny_dataset, openai_server, tmp_path, monkeypatch, capsys):
    from clinfm.cli.assist import DEMO_QUESTION, demo_question

    url, script = openai_server
    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    for k, v in {"BACKEND": "openai", "BASE_URL": url, "MODEL": "m", "USE_TOOLS": "false"}.items():
        monkeypatch.setenv(f"CLINFM_ASSIST_{k}", v)
    allergy = _cid(tiny_dataset, "SNOMED//294505008")
    script.replies.append(Scripted(body=chat(json.dumps({"statements": [
        {"text": "Allergy to penicillin is recorded.", "citations": [allergy.cid]}]}))))  # fmt: skip
    result = demo_question(tiny_dataset, 101)
    assert [s.text for s in result.statements] == ["Allergy to penicillin is recorded."]
    assert DEMO_QUESTION in script.requests[0]["messages"][1]["content"]
    out = capsys.readouterr().out
    assert "Allergy to penicillin is recorded." in out and allergy.cid in out


def test_the_server_builds_its_assistant_once(monkeypatch, openai_server):
    from types import SimpleNamespace

    from clinfm.serve.routes.assist import assistant_of
    from clinfm.serve.settings import ServeSettings

    url, _ = openai_server
    for k, v in {"BACKEND": "openai", "BASE_URL": url, "MODEL": "m"}.items():
        monkeypatch.setenv(f"CLINFM_ASSIST_{k}", v)
    state = SimpleNamespace(settings=ServeSettings(env="test"), assistant=None)
    first = assistant_of(state)
    assert assistant_of(state) is first and first.model.model_id == "m"
    monkeypatch.setenv("CLINFM_ASSIST_BACKEND", "openai")
    monkeypatch.delenv("CLINFM_ASSIST_BASE_URL")
    broken = SimpleNamespace(settings=ServeSettings(env="test"), assistant=None)
    from clinfm.serve.problems import Problem

    try:
        assistant_of(broken)
    except Problem as exc:
        assert exc.status == 503 and "CLINFM_ASSIST_BASE_URL" in exc.detail
    else:
        raise AssertionError("a misconfigured assistant must answer 503")
