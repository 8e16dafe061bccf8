"""The monitoring commands: a drift drill copy, the assistant's calls imported, bad input refused with exit 2."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
from typer.testing import CliRunner

from clinfm.cli import app
from tests.monitor.synthetic import ROUTINE


def test_inject_copies_with_the_code_renamed_from_the_date(clinic_dir, tmp_path):
    out = tmp_path / "drill"
    r = CliRunner().invoke(app, ["monitor", "inject", str(clinic_dir), "--out", str(out), "--from", "2020-07-01",
                                 "--rename", f"{ROUTINE}=X//NEW"])  # fmt: skip
    assert r.exit_code == 0, r.output
    events = pl.read_parquet(out / "data" / "*.parquet")
    before, after = (
        events.filter(pl.col("time") < dt.datetime(2020, 7, 1)),
        events.filter(pl.col("time") >= dt.datetime(2020, 7, 1)),
    )
    assert (before["code"] == ROUTINE).sum() > 0 and (after["code"] == ROUTINE).sum() == 0
    assert (after["code"] == "X//NEW").sum() > 0 and (out / "metadata" / "dataset.json").exists()
    again = CliRunner().invoke(
        app, ["monitor", "inject", str(clinic_dir), "--out", str(out), "--from", "2020-07-01"]
    )
    assert again.exit_code == 2 and "exists" in again.output
    bad = CliRunner().invoke(app, ["monitor", "inject", str(clinic_dir), "--out", str(tmp_path / "x"), "--from",
                                   "2020-07-01", "--rename", "NOEQUALS"])  # fmt: skip
    assert bad.exit_code == 2 and "OLD=NEW" in bad.output


def test_assistant_import_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    good = tmp_path / "calls.jsonl"
    t0 = dt.datetime(2026, 1, 1)
    good.write_text("\n".join(json.dumps({"call_id": f"c{i}", "time": (t0 + dt.timedelta(hours=i)).isoformat(),
                                          "latency_ms": 800.0, "tokens": 400, "statements": 8, "removed": 1,
                                          "rating": 4}) for i in range(40)))  # fmt: skip
    r = CliRunner().invoke(app, ["monitor", "assistant-import", str(good)])
    assert r.exit_code == 0 and "Stored 40" in r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text().splitlines()[0] + "\n" + '{"call_id": "x", "time": "yesterday"}\n')
    r = CliRunner().invoke(app, ["monitor", "assistant-import", str(bad)])
    assert r.exit_code == 2 and "line 2" in r.output
    page = tmp_path / "page.html"
    r = CliRunner().invoke(app, ["monitor", "report", "--model", "assistant", "--out", str(page)])
    assert r.exit_code == 0, r.output
    assert "0 incident(s) from 0 alert(s)" in r.output and 'id="plot-assistant_rates"' in page.read_text()
    policy = tmp_path / "p.yaml"
    policy.write_text("window: 30d\nnot_a_key: 1\n")
    r = CliRunner().invoke(app, ["monitor", "report", "--model", "assistant", "--policy", str(policy)])
    assert r.exit_code == 2 and "not_a_key" in r.output


def test_assistant_import_from_the_audit_log(tmp_path, monkeypatch):
    from clinfm.govern import audit

    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    details = {"prompt_tokens": 10, "completion_tokens": 5, "statements_kept": 3, "statements_removed": 1,
               "abstained": True, "latency_ms": 300}  # fmt: skip
    for _ in range(3):
        audit.record(
            "assist.answer", actor="dr.a", org="local", model_version_id="assistant@1", details=details
        )
    r = CliRunner().invoke(app, ["monitor", "assistant-import", "--from-audit"])
    assert r.exit_code == 0 and "Stored 3" in r.output, r.output
    neither = CliRunner().invoke(app, ["monitor", "assistant-import"])
    assert neither.exit_code == 2 and "--from-audit" in neither.output
