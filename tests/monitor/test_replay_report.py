"""Replay history as if live, then monitor: drift injected into the data raises the matching alerts, clean data
raises none, nothing after the replay clock reaches the model, and the summary is what the pilot gate reads."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from clinfm.monitor.report import attach_summary, monitor_report
from tests.monitor.conftest import CREATININE, DRIFT_AT, END, START


def test_replay_stores_predictions_and_backfills_outcomes_only_once_known(replays):
    summary, store = replays["clean"], replays["store"]
    preds = store.predictions("clean")
    assert summary.steps == 53 and preds.height == summary.predictions > 500
    assert preds["prediction_time"].min() > START and preds["prediction_time"].max() <= END
    assert summary.outcomes_attached + summary.pending_outcomes == summary.predictions
    known = preds.filter(pl.col("outcome").is_not_null())
    assert (
        known.height == summary.outcomes_attached and summary.pending_outcomes > 0
    )  # stays still open at the end
    # an outcome is attached at the first replay moment after its window closed, never before
    assert (known["outcome_attached_at"] >= known["outcome_known_at"]).all()
    assert (known["outcome_attached_at"] - known["outcome_known_at"]).max().days < 7
    assert (preds["n_events"] > 0).all() and preds["n_unknown_codes"].sum() >= 0 and preds["withheld"].all()


def test_replay_cuts_every_record_at_the_replay_moment(clinic_dir, scorer, task, tmp_path):
    from clinfm.monitor.replay import replay

    seen = []

    class Spy:
        name, reference, vocabulary = "spy", scorer.reference, scorer.vocabulary

        def score(self, events, points):
            seen.append((events["time"].max(), points["prediction_time"].max()))
            return scorer.score(events, points)

    replay(clinic_dir, Spy(), task, START, START.replace(month=3), "7d", tmp_path / "m.db")
    moments = [START + i * (START.replace(day=8) - START) for i in range(1, 10)]
    assert seen and all(latest <= next(m for m in moments if m >= pred) for latest, pred in seen)


def test_no_drift_raises_no_alerts(replays, policy, tmp_path):
    s = monitor_report("clean", replays["store"], policy, tmp_path / "clean.html")
    assert s.alerts == [] and s.in_bounds and s.days > 300
    judged = [w.performance for w in s.windows if w.performance.evaluated]
    assert len(judged) >= 4 and all(
        p.auroc.value > policy.performance.min_auroc and p.auroc.ci for p in judged
    )
    doc = json.loads(s.json_path.read_text())
    assert doc["alerts"] == [] and doc["in_bounds"] is True and doc["metrics"]["auroc"]["ci"]
    html = s.report_path.read_text()
    assert s.incidents == [] and "Quiet: no incidents" in html
    # every monitored quantity has its plot, and the plots come before the first table
    for name in ("incidents", "code_psi", "lab_psi", "unknown", "missingness", "volume", "scores", "auroc",
                 "calibration_slope", "observed_expected"):
        assert f'id="plot-{name}"' in html
    assert html.count("data:image/png;base64,") == 10 and html.index("<img") < html.index("<table")


def test_injected_drift_raises_the_matching_alerts(replays, policy, tmp_path):
    s = monitor_report("drift", replays["store"], policy, tmp_path / "drift.html")
    kinds = {a.kind for a in s.alerts}
    assert {"input_drift.lab", "input_drift.unknown_codes", "input_drift.codes"} <= kinds
    assert {a.code for a in s.alerts if a.kind == "input_drift.lab"} == {CREATININE}
    # only windows that hold drifted data alert
    assert min(a.window_start for a in s.alerts) >= (DRIFT_AT - policy.window).isoformat()
    assert not s.in_bounds and "input_drift.lab" in s.report_path.read_text()


def test_summary_attaches_in_the_shape_the_pilot_gate_reads(
    replays, policy, registry, clinic_dir, scorer, tmp_path
):
    from clinfm.govern.registry import get_model
    from clinfm.govern.reports import read_monitoring
    from clinfm.monitor.scorer import register_scorer

    version = register_scorer(scorer, tmp_path / "run", clinic_dir, actor="test", name="los", db=registry)
    s = monitor_report("drift", replays["store"], policy)
    attach_summary(version.id, s, actor="test", db=registry)
    doc = get_model(version.id, db=registry).latest_report("monitoring").document
    read = read_monitoring(doc)
    assert read.missing == [] and read.days > 300 and len(read.alerts) == len(s.alerts) > 0
    assert read.in_bounds is False and "max_lab_psi" in read.metrics


def test_registered_version_replays_from_its_run_folder(registry, clinic_dir, scorer, task, tmp_path):
    from clinfm.monitor.replay import replay
    from clinfm.monitor.scorer import register_scorer

    version = register_scorer(scorer, tmp_path / "run", clinic_dir, actor="test", name="los", db=registry)
    summary = replay(
        clinic_dir, version.id, task, START, START.replace(month=2), "7d", tmp_path / "m.db", db=registry
    )
    assert summary.model_version == version.id and summary.predictions > 0
    from clinfm.monitor.store import PredictionStore

    stored = PredictionStore(tmp_path / "m.db").predictions(version.id)
    direct = scorer.score(
        pl.read_parquet(clinic_dir / "data" / "*.parquet"), stored.select("subject_id", "prediction_time")
    )
    assert np.allclose(stored["score"].to_numpy(), direct)  # the saved text model scores as the trained one
