"""The "Ask about this patient" panel in Chromium: log in, open a patient, ask, read the verified answer with its
cited events and the verifier's removals (a scripted model in the assistant's seam)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.assist.conftest import ScriptedModel
from tests.serve.test_browser import ARGS, ensure_chromium, free_port


@pytest.fixture()
def assist_server(app_factory, governance, subject_id):
    import uvicorn

    from clinfm.assist.chart import build_chart
    from clinfm.assist.service import Assistant, register_assistant
    from clinfm.assist.settings import AssistSettings
    from clinfm.govern.db import ModelVersionRecord, session_scope

    app = app_factory()
    s = app.state.serve
    item = next(i for i in build_chart(s.store[subject_id], None, s.descriptions).items if i.section == "problem")
    reply = {"statements": [{"text": f"{item.description} is recorded.", "citations": [item.cid]},
                            {"text": "Potassium 9.9 mmol/L.", "citations": [item.cid]}]}  # fmt: skip
    assistant = Assistant(ScriptedModel([reply]), AssistSettings(egress_allow_hosts={"demo": ["llm.example.org"]}),
                          db=governance["db"])  # fmt: skip
    v = register_assistant(assistant.config(), s.settings.dataset_path, "test", org="demo", db=governance["db"])
    with session_scope(governance["db"], write=True) as session:
        session.get(ModelVersionRecord, v.id).state = "pilot"
    s.assistant = assistant
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", item
    server.should_exit = True
    thread.join(timeout=10)


def test_ask_panel(assist_server, governance, subject_id, tmp_path):
    chromium = ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    base, item = assist_server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/web/login?next=/web/patients/{subject_id}")
        page.fill("#api_key", governance["keys"].full)
        page.click("#login-button")
        page.wait_for_url(f"**/web/patients/{subject_id}")
        assert "Ask about this patient" in page.inner_text("#assist-panel")
        page.fill("#assist-question", "What problems are recorded?")
        page.click("#assist-button")
        page.wait_for_selector("#assist-statements")
        statements = page.locator(".assist-statement")
        assert statements.count() == 1
        assert f"{item.description} is recorded." in statements.first.inner_text()
        assert item.cid in page.inner_text(".assist-citation") and item.code in page.inner_text(".assist-citation")
        page.click("#assist-removed summary")
        assert "Potassium 9.9 mmol/L." in page.inner_text("#assist-removed")
        assert "Decision support only" in page.inner_text("#assist-banner")
        page.screenshot(path=str(tmp_path / "assist.png"))
        page.fill("#assist-question", " ")
        page.click("#assist-button")
        page.wait_for_selector("#assist-error")
        assert page.inner_text("#assist-error") == "the question is empty"
        browser.close()
