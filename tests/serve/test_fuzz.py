"""Schemathesis in-process over the OpenAPI schema with a valid key: no request may get a 500."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings


def test_no_server_errors(app_factory, governance):
    app = app_factory()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    key = governance["keys"].full
    failures = []
    for op in schema.get_all_operations():
        operation = op.ok()

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def run(case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            if response.status_code >= 500 and response.status_code != 503:
                failures.append((case.method, case.path, response.status_code, response.text[:200]))

        run()
    assert not failures, failures
