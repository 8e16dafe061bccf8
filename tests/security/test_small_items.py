"""The smaller findings: no huge echo in DDx errors, no server path in DDx state, a size cap on stored CDS feedback,
a Content-Security-Policy on the web pages."""

from __future__ import annotations

from tests.serve.conftest import bearer


def test_ddx_error_does_not_echo_a_huge_list(client, governance):
    h = bearer(governance["keys"].full)
    sid = client.post("/v1/ddx/sessions", json={"age": 40, "sex": "female"}, headers=h).json()["session_id"]
    huge = [f"V_{i}" for i in range(50_000)]
    for r in (client.post(f"/v1/ddx/sessions/{sid}/answers", json={"evidence": "E_91", "value": huge}, headers=h),
              client.post("/v1/ddx/sessions", json={"answers": {"E_91": huge}}, headers=h)):  # fmt: skip
        assert 400 <= r.status_code < 500, r.status_code
        assert len(r.content) < 5_000 and "V_49999" not in r.text


def test_ddx_state_shows_no_server_path(client, governance):
    r = client.post("/v1/ddx/sessions", json={"age": 40, "sex": "female"}, headers=bearer(governance["keys"].full))
    state = r.json()["state"]
    assert "kb_source" not in state and "/" not in str(state.get("kb_version", ""))


def test_cds_feedback_stored_per_request_is_capped(client, governance, tmp_path):
    big = {"code": "x" * 50_000, "system": "y" * 50_000, "display": "z" * 50_000}
    items = [{"card": f"c{i}", "outcome": "overridden", "overrideReason": {"reason": big}} for i in range(3)]
    r = client.post("/cds-services/clinfm-risk/feedback", json={"feedback": items}, headers=bearer(governance["keys"].full))
    assert r.status_code in (200, 413, 422), r.status_code
    stored = client.app.state.serve.settings.feedback_file
    assert not stored.exists() or stored.stat().st_size < 10_000


def test_web_pages_send_a_content_security_policy(client):
    r = client.get("/web/login")
    csp = r.headers.get("content-security-policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src" in csp
