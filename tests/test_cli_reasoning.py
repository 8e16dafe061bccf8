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


def test_ddx_reads_the_record_and_never_asks_it_again(tmp_path):
    import datetime as dt

    from clinfm import schema
    from tests.tasks.synthetic import write_dataset

    rows = [(5, None, "GENDER//M"), (5, dt.datetime(1970, 1, 1), schema.BIRTH),
            (5, dt.datetime(2020, 1, 1), "ICD10CM//J44.1"), (5, dt.datetime(2021, 1, 1), "SNOMED//449868002")]
    data = write_dataset(tmp_path / "meds", rows)
    answers = "chest pain\n1\n" + "2\n" * 15  # complaint, then "no" to every question; age and sex come from the record
    result = runner.invoke(app, ["ddx", "--budget", "15", "--record", str(data), "--subject", "5"], input=answers)
    assert result.exit_code == 0, result.output
    assert "from the record" in result.output and "chronic obstructive pulmonary disease" in result.output.lower()
    assert "Age in years" not in result.output and "Do you smoke cigarettes?" in result.output
    assert "Do you smoke cigarettes? (number" not in result.output  # shown from the record, never asked
    assert "patients may deny a finding they have" in result.output  # scored with the answer-noise model
    bad = runner.invoke(app, ["ddx", "--record", str(data)])
    assert bad.exit_code == 2 and "go together" in bad.output
