"""The whole OpenAPI schema, in process: schemathesis over every operation (valid and invalid inputs) with 0 server
errors, invalid inputs refused with a 4xx problem, and every protected operation refusing a missing key."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (a dev dependency) is not installed")
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

PUBLIC = {("GET", "/cds-services"), ("GET", "/health"), ("GET", "/ready"), ("GET", "/fhir/metadata")}
"""Operations that need no key: CDS Hooks discovery, FHIR's CapabilityStatement (what a client reads before it
authenticates) and the probes of an orchestrator."""
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}


def _fuzz(app, key: str, mode: GenerationMode) -> tuple[int, list[tuple]]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    sent, bad = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES[mode], deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)  # fmt: skip
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case) -> None:
            nonlocal sent
            sent += 1
            r = case.call(headers={"Authorization": f"Bearer {key}"})
            server_error = r.status_code >= 500 and not (r.status_code == 503 and "Retry-After" in r.headers or
                                                           r.status_code == 503 and "unavailable" in r.text)  # fmt: skip
            if server_error or "Traceback" in r.text:
                bad.append((case.method, case.path, r.status_code, r.text[:200]))

        try:
            run()
        except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
            assert mode is GenerationMode.NEGATIVE
    return sent, bad


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
def test_schemathesis_finds_no_server_error(app_factory, governance, mode):
    sent, bad = _fuzz(app_factory(), governance["keys"].full, mode)
    print(f"schemathesis {mode.value}: {sent} requests, {len(bad)} server errors")
    assert sent > 50 and not bad, bad


def test_every_protected_operation_refuses_a_missing_and_a_foreign_key(client, governance):
    paths = client.get("/openapi.json").json()["paths"]
    checked = 0
    for path, ops in paths.items():
        for method in ops:
            if (method.upper(), path) in PUBLIC or method not in ("get", "post", "put", "delete", "patch"):
                continue
            url = path.replace("{service_id}", "clinfm-risk").replace("{session_id}", "0" * 36).replace(
                "{subject_id}", "1").replace("{version}", "mv_000000000000").replace("{resource_type}", "Observation").replace(
                "{resource_id}", "1-0").replace("{answer_id}", "0").replace("{proposal_id}", "1")  # fmt: skip
            r = client.request(method.upper(), url, json={}, follow_redirects=False)
            assert r.status_code == 401, (method, path, r.status_code)
            checked += 1
    assert checked >= 8
