"""``POST /v1/assist`` over the real governance database and the Eunomia store, with a scripted model in the
assistant's seam: answers with event details, 404/422/403/503 faults, PHI egress, silent mode, the audit entry."""

from __future__ import annotations

import time

import pytest

from clinfm.assist.backends import BackendUnavailable
from tests.assist.conftest import ScriptedModel
from tests.serve.conftest import bearer

ALLOW = {"demo": ["llm.example.org"]}


class SlowModel(ScriptedModel):
    def complete(self, *args, **kwargs):
        time.sleep(4)
        return super().complete(*args, **kwargs)


@pytest.fixture()
def with_assistant(app_factory, governance):
    """An app whose assistant is a scripted model, registered for ``demo`` in the given state."""
    from fastapi.testclient import TestClient

    from clinfm.assist.service import Assistant, register_assistant
    from clinfm.assist.settings import AssistSettings
    from clinfm.govern.db import ModelVersionRecord, session_scope

    clients = []

    def build(replies, state="pilot", model_cls=ScriptedModel, **settings):
        app = app_factory()
        s = AssistSettings(**{"egress_allow_hosts": ALLOW, **settings})
        assistant = Assistant(model_cls(list(replies)), s, db=governance["db"])
        v = register_assistant(assistant.config(), app.state.serve.settings.dataset_path, "test", org="demo",
                               db=governance["db"])  # fmt: skip
        with session_scope(governance["db"], write=True) as session:
            session.get(ModelVersionRecord, v.id).state = state
        app.state.serve.assistant = assistant
        c = TestClient(app)
        clients.append(c)
        return c, assistant, v.id

    yield build
    for c in clients:
        c.close()


def _first_cid(client_app, subject_id):
    from clinfm.assist.chart import build_chart

    s = client_app.app.state.serve
    chart = build_chart(s.store[subject_id], None, s.descriptions)
    item = next(i for i in chart.items if i.section == "problem")
    return item


def test_answer_with_citations_and_audit(with_assistant, governance, subject_id):
    from clinfm.govern.audit import list_entries

    client, assistant, version = with_assistant([])
    item = _first_cid(client, subject_id)
    assistant.model.replies.append({"statements": [{"text": f"{item.description} is recorded.", "citations": [item.cid]},
                                                   {"text": "Creatinine 9.9 mg/dL.", "citations": ["e0000000"]}]})  # fmt: skip
    r = client.post("/v1/assist", json={"question": "What problems are recorded?", "subject_id": subject_id},
                    headers=bearer(governance["keys"].full))  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert [s["text"] for s in body["statements"]] == [f"{item.description} is recorded."]
    cited = body["statements"][0]["citations"][0]
    assert (cited["id"], cited["subject_id"], cited["code"]) == (item.cid, subject_id, item.code)
    assert body["removed"][0]["text"] == "Creatinine 9.9 mg/dL." and not body["abstained"]
    assert body["usage"]["total_tokens"] == 120 and body["latency_s"] >= 0 and body["model_version"] == version
    assert body["banner"].startswith("Decision support only")
    entries = [e for e in list_entries(db=governance["db"]) if e.action == "assist.answer" and e.model_version_id == version]
    assert len(entries) == 1 and entries[0].subject_id == str(subject_id) and entries[0].details["statements_removed"] == 1


def test_faults(with_assistant, governance, subject_id):
    client, assistant, _ = with_assistant([])
    key = bearer(governance["keys"].full)
    assert client.post("/v1/assist", json={"question": "x?", "subject_id": 987654321}, headers=key).status_code == 404
    assert client.post("/v1/assist", json={"question": "", "subject_id": subject_id}, headers=key).status_code == 422
    assert client.post("/v1/assist", json={"question": "   ", "subject_id": subject_id}, headers=key).status_code == 422
    assert client.post("/v1/assist", json={"question": "x" * 1001, "subject_id": subject_id}, headers=key).status_code == 422
    narrow = client.post("/v1/assist", json={"question": "x?", "subject_id": subject_id}, headers=bearer(governance["keys"].narrow))
    assert narrow.status_code == 403 and "Assist.c" in narrow.json()["detail"]
    assistant.model.replies.append(BackendUnavailable("upstream down", retry_after_s=17))
    down = client.post("/v1/assist", json={"question": "What problems are recorded?", "subject_id": subject_id}, headers=key)
    assert down.status_code == 503 and down.headers["retry-after"] == "17"


def test_slow_backend_is_503_not_a_hang(with_assistant, governance, subject_id):
    client, _, _ = with_assistant([{"statements": []}], model_cls=SlowModel, timeout_s=0.5, max_steps=1)
    t0 = time.monotonic()
    r = client.post("/v1/assist", json={"question": "What problems are recorded?", "subject_id": subject_id},
                    headers=bearer(governance["keys"].full))  # fmt: skip
    assert r.status_code == 503 and r.headers["retry-after"] == "30" and time.monotonic() - t0 < 4


def test_identified_data_to_a_host_not_allowed_is_refused(with_assistant, governance, subject_id):
    client, assistant, _ = with_assistant([{"statements": []}], egress_allow_hosts={})
    r = client.post("/v1/assist", json={"question": "What problems are recorded?", "subject_id": subject_id},
                    headers=bearer(governance["keys"].full))  # fmt: skip
    assert r.status_code == 403 and "egress allow-list" in r.json()["detail"] and assistant.model.calls == []


def test_silent_and_unregistered(with_assistant, governance, subject_id):
    client, assistant, _ = with_assistant([], state="silent")
    item = _first_cid(client, subject_id)
    assistant.model.replies.append({"statements": [{"text": f"{item.description} is recorded.", "citations": [item.cid]}]})
    r = client.post("/v1/assist", json={"question": "What problems are recorded?", "subject_id": subject_id},
                    headers=bearer(governance["keys"].full))  # fmt: skip
    body = r.json()
    assert r.status_code == 200 and body["statements"] == [] and body["shown"] is False
    assert body["lifecycle_state"] == "silent" and body["verifier_outcome"] == "all supported"
    draft, _, _ = with_assistant([], state="draft")
    d = draft.post("/v1/assist", json={"question": "What problems are recorded?", "subject_id": subject_id},
                   headers=bearer(governance["keys"].full))  # fmt: skip
    assert d.status_code == 503 and "draft" in d.json()["detail"]


@pytest.mark.slow
def test_api_with_the_embedded_model(app_factory, governance, subject_id, tmp_path_factory):
    """The real embedded model behind /v1/assist (few tokens): loaded once, constrained, verified, audited."""
    from fastapi.testclient import TestClient

    from clinfm.assist.chart import build_chart
    from clinfm.assist.local import LocalBackend, embedded_model_path
    from clinfm.assist.service import Assistant, register_assistant
    from clinfm.assist.settings import AssistSettings
    from clinfm.assist.verify import Statement, check_statement
    from clinfm.govern.audit import list_entries
    from clinfm.govern.db import ModelVersionRecord, session_scope

    try:
        embedded_model_path()
    except FileNotFoundError as exc:
        pytest.skip(f"the embedded model wheel is not installed: {exc}")
    import os

    cache = os.environ.get("CLINFM_ASSIST_CACHE_DIR") or str(tmp_path_factory.getbasetemp().parent / "clinfm-assist-cache")
    settings = AssistSettings(chart_tokens=250, answer_tokens=96, max_statements=1, statement_chars=40, max_steps=1,
                              timeout_s=600)  # fmt: skip
    app = app_factory()
    backend = LocalBackend(cache_dir=cache, timeout_s=600)
    assistant = Assistant(backend, settings, db=governance["db"])
    v = register_assistant(assistant.config(), app.state.serve.settings.dataset_path, "test", org="demo", db=governance["db"])
    with session_scope(governance["db"], write=True) as session:
        session.get(ModelVersionRecord, v.id).state = "pilot"
    app.state.serve.assistant = assistant
    with TestClient(app) as client:
        r = client.post("/v1/assist", json={"question": "What allergies are recorded?", "subject_id": subject_id},
                        headers=bearer(governance["keys"].full))  # fmt: skip
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["backend"]["model_id"] == "SmolLM2-135M-Instruct.Q4_1" and a["model_version"] == v.id
    assert 0 < a["usage"]["completion_tokens"] <= 96 and not any("did not parse" in w for w in a["warnings"])
    assert a["verifier_outcome"] != "not run"
    s = app.state.serve
    chart = build_chart(s.store[subject_id], None, s.descriptions)
    for st in a["statements"]:
        assert check_statement(Statement(text=st["text"], citations=[c["id"] for c in st["citations"]]), chart) == []
    assert a["abstained"] == (not a["statements"])
    assert [e.details["answer_sha256"] for e in list_entries(db=governance["db"])
            if e.action == "assist.answer" and e.model_version_id == v.id] == [a["answer_sha256"]]  # fmt: skip


def test_inline_bundle_is_pseudonymized_before_the_model_sees_it(with_assistant, governance):
    """An inline FHIR Bundle is de-identified on arrival, so even a host off the allow-list may receive it."""
    import json

    from tests.serve.test_api import FIXTURE_BUNDLE

    client, assistant, _ = with_assistant([{"statements": []}], egress_allow_hosts={})
    bundle = json.loads(FIXTURE_BUNDLE.read_text())
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    r = client.post("/v1/assist", json={"question": "What problems are recorded?", "bundle": bundle},
                    headers=bearer(governance["keys"].full))  # fmt: skip
    assert r.status_code == 200, r.text
    sent = json.dumps(assistant.model.calls[0]["messages"])
    assert patient["id"] not in sent
    for name in patient.get("name", []):
        assert all(g not in sent for g in name.get("given", [])) and name.get("family", "@@") not in sent
    assert r.json()["subject_id"] != patient["id"]
