"""Each lifecycle gate refuses with the condition that failed, and a version reaches general through real approvals."""

from __future__ import annotations

import pytest
import yaml

from clinfm.govern import (
    GateError,
    LifecyclePolicy,
    attach_report,
    create_organization,
    create_user,
    get_model,
    list_entries,
    load_policy,
    promote,
    register_model,
    retire,
)
from clinfm.defaults import packaged
from clinfm.govern.lifecycle import PolicyError
from tests.govern.conftest import validation_report

REASON = "Reviewed the validation report and the silent-mode monitoring with the sepsis committee."


def make_org(db) -> str:
    create_organization("acme", "Acme Health", actor="root", db=db)
    create_user("acme", "olivia", ["clinical_owner"], actor="root", db=db)
    create_user("acme", "sam", ["data_scientist"], actor="root", db=db)
    create_user("acme", "robot", ["clinical_owner"], kind="service", actor="root", db=db)
    return "acme"


@pytest.fixture
def draft(db, run_dir, dataset_dir):
    return register_model("sepsis", run_dir, dataset_dir, "sam", org=make_org(db), db=db)


def refusal(version_id: str, to: str, actor: str, reason: str, db: str) -> str:
    with pytest.raises(GateError) as exc:
        promote(version_id, to, actor, reason, db=db)
    return str(exc.value)


def to_validated(mv, db):
    attach_report(mv.id, validation_report(), actor="sam", db=db)
    return promote(mv.id, "validated", "sam", "held-out validation attached", db=db)


def test_validated_needs_a_report(db, draft):
    assert "no 'validation' report is attached" in refusal(draft.id, "validated", "sam", "", db)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (validation_report(auroc_lo=0.65), "AUROC lower confidence bound 0.650 is below the minimum 0.700"),
        (validation_report(calibration=0.2), "calibration error 0.200 is above the maximum 0.100"),
        (validation_report(flag=True), "the four-fifths rule is flagged"),
        (
            {"models": {"clinfm": {"auroc": 0.9, "ece": 0.01}}, "fairness": {"four_fifths_flag": False}},
            "gives no AUROC confidence interval",
        ),
        (
            {"models": {"clinfm": {"auroc": {"value": 0.9, "ci": [0.85, 0.95]}, "ece": 0.01}}},
            "has no fairness.four_fifths_flag",
        ),
        ({"models": {"a": {"auroc": 0.9}, "b": {"auroc": 0.8}}}, "does not say which is this one"),
    ],
)
def test_validated_refuses_each_threshold(db, draft, report, expected):
    attach_report(draft.id, report, actor="sam", db=db)
    assert expected in refusal(draft.id, "validated", "sam", "", db)
    assert get_model(draft.id, db=db).state == "draft"


def test_refusal_lists_every_failed_condition_and_is_audited(db, draft):
    attach_report(draft.id, validation_report(auroc_lo=0.5, calibration=0.3, flag=True), actor="sam", db=db)
    with pytest.raises(GateError) as exc:
        promote(draft.id, "validated", "sam", "", db=db)
    assert len(exc.value.failures) == 3
    last = list_entries(db=db)[-1]
    assert last.action == "model.promote_refused" and last.details["failures"] == exc.value.failures


def test_silent_needs_a_clinical_owner_and_a_written_reason(db, draft):
    mv = to_validated(draft, db)
    assert "approver 'sam' lacks role clinical_owner (has: data_scientist)" in refusal(
        mv.id, "silent", "sam", REASON, db
    )
    assert "approver 'nobody' is not a user of this organization" in refusal(
        mv.id, "silent", "nobody", REASON, db
    )
    assert "is a service account" in refusal(mv.id, "silent", "robot", REASON, db)
    assert "the written reason has 2 characters; at least 20" in refusal(mv.id, "silent", "olivia", "ok", db)
    assert promote(mv.id, "silent", "olivia", REASON, db=db).state == "silent"


def test_states_cannot_be_skipped(db, draft):
    assert "general is reached only from pilot, and the version is draft" in refusal(
        draft.id, "general", "olivia", REASON, db
    )
    assert "unknown state 'production'" in refusal(draft.id, "production", "olivia", REASON, db)


def test_pilot_needs_a_silent_period_in_bounds(db, draft):
    mv = promote(to_validated(draft, db).id, "silent", "olivia", REASON, db=db)
    assert "no 'monitoring' summary has been attached since the version entered silent mode" in refusal(
        mv.id, "pilot", "olivia", REASON, db
    )
    attach_report(mv.id, {"days": 12, "alerts": []}, "monitoring", actor="sam", db=db)
    assert "covers 12 days; the policy requires 30" in refusal(mv.id, "pilot", "olivia", REASON, db)
    attach_report(
        mv.id, {"days": 31, "alerts": [{"metric": "auroc", "drop": 0.1}]}, "monitoring", actor="sam", db=db
    )
    assert "raised 1 alert(s); at most 0 allowed" in refusal(mv.id, "pilot", "olivia", REASON, db)
    attach_report(mv.id, {"days": 31, "alerts": []}, "monitoring", actor="sam", db=db)
    assert "lacks role clinical_owner" in refusal(mv.id, "pilot", "sam", REASON, db)
    assert promote(mv.id, "pilot", "olivia", REASON, db=db).state == "pilot"


def test_draft_to_general_with_real_approvals_then_retired(db, draft):
    mv = to_validated(draft, db)
    mv = promote(mv.id, "silent", "olivia", REASON, db=db)
    attach_report(
        mv.id, {"days": 30, "alerts": [], "metrics": {"auroc": 0.8}}, "monitoring", actor="sam", db=db
    )
    mv = promote(mv.id, "pilot", "olivia", REASON, db=db)
    mv = promote(mv.id, "general", "olivia", REASON, db=db)
    assert mv.state == "general"
    assert [(t.to_state, t.actor, t.approver_role) for t in mv.transitions] == [
        ("validated", "sam", None),
        ("silent", "olivia", "clinical_owner"),
        ("pilot", "olivia", "clinical_owner"),
        ("general", "olivia", "clinical_owner"),
    ]
    promotes = [e for e in list_entries(org="acme", db=db) if e.action == "model.promote"]
    assert [e.details["to"] for e in promotes] == ["validated", "silent", "pilot", "general"]

    assert "retiring needs a written reason" in refusal(mv.id, "retired", "sam", "", db)
    mv = retire(mv.id, "sam", "superseded by version 2", db=db)
    assert mv.state == "retired"
    assert "the version is retired" in refusal(mv.id, "general", "olivia", REASON, db)


def test_policy_file_equals_the_defaults_and_is_validated(tmp_path, monkeypatch):
    assert load_policy(packaged("policies/lifecycle-policy.yaml")) == LifecyclePolicy()
    stricter = tmp_path / "policy.yaml"
    stricter.write_text(yaml.safe_dump({"pilot": {"min_silent_days": 90}}))
    monkeypatch.setenv("CLINFM_LIFECYCLE_POLICY", str(stricter))
    assert load_policy().pilot.min_silent_days == 90
    stricter.write_text(yaml.safe_dump({"pilot": {"min_silent_dayz": 90}}))
    with pytest.raises(PolicyError, match="min_silent_dayz"):
        load_policy()
    stricter.write_text(yaml.safe_dump({"approval": {"role": "janitor"}}))
    with pytest.raises(PolicyError, match="janitor"):
        load_policy()


def test_the_policy_decides_the_thresholds(db, draft, tmp_path):
    attach_report(draft.id, validation_report(auroc_lo=0.78), actor="sam", db=db)
    strict = LifecyclePolicy.model_validate({"validated": {"min_auroc_lower_ci": 0.9}})
    with pytest.raises(GateError, match="below the minimum 0.900"):
        promote(draft.id, "validated", "sam", "", policy=strict, db=db)
    assert promote(draft.id, "validated", "sam", "", db=db).state == "validated"


def test_draft_to_general_on_postgresql(pg_db, run_dir, dataset_dir):
    mv = register_model("sepsis", run_dir, dataset_dir, "sam", org=make_org(pg_db), db=pg_db)
    test_draft_to_general_with_real_approvals_then_retired(pg_db, mv)


def validate_module_report() -> dict:
    """The shape ``clinfm.validate`` writes: several candidate models, subgroup rows per model, a cohort table."""

    def model(lo: float) -> dict:
        return {
            "auroc": {"value": lo + 0.04, "ci": [lo, lo + 0.08]},
            "ece": {"value": 0.02, "ci": [0.01, 0.04]},
            "threshold": 0.3,
            "fit_seconds": 1.2,
        }

    return {
        "task": "mortality_30d",
        "task_config": {"name": "mortality_30d", "prediction_time": "admission + 24h", "min_age": 18},
        "split": "held_out",
        "cohort": {"held_out": {"labels": 800, "subjects": 700, "positives": 80}},
        "models": {
            "count_gbm": model(0.72),
            "count_lr": model(0.70),
            "fm_probe": model(0.75),
            "fm_zeroshot": model(0.6),
        },
        "subgroups": [
            {"model": m, "attribute": "sex", "group": g, "n": 400, "auroc": {"value": 0.7, "ci": [0.6, 0.8]}}
            for m in ("count_gbm", "fm_probe")
            for g in ("F", "M")
        ],
        "fairness": {"four_fifths_flag": False, "worst_gap": None},
    }


def test_a_clinfm_validate_report_needs_its_primary_model_named(db, draft):
    report = validate_module_report()
    attach_report(draft.id, report, actor="sam", db=db)
    assert "does not say which is this one: attach it with primary_model=" in refusal(
        draft.id, "validated", "sam", "", db
    )
    with pytest.raises(ValueError, match="not among the report's models"):
        attach_report(draft.id, report, actor="sam", primary_model="fm_nope", db=db)
    attach_report(draft.id, report, actor="sam", primary_model="fm_probe", db=db)
    mv = promote(draft.id, "validated", "sam", "", db=db)
    assert mv.state == "validated"

    from clinfm.govern.reports import read_validation

    summary = read_validation(mv.latest_report("validation").document, mv.name)
    assert summary.primary == "fm_probe" and summary.n == 800
    assert set(summary.metrics) == {"auroc", "calibration_error"}  # threshold and fit time are not metrics
    assert [(s.attribute, s.group) for s in summary.subgroups] == [("sex", "F"), ("sex", "M")]

    from clinfm.govern.card import build_card

    card = build_card(get_model(mv.id, db=db))
    by_key = {a["key"]: a for a in card["hti1_source_attributes"]}
    assert "min_age = 18" in by_key["inclusion_exclusion"]["value"]
    assert "held_out: 800 labels, 700 subjects, 80 positive" in by_key["inclusion_exclusion"]["value"]
    assert list(card["validation"]["models"]["fm_probe"]) == ["auroc", "calibration_error"]
