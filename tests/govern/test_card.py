"""Model cards come from the registry and carry all 31 HTI-1 source attributes, each filled or owned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinfm.govern import (
    attach_report,
    authenticate,
    bootstrap_demo,
    get_model,
    list_entries,
    register_model,
    render_card,
    set_card_facts,
    verify_chain,
    write_card,
)
from clinfm.govern.card import build_card
from clinfm.govern.hti1 import ATTRIBUTES, GROUPS


def test_the_31_attributes_in_their_nine_groups():
    assert len(ATTRIBUTES) == 31
    per_group = {g: sum(a.group == g for a in ATTRIBUTES) for g in GROUPS}
    assert per_group == {1: 4, 2: 4, 3: 2, 4: 4, 5: 2, 6: 4, 7: 5, 8: 4, 9: 2}
    assert ATTRIBUTES[0].cfr == "45 CFR 170.315(b)(11)(iv)(B)(1)(i)"
    assert ATTRIBUTES[-1].cfr == "45 CFR 170.315(b)(11)(iv)(B)(9)(ii)"


def test_a_bare_model_card_marks_every_unknown_attribute_with_its_owner(db, run_dir, dataset_dir):
    mv = register_model("m", run_dir, dataset_dir, "alice", db=db)
    card = json.loads(render_card(mv.id, "json", db=db))
    attrs = card["hti1_source_attributes"]
    assert len(attrs) == 31 and [a["number"] for a in attrs] == list(range(1, 32))
    for a in attrs:
        assert a["status"] in ("supplied", "platform", "partial", "unknown") and a["owner"]
        assert a["value"] or a["note"].startswith("Unknown to the platform: the ")
    by_key = {a["key"]: a for a in attrs}
    assert (
        by_key["intended_use"]["status"] == "unknown" and by_key["intended_use"]["owner"] == "clinical owner"
    )
    assert by_key["demographic_representativeness"]["status"] == "partial"
    assert "sex: F 20 (50%), M 20 (50%)" in by_key["demographic_representativeness"]["value"]
    assert "sex, date of birth" in by_key["demographic_inputs"]["value"]
    assert card["validation"] is None
    assert "No validation report is attached: its performance is unknown." in card["limitations"]


def test_a_validated_card_shows_metrics_subgroups_and_supplied_facts(db, run_dir, dataset_dir, good_report):
    mv = register_model("m", run_dir, dataset_dir, "alice", db=db)
    attach_report(mv.id, good_report, actor="alice", db=db)
    set_card_facts(
        mv.id,
        {
            "intended_use": "Flag adults at high 30-day mortality risk for palliative review.",
            "developer": "Acme Health data science, ds@acme.example",
        },
        actor="olivia",
        db=db,
    )
    with pytest.raises(ValueError, match="unknown card fact"):
        set_card_facts(mv.id, {"intended_usage": "x"}, actor="olivia", db=db)
    card = build_card(get_model(mv.id, db=db))
    by_key = {a["key"]: a for a in card["hti1_source_attributes"]}
    assert by_key["intended_use"]["status"] == "supplied"
    assert by_key["internal_validity"]["status"] == "platform"
    assert "auroc 0.820 (0.780–0.860)" in by_key["internal_validity"]["value"]
    assert "four-fifths rule not flagged" in by_key["internal_fairness"]["value"]
    assert by_key["external_validity"]["status"] == "unknown"
    assert card["validation"]["gate_failures"] == []
    assert any("fewer than 100 subjects for: sex=M (n=60)" in x for x in card["limitations"])
    assert any("no external validation" in x for x in card["limitations"])

    md = render_card(mv.id, "md", db=db)
    assert "| clinfm (this version) | 0.820 (0.780–0.860) |" in md
    assert "| sex | M | 60 | 0.800 (0.700–0.880) |" in md
    assert md.count("[170.315(b)(11)(iv)(B)(") == 31
    html = render_card(mv.id, "html", db=db)
    assert html.count("[170.315(b)(11)(iv)(B)(") == 31 and "Acme Health data science" in html
    assert "<td>clinfm (this version)</td>\n<td>0.820 (0.780–0.860)</td>" in html  # the Markdown table, rendered
    with pytest.raises(ValueError, match="card format"):
        render_card(mv.id, "pdf", db=db)


def test_a_tolerant_reader_says_what_the_report_lacks(db, run_dir, dataset_dir):
    mv = register_model("m", run_dir, dataset_dir, "alice", db=db)
    attach_report(mv.id, {"models": {"clinfm": {"roc_auc": 0.8}}}, actor="alice", db=db)
    val = json.loads(render_card(mv.id, "json", db=db))["validation"]
    assert val["models"]["clinfm"]["auroc"]["value"] == 0.8
    assert {
        "models.clinfm.calibration_error",
        "subgroups (no subgroup table)",
        "fairness.four_fifths_flag",
        "task",
    } <= set(val["missing"])


def test_write_card_writes_three_formats(db, run_dir, dataset_dir, tmp_path):
    mv = register_model("m", run_dir, dataset_dir, "alice", db=db)
    paths = write_card(mv.id, tmp_path / "card", db=db)
    assert sorted(paths) == ["html", "json", "md"]
    assert json.loads(paths["json"].read_text())["model"]["id"] == mv.id
    assert paths["md"].read_text().startswith("# Model card: m v1")


def test_bootstrap_demo_registers_validates_and_issues_a_key(db, run_dir, dataset_dir, good_report, tmp_path):
    out = bootstrap_demo(run_dir, dataset_dir, good_report, db=db)
    assert out["state"] == "validated" and out["gate_failures"] == []
    principal = authenticate(out["api_key"], db=db)
    assert (principal.org_id, principal.roles) == ("demo", ["api_client"])
    card = json.loads(Path(out["card_paths"]["json"]).read_text())
    assert card["model"]["state"] == "validated"
    assert {a["key"]: a["status"] for a in card["hti1_source_attributes"]}["intended_use"] == "supplied"
    assert out["card_paths"]["md"].startswith(str(tmp_path / "home" / "cards"))
    again = bootstrap_demo(
        run_dir, dataset_dir, {"models": {"clinfm": {"auroc": 0.6}}}, db=db
    )  # idempotent set-up
    assert again["state"] == "draft" and again["gate_failures"] and again["model"] == "clinfm-demo v2"
    assert verify_chain(db=db).ok
    assert out["api_key"] not in json.dumps([e.model_dump(mode="json") for e in list_entries(db=db)])


def test_external_validation_and_monitoring_fill_their_attributes(db, run_dir, dataset_dir, good_report):
    mv = register_model("m", run_dir, dataset_dir, "alice", db=db)
    external = {
        **good_report,
        "setting": "external",
        "data_source": "St Elsewhere ICU 2019-2021",
        "conducted_by": "St Elsewhere informatics",
        "method": "Temporal and geographic hold-out, no re-fitting",
    }
    attach_report(mv.id, good_report, actor="alice", db=db)
    attach_report(mv.id, external, "external_validation", actor="alice", db=db)
    attach_report(
        mv.id, {"days": 30, "alerts": [], "metrics": {"auroc": 0.79}}, "monitoring", actor="alice", db=db
    )
    card = json.loads(render_card(mv.id, "json", db=db))
    by_key = {a["key"]: a for a in card["hti1_source_attributes"]}
    assert by_key["external_data_source"]["value"] == "St Elsewhere ICU 2019-2021"
    assert by_key["external_tester"]["status"] == "platform"
    assert by_key["external_process"]["value"].startswith("Temporal")
    assert "auroc 0.820 (0.780–0.860)" in by_key["external_validity"]["value"]
    assert by_key["external_representativeness"]["value"] == "Subgroup sizes: sex=F: n=600, sex=M: n=60"
    assert by_key["local_validity"]["value"].startswith("auroc 0.790 over 30 days of monitoring")
    assert not any("no external validation" in x for x in card["limitations"])
