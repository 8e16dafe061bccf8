"""Structured de-identification: pseudonyms, date shifts, Safe Harbor, ZIP3, k-anonymity, refusals."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from clinfm.cli import app
from clinfm.data.dataset import validate_dataset
from clinfm.deid import structured as s

SECRET = b"k" * 32
OTHER = b"o" * 32


def test_pseudonyms_are_keyed_stable_and_int63():
    assert s.pseudonym(42, SECRET) == s.pseudonym(42, SECRET)
    assert s.pseudonym(42, SECRET) != s.pseudonym(42, OTHER)
    assert s.pseudonym(42, SECRET) != s.pseudonym(43, SECRET)
    assert all(0 <= s.pseudonym(i, SECRET) < 2**63 for i in range(1000))
    assert len({s.pseudonym(i, SECRET) for i in range(10_000)}) == 10_000


def test_date_shifts_are_within_a_year_and_never_zero():
    shifts = [s.date_shift_days(i, SECRET) for i in range(5000)]
    assert min(shifts) >= -365 and max(shifts) <= 365 and 0 not in shifts
    assert min(shifts) < -300 and max(shifts) > 300  # uses the whole range


@pytest.mark.parametrize(("value", "expected"), [("02139", "021"), ("03601-1234", "000"), ("89301", "000"), ("12", "000")])
def test_zip3_and_restricted_areas(value, expected):
    assert s.zip3(value) == expected


def _shard(rows):
    return pl.DataFrame(
        rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                      "numeric_value": pl.Float32, "text_value": pl.String, "unit": pl.String},
        orient="row",
    )  # fmt: skip


D = dt.datetime
ROWS = [
    (7, None, "GENDER//F", None, None, None),
    (7, None, "ZIP//02139", None, None, None),
    (7, D(1950, 6, 15), "MEDS_BIRTH", None, None, None),
    (7, D(2020, 3, 1, 8, 30), "VISIT//IP//START", None, None, None),
    (7, D(2020, 3, 4, 12), "VISIT//IP//END", None, None, None),
    (8, None, "ZIP//69201", None, None, None),
    (8, D(1920, 1, 2), "MEDS_BIRTH", None, None, None),
    (8, D(2019, 5, 5), "LOINC//2160-0", 1.1, None, "mg/dL"),
]


def test_shift_policy_keeps_intervals_and_caps_ages_over_89():
    out, counts = s.deidentify_shard(_shard(ROWS), SECRET, "shift", scrubber=None)
    a = out.filter(pl.col("subject_id") == s.pseudonym(7, SECRET))
    start, end = a.filter(pl.col("code") == "VISIT//IP//START")["time"].item(), a.filter(pl.col("code") == "VISIT//IP//END")["time"].item()
    assert end - start == D(2020, 3, 4, 12) - D(2020, 3, 1, 8, 30)  # interval kept
    assert start == D(2020, 3, 1, 8, 30) + dt.timedelta(days=s.date_shift_days(7, SECRET))
    birth = a.filter(pl.col("code") == "MEDS_BIRTH")["time"].item()
    assert start - birth == D(2020, 3, 1, 8, 30) - D(1950, 6, 15)  # age kept
    b = out.filter(pl.col("subject_id") == s.pseudonym(8, SECRET))
    lab = b.filter(pl.col("code") == "LOINC//2160-0")["time"].item()
    assert b.filter(pl.col("code") == "MEDS_BIRTH")["time"].item() == D(lab.year - 90, 1, 1)  # 99 -> "90+"
    assert counts.births_collapsed_over_89 == 1 and counts.subjects_pseudonymized == 2
    assert counts.events_dates_shifted == 5
    assert set(out["code"]) >= {"ZIP//021", "ZIP//000"} and not any(c in set(out["code"]) for c in ("ZIP//02139", "ZIP//69201"))
    assert counts.zip_codes_truncated == 1 and counts.zip_codes_zeroed_restricted == 1
    assert 7 not in out["subject_id"].to_list() and 8 not in out["subject_id"].to_list()


def test_safe_harbor_keeps_only_years():
    out, counts = s.deidentify_shard(_shard(ROWS), SECRET, "safe-harbor", scrubber=None)
    times = out.filter(pl.col("time").is_not_null())["time"].to_list()
    assert all(t.month == 1 and t.day == 1 and t.hour == 0 for t in times)
    assert D(2020, 1, 1) in times and D(2019, 1, 1) in times
    assert counts.events_dates_truncated_to_year == 5 and counts.events_dates_shifted == 0


def test_secret_is_required_and_checked(tmp_path):
    with pytest.raises(s.SecretError, match="needs --secret-file"):
        s.read_secret(None)
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(s.SecretError, match="holds 3 bytes; expected at least 32"):
        s.read_secret(short)
    made = s.create_secret(tmp_path / "secret")
    assert made.stat().st_mode & 0o777 == 0o600
    assert len(s.read_secret(made)) == 64
    with pytest.raises(FileExistsError):
        s.create_secret(made)


def test_eunomia_deid_through_the_cli(eunomia_meds, tmp_path):
    runner = CliRunner()
    refused = runner.invoke(app, ["deid", str(eunomia_meds), "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "needs --secret-file" in refused.output and not (tmp_path / "x").exists()
    secret = tmp_path / "secret"
    assert runner.invoke(app, ["deid-secret", str(secret)]).exit_code == 0
    out = tmp_path / "deid"
    result = runner.invoke(app, ["deid", str(eunomia_meds), "--out", str(out), "--secret-file", str(secret)])
    assert result.exit_code == 0, result.output
    summary = validate_dataset(out)
    source = pl.read_parquet(eunomia_meds / "data")
    deid = pl.read_parquet(out / "data")
    assert summary.subjects == 2694 and deid.height == source.height
    assert set(deid["subject_id"]).isdisjoint(set(source["subject_id"]))
    report = json.loads((out / "deid_report.json").read_text())
    assert report["changed"]["subject_ids_pseudonymized"] == 2694
    assert report["k_anonymity"]["quasi_identifiers"] == ["birth_year", "sex"]
    assert report["k_anonymity"]["k"] >= 1 and report["residual_risks"]
    assert "De-identification report" in (out / "deid_report.html").read_text()
    meta = json.loads((out / "metadata/dataset.json").read_text())
    assert meta["clinfm"]["deid"]["policy"] == "shift" and "source_path" not in meta["clinfm"]
    assert not (out / "quarantine.parquet").exists()
    # same secret, same pseudonyms: a second run gives the same data bytes
    again = tmp_path / "deid2"
    runner.invoke(app, ["deid", str(eunomia_meds), "--out", str(again), "--secret-file", str(secret)])
    assert (again / "data/0.parquet").read_bytes() == (out / "data/0.parquet").read_bytes()


def test_bad_policy_is_named(eunomia_meds, tmp_path):
    secret = s.create_secret(tmp_path / "secret")
    result = CliRunner().invoke(app, ["deid", str(eunomia_meds), "--out", str(tmp_path / "o"),
                                      "--secret-file", str(secret), "--policy", "yolo"])  # fmt: skip
    assert result.exit_code == 2 and "'yolo' is not one of shift, safe-harbor" in result.output
