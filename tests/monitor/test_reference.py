"""The drift reference compares like with like: the model's validation points and their observation windows,
on the codes it uses; with 30-day windows a clean year stays quiet and injected drift is caught within two
windows of its start, by the codes and labs that moved."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from clinfm.monitor.policy import MonitoringPolicy, Reference
from clinfm.monitor.report import monitor_report
from tests.monitor.conftest import CREATININE, DRIFT_AT, RENAMED, START
from tests.monitor.synthetic import ROUTINE

MONTHLY = MonitoringPolicy(window=dt.timedelta(days=30))


def test_reference_is_the_validation_window_seen_through_the_observation_windows(scorer, clinic_dir):
    ref = scorer.reference
    window = ref["window"]
    assert window["end"] == START.isoformat()
    assert window["start"] == (START - Reference().validation_window).isoformat()
    assert 0 < window["points"] == ref["points"] and window["subjects"] <= window["points"]
    # only codes the model can see are in the code shares; the task's observation window bounds the events
    assert set(ref["codes"]) - {"__other__"} <= scorer.vocabulary
    events = pl.read_parquet(clinic_dir / "data" / "*.parquet")
    before = events.filter(pl.col("time") < START)
    assert ref["n_events"] < before.height / 2  # not the whole history before the cutoff
    assert list(ref["missing"]) and set(ref["missing"]) <= scorer.vocabulary
    assert all(0 <= n <= ref["points"] for n in ref["missing"].values())


@pytest.fixture(scope="module")
def monthly(replays):
    return {name: monitor_report(name, replays["store"], MONTHLY) for name in ("clean", "drift")}


def test_clean_year_in_monthly_windows_raises_no_input_or_prediction_drift(monthly):
    s = monthly["clean"]
    assert len(s.windows) >= 12
    drift = [i for i in s.incidents if not i.kind.startswith("performance.")]
    assert drift == [] and len(s.incidents) <= 1 and not s.budget.over


def test_injected_drift_is_caught_within_two_monthly_windows_by_what_moved(monthly):
    s = monthly["drift"]
    first = next(w.index for w in s.windows if w.end > DRIFT_AT)
    by_kind = {(i.kind, i.code): i for i in s.incidents}
    lab = by_kind[("input_drift.lab", CREATININE)]
    renamed = by_kind[("input_drift.unknown_codes", None)]
    codes = by_kind[("input_drift.codes", None)]
    for incident in (lab, renamed, codes):
        assert incident.windows[0] - first <= 2
        assert incident.windows == list(
            range(incident.windows[0], incident.windows[-1] + 1)
        )  # one incident each
    assert {c["what"] for c in renamed.as_dict()["changes"]} >= {RENAMED}
    moved = {c["what"]: c for c in codes.as_dict()["changes"]}
    assert moved[ROUTINE]["before"] > 0.05 and moved[ROUTINE]["after"] == 0
    top = lab.as_dict()["changes"][0]
    assert (
        top["what"].startswith(">") and top["after"] > 3 * top["before"]
    )  # creatinine x1.6 fills the top decile
    # the drift's alerts are a handful of incidents, not one row per window and kind
    assert len(s.alerts) > len(s.incidents) and len(s.incidents) <= 5


@pytest.mark.parametrize("mode", ["rolling", "seasonal"])
def test_rolling_and_seasonal_references_fall_back_to_validation_until_enough_windows(replays, mode):
    policy = MonitoringPolicy(window=dt.timedelta(days=30), reference=Reference(mode=mode, rolling_windows=3))
    s = monitor_report("drift", replays["store"], policy)
    used = [w.reference for w in s.windows if w.input_events]
    assert used[0] == "validation"
    if mode == "rolling":
        assert used[3:] and set(used[3:]) == {"rolling"}
        # a rolling reference still sees the change when it starts
        first = next(w.index for w in s.windows if w.end > DRIFT_AT)
        assert any(i.kind == "input_drift.lab" and i.windows[0] - first <= 2 for i in s.incidents)
    else:
        # only windows whose calendar twin a year earlier (within 1.5 windows) exists compare with it
        t0 = s.windows[0].start
        twin = [
            w.start - dt.timedelta(days=365) >= t0 - 1.5 * policy.window for w in s.windows if w.input_events
        ]
        assert any(twin) and not all(twin)
        assert used == ["seasonal" if t else "validation" for t in twin]
