"""`clinfm ddx` and `clinfm treatment-check` through the CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from clinfm.cli import app


runner = CliRunner()


def test_treatment_check_flags_a_known_interaction_and_renal_dose():
    result = runner.invoke(app, ["treatment-check", "warfarin", "ibuprofen", "--egfr", "25", "--json"])
    assert result.exit_code == 0, result.output
    check = json.loads(result.output)
    assert {(i["ingredient_a"], i["ingredient_b"]) for i in check["interactions"]} == {("ibuprofen", "warfarin")}
    assert any(f["ingredient"] == "ibuprofen" for f in check["renal_flags"]) and check["safe"] is False


def test_ddx_interview_in_the_terminal():
    answers = "45\nmale\nchest pain\n1\n" + "1\n" * 5
    result = runner.invoke(app, ["ddx", "--budget", "5"], input=answers)
    assert result.exit_code == 0, result.output
    assert "Differential" in result.output and "Explanation" in result.output and "%" in result.output
