"""The CLI end to end: ingest Eunomia, stats --json, timeline, validate, and clear errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from clinfm.cli import app

runner = CliRunner()


def test_ingest_eunomia_then_stats_and_timeline(tmp_path):
    out = tmp_path / "eunomia"
    result = runner.invoke(app, ["ingest", "omop", "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "Reconciliation" in result.output and "2,694" in result.output
    assert "quarantine row(s)" in result.output

    stats = runner.invoke(app, ["stats", str(out), "--json"])
    assert stats.exit_code == 0, stats.output
    s = json.loads(stats.output)
    assert s["subjects"] == 2694 and s["events"] > 200_000
    assert {v["vocabulary"] for v in s["vocabularies"]} >= {"SNOMED", "RxNorm", "LOINC", "VISIT", "MEDS_BIRTH"}
    assert s["quarantined"] == 2

    shown = runner.invoke(app, ["stats", str(out)])
    assert "Codes by vocabulary" in shown.output

    ok = runner.invoke(app, ["validate", str(out)])
    assert ok.exit_code == 0 and "valid" in ok.output

    line = runner.invoke(app, ["timeline", str(out), "1", "--limit", "5"])
    assert line.exit_code == 0, line.output
    assert "Subject 1" in line.output and "MEDS_BIRTH" in line.output and "more events" in line.output


def test_errors_name_the_value_and_what_was_expected(tmp_path):
    missing = runner.invoke(app, ["stats", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a MEDS dataset" in missing.output
    bad_source = runner.invoke(app, ["ingest", "omop", "--duckdb", str(tmp_path / "x.duckdb"), "--out", str(tmp_path / "o")])
    assert bad_source.exit_code == 2 and "x.duckdb" in bad_source.output and "does not exist" in bad_source.output
    assert not (tmp_path / "o").exists()


def test_unknown_subject_is_a_clear_error(eunomia_meds):
    result = runner.invoke(app, ["timeline", str(eunomia_meds), "999999999"])
    assert result.exit_code == 2 and "subject 999999999 is not in" in result.output
