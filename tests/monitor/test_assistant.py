"""The assistant monitored in the same policy and page: per-call records in the store, per-window rates, and
alerts where the verifier removes too much, the assistant abstains too often, or clinicians rate it low."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from clinfm.monitor.assistant import AssistantCall, assistant_window
from clinfm.monitor.policy import MonitoringPolicy
from clinfm.monitor.report import monitor_report
from clinfm.monitor.store import PredictionStore, add_assistant_calls, assistant_calls

T0 = dt.datetime(2026, 1, 1)


def calls(days: range, *, removed_after: int | None = None, seed: int = 0) -> list[AssistantCall]:
    """30 calls a day; from day ``removed_after`` on the verifier removes half the statements and ratings drop."""
    rng = np.random.default_rng(seed)
    out = []
    for d in days:
        bad = removed_after is not None and d >= removed_after
        for k in range(30):
            out.append(AssistantCall(
                call_id=f"c{d}-{k}", time=T0 + dt.timedelta(days=d, minutes=20 * k),
                latency_ms=float(rng.gamma(4, 300)), tokens=int(rng.integers(300, 900)), statements=10,
                removed=5 if bad else int(rng.integers(0, 2)), abstained=bool(rng.random() < 0.05),
                rating=int(rng.integers(1, 3)) if bad else int(rng.integers(4, 6)),
            ))  # fmt: skip
    return out


def test_calls_round_trip_through_the_store(tmp_path):
    store = PredictionStore(tmp_path / "m.db")
    records = calls(range(2))
    assert add_assistant_calls(store, records) == 60
    assert add_assistant_calls(store, records[:5]) == 5  # re-imported calls replace, not add
    assert assistant_calls(store) == records


def test_window_rates():
    w = assistant_window(calls(range(1)))
    assert w.calls == 30 and 0 <= w.removed_statement_rate < 0.1 and w.ratings == 30 and w.mean_rating >= 4
    assert assistant_window([]).calls == 0


def test_bad_records_are_refused_naming_the_value():
    with pytest.raises(ValueError, match="removed 11 must be between 0 and statements 10"):
        AssistantCall("x", T0, 10.0, 10, statements=10, removed=11)
    with pytest.raises(ValueError, match="rating 7"):
        AssistantCall("x", T0, 10.0, 10, rating=7)


def test_a_degrading_assistant_raises_one_incident_per_kind_and_gets_its_plots(tmp_path):
    store = PredictionStore(tmp_path / "m.db")
    add_assistant_calls(store, calls(range(150), removed_after=90))
    policy = MonitoringPolicy(window=dt.timedelta(days=30))
    s = monitor_report("assistant", store, policy, tmp_path / "page.html")
    kinds = {i.kind: i for i in s.incidents}
    assert set(kinds) == {"assistant.removed_statements", "assistant.mean_rating"}
    for incident in kinds.values():
        assert incident.windows == [3, 4]  # day 90 is in window 3 (days 90-119)
    assert all(w.assistant.calls == 900 for w in s.windows[:5])
    html = s.report_path.read_text()
    assert 'id="plot-assistant_rates"' in html and 'id="plot-assistant_latency"' in html
    assert html.index('id="plot-assistant_rates"') < html.index("<table")


def test_calls_come_from_the_assistants_audit_entries(tmp_path):
    from clinfm.govern import audit
    from clinfm.monitor.assistant import calls_from_audit

    db = f"sqlite:///{tmp_path / 'registry.db'}"
    # the details clinfm.assist's Assistant.audit writes for each call (hashes and counts, no text)
    details = {"prompt_sha256": "0" * 64, "answer_sha256": "1" * 64, "prompt_tokens": 900, "completion_tokens": 120,
               "verifier_outcome": "partial", "statements_kept": 6, "statements_removed": 2, "abstained": False,
               "shown": True, "latency_ms": 2400, "backend": "local", "model_id": "smollm2"}  # fmt: skip
    audit.record("assist.answer", actor="dr.a", org="local", model_version_id="assistant@1", subject_id=7,
                 purpose="treatment", details=details, db=db)  # fmt: skip
    audit.record("prediction.access", actor="dr.a", org="local", model_version_id="m@1", subject_id=7,
                 purpose="treatment", db=db)  # fmt: skip
    (call,) = calls_from_audit(audit.list_entries(db=db))
    assert (call.tokens, call.statements, call.removed, call.latency_ms) == (1020, 8, 2, 2400.0)
    assert call.assistant_version == "assistant@1" and call.time.tzinfo is None and not call.abstained
    broken = audit.record("assist.answer", actor="dr.a", org="local", details={"latency_ms": 1}, db=db)
    with pytest.raises(ValueError, match=f"audit entry {broken.seq}.*statements_kept"):
        calls_from_audit(audit.list_entries(db=db))
