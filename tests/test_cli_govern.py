"""A model from draft to general through the CLI, with real reports and approvals; the audit catches tampering.

The model is the count model on the synthetic clinic (fast to train); the validation report comes from
`clinfm evaluate`, the monitoring summary from `clinfm monitor replay` + `report --attach`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest
from typer.testing import CliRunner

from clinfm.cli import app
from clinfm.defaults import packaged
from tests.conftest import REPO
from tests.monitor.synthetic import clinic

runner = CliRunner()


def ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"clinfm {' '.join(args)}\n{result.output}"
    return result.output


@pytest.mark.slow
def test_draft_to_general_through_the_cli(tmp_path, monkeypatch):
    from clinfm.monitor.scorer import save_scorer, train_scorer
    from clinfm.tasks.config import load_task

    home = tmp_path / "home"
    monkeypatch.setenv("CLINFM_HOME", str(home))
    # The synthetic clinic's risk rises with age, so age bands are flagged by the four-fifths rule (the default
    # policy refuses that; here the committee reviews subgroup flags instead): the site's own policy file.
    policy = tmp_path / "policy.yaml"
    policy.write_text(packaged("policies/lifecycle-policy.yaml").read_text().replace(
        "require_no_four_fifths_flag: true", "require_no_four_fifths_flag: false"))  # fmt: skip
    monkeypatch.setenv("CLINFM_LIFECYCLE_POLICY", str(policy))
    dataset = clinic(tmp_path / "clinic")
    run_dir = save_scorer(train_scorer(dataset, load_task("long_length_of_stay"), before=dt.datetime(2020, 1, 1)),
                          tmp_path / "run")  # fmt: skip

    unknown = runner.invoke(app, ["registry", "show", "mv_nope"])
    assert unknown.exit_code == 2 and "no model version 'mv_nope'" in unknown.output
    ok(["access", "create-org", "local"])
    ok(["access", "create-user", "local", "sam", "--role", "data_scientist"])
    ok(["access", "create-user", "local", "olivia", "--role", "clinical_owner"])
    out = ok(["registry", "register", "los-count", str(run_dir), str(dataset), "--actor", "sam"])
    version = out.split(" as ")[1].split()[0]

    refused = runner.invoke(app, ["registry", "promote", version, "--to", "validated", "--reason", "x", "--actor", "sam"])
    assert refused.exit_code == 1 and "validation" in refused.output  # no report yet: the gate says so
    monkeypatch.delenv("CLINFM_LIFECYCLE_POLICY")
    with_flag = tmp_path / "flagged.html"
    ok(["evaluate", str(dataset), "--task", "long_length_of_stay", "--report", str(with_flag), "--models", "count_gbm"])
    ok(["registry", "attach", version, str(with_flag.with_suffix(".json")), "--primary-model", "count_gbm", "--actor", "sam"])
    flagged = runner.invoke(app, ["registry", "promote", version, "--to", "validated", "--reason", "x" * 25, "--actor", "sam"])
    assert flagged.exit_code == 1 and "four-fifths" in flagged.output  # the default policy refuses a subgroup flag
    monkeypatch.setenv("CLINFM_LIFECYCLE_POLICY", str(policy))

    report = tmp_path / "validation.html"
    ok(["evaluate", str(dataset), "--task", "long_length_of_stay", "--report", str(report), "--models", "count_gbm"])
    ok(["registry", "attach", version, str(report.with_suffix(".json")), "--primary-model", "count_gbm", "--actor", "sam"])
    ok(["registry", "promote", version, "--to", "validated", "--reason", "held-out AUROC within policy", "--actor", "sam"])

    not_owner = runner.invoke(app, ["registry", "promote", version, "--to", "silent", "--reason", "go", "--actor", "sam"])
    assert not_owner.exit_code == 1 and "clinical_owner" in not_owner.output
    ok(["registry", "promote", version, "--to", "silent", "--reason", "silent run in ward 4", "--actor", "olivia"])

    # quarter-long monitoring windows (the site's monitoring policy): a few weeks of one clinic is too noisy
    monitoring = tmp_path / "monitoring.yaml"
    packaged_policy = packaged("policies/monitoring-policy.yaml").read_text()
    assert "window: 30d" in packaged_policy  # the replacement below must take effect
    monitoring.write_text(packaged_policy.replace("window: 30d", "window: 91d"))
    monkeypatch.setenv("CLINFM_MONITORING_POLICY", str(monitoring))
    ok(["monitor", "replay", str(dataset), "--task", "long_length_of_stay", "--model", version,
        "--from", "2020-01-01", "--to", "2021-01-01", "--every", "7d"])  # fmt: skip
    ok(["monitor", "report", "--model", version, "--out", str(tmp_path / "monitoring.html"), "--attach"])
    ok(["registry", "promote", version, "--to", "pilot", "--reason", "silent period in bounds", "--actor", "olivia"])
    ok(["registry", "promote", version, "--to", "general", "--reason", "pilot reviewed by committee", "--actor", "olivia"])
    shown = json.loads(ok(["registry", "show", version]))
    assert shown["state"] == "general"

    cards = ok(["card", version, "--out", str(tmp_path / "cards")])
    assert "html" in cards and (tmp_path / "cards" / version).is_dir()
    assert "audit chain intact" in ok(["audit", "verify"])

    with sqlite3.connect(home / "registry.db") as con:  # edit one approval's reason in the database file
        con.execute("UPDATE audit_log SET details = replace(details, 'ward 4', 'ward 5') WHERE details LIKE '%ward 4%'")
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1 and "audit chain broken at entry" in broken.output
