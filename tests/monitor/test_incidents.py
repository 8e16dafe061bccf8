"""Alerts merge into incidents: consecutive windows of one kind and code become one incident with its peak,
distinct codes and kinds stay apart, a gap longer than the policy's splits, and the budget counts per year."""

from __future__ import annotations

import datetime as dt

from clinfm.monitor.incidents import Alert, budget, group_incidents
from clinfm.monitor.policy import Incidents

T0 = dt.datetime(2020, 1, 1)


def alert(kind: str, window: int, value: float, code: str | None = None, threshold: float = 0.3) -> Alert:
    start, end = T0 + dt.timedelta(days=30 * window), T0 + dt.timedelta(days=30 * (window + 1))
    return Alert(kind, start.isoformat(), end.isoformat(), value, threshold, f"{kind} {value}", code, window,
                 ({"what": "X", "before": 0.1, "after": 0.4, "contribution": 0.4},))  # fmt: skip


def test_consecutive_alerts_of_one_kind_and_code_form_one_incident_with_its_peak():
    alerts = [alert("input_drift.codes", w, v) for w, v in ((3, 0.4), (4, 0.9), (5, 0.5))]
    alerts += [alert("input_drift.lab", 4, 0.6, "LOINC//A"), alert("input_drift.lab", 4, 0.7, "LOINC//B")]
    incidents = group_incidents(alerts)
    assert [(i.kind, i.code, i.windows) for i in incidents] == [
        ("input_drift.codes", None, [3, 4, 5]), ("input_drift.lab", "LOINC//A", [4]), ("input_drift.lab", "LOINC//B", [4]),
    ]  # fmt: skip
    codes = incidents[0]
    assert (
        codes.peak.window == 4 and codes.start == alerts[0].window_start and codes.end == alerts[2].window_end
    )
    doc = codes.as_dict()
    assert doc["peak"]["value"] == 0.9 and doc["changes"][0]["after"] == 0.4 and doc["id"] == "incident-1"


def test_a_gap_longer_than_the_policy_allows_starts_a_new_incident():
    alerts = [alert("prediction_drift", w, 0.5) for w in (1, 3, 7)]
    assert [i.windows for i in group_incidents(alerts, Incidents(merge_gap_windows=1))] == [[1, 3], [7]]
    assert [i.windows for i in group_incidents(alerts, Incidents(merge_gap_windows=0))] == [[1], [3], [7]]


def test_lower_limit_alerts_peak_at_their_lowest_value():
    alerts = [alert("performance.auroc", w, v, threshold=0.65) for w, v in ((1, 0.6), (2, 0.5), (3, 0.62))]
    assert group_incidents(alerts)[0].peak.value == 0.5


def test_budget_counts_incidents_per_year_and_flags_a_noisy_policy():
    incidents = group_incidents([alert("prediction_drift", w, 0.5) for w in (0, 5, 10, 15, 20)])
    rule = Incidents(budget_per_year=2)
    over = budget(incidents, T0, T0 + dt.timedelta(days=730), rule)
    assert over.incidents == 5 and over.per_year == 2.5 and over.over
    # a span shorter than a year is judged as a year
    short = budget(incidents[:2], T0, T0 + dt.timedelta(days=30), rule)
    assert short.per_year == 2 and not short.over


def test_windows_where_the_check_could_not_run_do_not_end_an_incident():
    # a task scored once a year: missingness is judged in windows 0, 12, 24 only
    alerts = [alert("input_drift.missingness", w, 1.0, "SNOMED//X") for w in (12, 24)]
    judged = {("input_drift.missingness", "SNOMED//X"): [0, 12, 24]}
    assert [i.windows for i in group_incidents(alerts, Incidents(merge_gap_windows=0), judged)] == [[12, 24]]
    judged = {("input_drift.missingness", "SNOMED//X"): [0, 12, 18, 24]}  # a quiet judged window between
    assert [i.windows for i in group_incidents(alerts, Incidents(merge_gap_windows=0), judged)] == [
        [12],
        [24],
    ]
