"""Fixtures: a registry file per test, a tiny run directory and MEDS dataset, reports, and a PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clinfm import schema
from clinfm.govern.db import dispose_engines


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Nothing a test does reaches ~/.clinfm or a configured database."""
    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLINFM_DATABASE_URL", raising=False)
    monkeypatch.delenv("CLINFM_LIFECYCLE_POLICY", raising=False)
    yield
    dispose_engines()


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def run_dir(tmp_path) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "model.safetensors").write_bytes(os.urandom(256))
    (run / "tokenizer.json").write_text(
        json.dumps({"vocab": ["GENDER//F", "GENDER//M", "MEDS_BIRTH", "LOINC/1"]})
    )
    (run / "config.json").write_text(json.dumps({"n_layer": 2, "n_embd": 32, "git_commit": "abc123"}))
    (run / "checkpoints" / "step-10.pt").write_bytes(b"ckpt")
    return run


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    """A de-identified MEDS dataset of 40 subjects: sex and race codes, births, one lab each."""
    root = tmp_path / "meds"
    (root / "data").mkdir(parents=True)
    (root / "metadata").mkdir()
    rows = {c: [] for c in schema.EVENT_COLUMNS}
    for sid in range(1, 41):
        for code, time in (
            (f"GENDER//{'F' if sid % 2 else 'M'}", None),
            (f"RACE//{'WHITE' if sid % 3 else 'ASIAN'}", None),
            ("MEDS_BIRTH", dt.datetime(1950 + sid, 1, 1)),
            ("LOINC/1", dt.datetime(2020, 1, 1)),
        ):
            for col, value in zip(schema.EVENT_COLUMNS, (sid, time, code, None, None, None)):
                rows[col].append(value)
    pq.write_table(pa.table(rows, schema=schema.EVENT_SCHEMA), root / "data" / "0.parquet")
    meta = {
        "dataset_name": "tiny-deid",
        "clinfm": {
            "source": "synthetic",
            "row_counts": {"subjects": 40, "events": 160},
            "deid": {
                "policy": "shift",
                "secret_fingerprint": "f00d",
                "report": "deid_report.json",
                "intervals_preserved": True,
            },
        },
    }
    (root / "metadata" / "dataset.json").write_text(json.dumps(meta))
    report = {
        "policy": "shift",
        "changed": {"subject_ids_pseudonymized": 40},
        "k_anonymity": {"k": 3, "classes": 9, "smallest_classes": [{"birth_year": 1951, "size": 1}]},
        "residual_risks": ["Dates are shifted, not removed: this is not Safe Harbor."],
    }
    (root / "deid_report.json").write_text(json.dumps(report))
    return root


def validation_report(auroc_lo: float = 0.78, calibration: float = 0.03, flag: bool = False) -> dict:
    return {
        "task": "mortality_30d",
        "n": 1200,
        "models": {
            "clinfm": {
                "auroc": {"value": auroc_lo + 0.04, "ci": [auroc_lo, auroc_lo + 0.08]},
                "calibration_error": {"value": calibration, "ci": [calibration / 2, calibration * 2]},
            },
            "lightgbm_baseline": {"auroc": {"value": 0.75, "ci": [0.71, 0.79]}, "ece": 0.05},
        },
        "primary_model": "clinfm",
        "subgroups": [
            {"attribute": "sex", "group": "F", "n": 600, "auroc": {"value": 0.82, "ci": [0.77, 0.86]}},
            {"attribute": "sex", "group": "M", "n": 60, "auroc": {"value": 0.80, "ci": [0.70, 0.88]}},
        ],
        "fairness": {"four_fifths_flag": flag, "min_selection_rate_ratio": 0.9 if not flag else 0.6},
    }


@pytest.fixture
def good_report() -> dict:
    return validation_report()


# --- PostgreSQL --------------------------------------------------------------------------------------------
@pytest.fixture
def pg_db(postgres_url):
    """A fresh database on the throwaway server for one test."""
    import psycopg

    name = f"t_{os.urandom(4).hex()}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    dispose_engines()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
