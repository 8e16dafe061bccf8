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
