"""The registry records what a model version is made of, what it learned from, and its reports, all audited."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clinfm import __version__
from clinfm.govern import NotFound, attach_report, get_model, list_entries, list_models, register_model


def test_register_records_artifacts_dataset_config_and_code(db, run_dir, dataset_dir):
    mv = register_model("sepsis", run_dir, dataset_dir, "alice", db=db)

    assert mv.state == "draft" and mv.version == 1 and mv.org_id == "local"
    assert mv.weights_sha256 == hashlib.sha256((run_dir / "model.safetensors").read_bytes()).hexdigest()
    assert mv.tokenizer_sha256 == hashlib.sha256((run_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert mv.config_sha256 == hashlib.sha256((run_dir / "config.json").read_bytes()).hexdigest()
    assert set(mv.artifacts["files"]) == {
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "checkpoints/step-10.pt",
    }
    assert mv.artifacts["input_variables"]["sex"] is True and mv.artifacts["input_variables"]["race"] is False
    assert mv.training_config == {
        "source": "config.json",
        "values": {"n_layer": 2, "n_embd": 32, "git_commit": "abc123"},
    }
    assert mv.code_version == __version__ and mv.git_commit == "abc123"

    ds = mv.dataset
    assert ds["events"] == 160 and ds["shards"] == 1 and ds["row_counts"]["subjects"] == 40
    assert ds["deid"]["policy"] == "shift" and ds["deid"]["k_anonymity"]["k"] == 3
    assert (
        "smallest_classes" not in ds["deid"]["k_anonymity"]
    )  # quasi-identifier rows stay out of the registry
    assert ds["deid"]["residual_risks"]
    assert ds["demographics"]["sex"] == {"F": 20, "M": 20}
    assert (
        ds["demographics"]["race"] == {"ASIAN": 13, "WHITE": 27}
        and ds["demographics"]["birth_recorded"] == 40
    )


def test_dataset_content_hash_follows_the_parquet_content(db, run_dir, dataset_dir):
    first = register_model("m", run_dir, dataset_dir, "alice", db=db)
    shard = dataset_dir / "data" / "0.parquet"
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, table.num_rows - 1), shard)
    second = register_model("m", run_dir, dataset_dir, "alice", db=db)
    assert second.version == 2
    assert second.dataset["content_sha256"] != first.dataset["content_sha256"]
    assert second.dataset["events"] == 159


def test_small_demographic_cells_are_suppressed(db, run_dir, dataset_dir):
    shard = dataset_dir / "data" / "0.parquet"
    table = pq.read_table(shard)
    extra = pa.table(
        {
            "subject_id": [999],
            "time": [None],
            "code": ["RACE//OTHER"],
            "numeric_value": [None],
            "text_value": [None],
            "unit": [None],
        }
    ).cast(table.schema)
    pq.write_table(pa.concat_tables([table, extra]), shard)
    mv = register_model("m", run_dir, dataset_dir, "alice", db=db)
    assert mv.dataset["demographics"]["race"]["OTHER"] == "<11"


def test_missing_inputs_are_named(db, run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no data/ folder"):
        register_model("m", run_dir, tmp_path / "nowhere", "alice", db=db)
    with pytest.raises(FileNotFoundError, match="run directory"):
        register_model("m", tmp_path / "norun", tmp_path, "alice", db=db)


def test_reports_attach_from_dict_text_or_file(db, run_dir, dataset_dir, good_report, tmp_path):
    mv = register_model("m", run_dir, dataset_dir, "alice", db=db)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(good_report))
    attach_report(mv.id, good_report, actor="alice", db=db)
    attach_report(mv.id, json.dumps({"days": 3, "alerts": []}), "monitoring", actor="alice", db=db)
    third = attach_report(mv.id, path, actor="alice", db=db)
    got = get_model(mv.id, db=db)
    assert [r.kind for r in got.reports] == ["validation", "monitoring", "validation"]
    assert got.latest_report("validation").id == third.id and third.document == good_report
    with pytest.raises(ValueError, match="report kind"):
        attach_report(mv.id, good_report, "Validation Report", actor="alice", db=db)
    with pytest.raises(NotFound):
        attach_report("mv_nope", good_report, actor="alice", db=db)


def test_every_registry_change_is_audited(db, run_dir, dataset_dir, good_report):
    mv = register_model("m", run_dir, dataset_dir, "alice", db=db)
    attach_report(mv.id, good_report, actor="bob", db=db)
    actions = [(e.action, e.actor, e.model_version_id) for e in list_entries(db=db)]
    assert actions == [
        ("organization.create", "alice", None),
        ("model.register", "alice", mv.id),
        ("report.attach", "bob", mv.id),
    ]
    assert list_models(db=db)[0].id == mv.id and list_models(name="other", db=db) == []
