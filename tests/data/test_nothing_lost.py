"""Property: whatever is corrupted, every source record is either converted or quarantined, once."""

from __future__ import annotations

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinfm.data.dataset import build_dataset
from clinfm.data.ingest import omop

from .test_ingest_omop import PERSON, write_cdm

GOOD = ("1", "201826", "2020-01-03", "E11.9")
CORRUPTIONS = {
    "good": lambda r: r,
    "bad_date": lambda r: (r[0], r[1], "2020-02-30", r[3]),
    "no_person": lambda r: ("", r[1], r[2], r[3]),
    "text_person": lambda r: ("x1", r[1], r[2], r[3]),
    "unknown_concept_no_source": lambda r: (r[0], "424242", r[2], ""),
    "unknown_concept_with_source": lambda r: (r[0], "424242", r[2], "LOCAL"),  # kept, local code
    "empty_date": lambda r: (r[0], r[1], "", r[3]),
    "unicode_garbage": lambda r: (r[0], r[1], "\u00e9t\u00e9", r[3]),
}
KEPT = {"good", "unknown_concept_with_source"}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(sorted(CORRUPTIONS)), min_size=1, max_size=40))
def test_nothing_is_lost_under_random_corruption(tmp_path_factory, kinds):
    rows = [CORRUPTIONS[k](GOOD) for k in kinds]
    body = "".join(f"{i + 1},{p},{c},{d},{s}\n" for i, (p, c, d, s) in enumerate(rows))
    folder = tmp_path_factory.mktemp("cdm")
    cdm = write_cdm(
        folder / "cdm",
        person=PERSON,
        condition_occurrence="condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
        "condition_source_value\n" + body,
    )
    summary = build_dataset(omop.plan(csv_dir=cdm), folder / "meds")
    counts = summary.reconciliation["condition_occurrence"]
    kept = sum(k in KEPT for k in kinds)
    assert counts.read == len(rows)
    assert counts.converted == kept
    assert counts.quarantined == len(rows) - kept
    quarantine = pl.read_parquet(folder / "meds" / "quarantine.parquet")
    assert quarantine.height == len(rows) - kept
    locators = set(quarantine["locator"].to_list())
    expected = {f"row {i + 1} (condition_occurrence_id={i + 1})" for i, k in enumerate(kinds) if k not in KEPT}
    assert locators == expected
    events = pl.read_parquet(folder / "meds" / "data")
    assert events.filter(pl.col("time").is_not_null() & (pl.col("code") != "MEDS_BIRTH")).height == kept
