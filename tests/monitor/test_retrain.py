"""Controlled change: a deliberately worse candidate is refused with the reason, and a retrained one that fixes a
real loss (a renamed risk code) is accepted, registered as a draft and taken no further than the validated gate."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from clinfm.monitor.plan import ChangePlan
from clinfm.monitor.retrain import retrain
from tests.monitor.conftest import START

CUTOFF = dt.datetime(2021, 12, 1)


@pytest.fixture()
def plan():
    return ChangePlan.model_validate({
        "name": "test-plan", "allowed_changes": ["retrain", "recalibrate"], "method": "retrain",
        "bounds": {"max_calibration_error": 0.15, "max_abs_calibration_intercept": 0.6, "n_resamples": 200},
    })  # fmt: skip


@pytest.fixture()
def incumbent(scorer, clinic_dir, registry, tmp_path):
    from clinfm.monitor.scorer import register_scorer

    return register_scorer(
        scorer, tmp_path / "incumbent", clinic_dir, actor="test", name="los-count", db=registry
    )


def test_worse_candidate_is_refused_with_the_reason(plan, incumbent, clinic_dir, task, registry, tmp_path):
    from clinfm.govern.registry import get_model, list_models
    from clinfm.monitor.labels import labels_with_known_at
    from clinfm.monitor.scorer import train_scorer

    labels = labels_with_known_at(task, clinic_dir)
    shuffled = labels.with_columns(
        pl.Series("boolean_value", np.random.default_rng(1).permutation(labels["boolean_value"].to_numpy()))
    )
    worse = train_scorer(clinic_dir, task, CUTOFF, after=START, labels=shuffled, name="shuffled")
    before = len(list_models(db=registry))
    d = retrain(
        plan,
        clinic_dir,
        incumbent.id,
        actor="test",
        cutoff=CUTOFF,
        run_dir=tmp_path / "c",
        candidate=worse,
        db=registry,
    )
    assert not d.accepted and any(
        "AUROC candidate - incumbent" in r and "may be worse" in r for r in d.reasons
    )
    assert d.candidate_version is None and len(list_models(db=registry)) == before  # nothing registered
    report = get_model(incumbent.id, db=registry).latest_report("change_comparison")
    assert report.id == d.report_id and report.document["decision"]["accepted"] is False


def test_better_retrained_candidate_is_accepted_up_to_the_validated_gate(
    plan, incumbent, recoded_dir, registry, tmp_path
):
    from clinfm.govern.registry import get_model

    d = retrain(
        plan, recoded_dir, incumbent.id, actor="test", cutoff=CUTOFF, run_dir=tmp_path / "c", db=registry
    )
    assert d.accepted, d.reasons
    auroc = next(c for c in d.comparison["comparisons"] if c["metric"] == "auroc")
    assert auroc["difference"] > 0.1 and auroc["ci"][0] > 0
    v = get_model(d.candidate_version, db=registry)
    assert v.name == "los-count" and v.version == incumbent.version + 1
    assert (
        v.state in ("draft", "validated") and v.state == d.candidate_state
    )  # never silent, pilot or general
    assert v.latest_report("change_comparison").document["incumbent"] == incumbent.id
    assert v.latest_report("validation").document["primary_model"] == "candidate"
    assert (v.state == "validated") == (d.gate_failures == [])


def test_recalibration_keeps_discrimination(plan, incumbent, clinic_dir, registry, tmp_path):
    d = retrain(plan.model_copy(update={"method": "recalibrate"}), clinic_dir, incumbent.id, actor="test",
                cutoff=CUTOFF, run_dir=tmp_path / "c", db=registry)  # fmt: skip
    auroc = next(c for c in d.comparison["comparisons"] if c["metric"] == "auroc")
    assert d.method == "recalibrate" and abs(auroc["difference"]) < 1e-9  # Platt is monotone: same ranking
    assert (d.run_dir / "calibration.json").read_text().startswith('{"method": "platt"')


def test_plan_refuses_a_method_it_does_not_allow():
    with pytest.raises(ValueError, match="not among allowed_changes"):
        ChangePlan.model_validate({"name": "x", "allowed_changes": ["recalibrate"], "method": "retrain"})
