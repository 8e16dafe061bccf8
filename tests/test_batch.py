"""Tokenization, embedding export and batch scoring: one task per shard, the same bytes on every engine."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from clinfm.batch import BatchError, Cohort, export_embeddings, resolve_model, score_dataset, task_cohort
from clinfm.cli import app
from clinfm.defaults import packaged
from clinfm.engine import Engine
from clinfm.model.config import load_config
from clinfm.model.corpus import prepare_corpus
from clinfm.tasks.config import load_task
from tests.monitor.synthetic import clinic

REPO = Path(__file__).resolve().parents[1]
TINY = packaged("models/fm-tiny.yaml")
AT = dt.datetime(2020, 6, 1)
ENGINES = (("local", 1), ("local", 2), ("ray", 2))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> Path:
    """The synthetic clinic (240 patients, 2019–2021) in 3 shards."""
    return clinic(tmp_path_factory.mktemp("clinic") / "meds", n=240, shards=3)


@pytest.fixture(scope="module")
def fm_run(sharded, tmp_path_factory) -> Path:
    from clinfm.model.train import pretrain

    out = tmp_path_factory.mktemp("fm") / "run"
    pretrain(sharded, TINY, out)
    return out


@pytest.fixture(scope="module")
def count_run(sharded, tmp_path_factory) -> Path:
    from clinfm.monitor.scorer import save_scorer, train_scorer

    scorer = train_scorer(sharded, load_task("long_length_of_stay"), before=dt.datetime(2020, 1, 1))
    return save_scorer(scorer, tmp_path_factory.mktemp("count") / "run")


@pytest.fixture(scope="module")
def ray_session(monkeypatch_module):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'clinfm[ray]')")
    monkeypatch_module.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_every_engine_writes_the_same_windows_embeddings_and_scores(sharded, fm_run, count_run, ray_session, tmp_path):
    cfg = load_config(TINY)
    fm, count = resolve_model(fm_run), resolve_model(count_run)
    assert (fm.kind, count.kind) == ("fm", "count")
    at_june = Cohort(at=AT)
    digests: dict[str, set[str]] = {}
    for engine, workers in ENGINES:
        run = tmp_path / f"{engine}{workers}"
        kw = {"engine": Engine(engine, workers)}
        stats = prepare_corpus(sharded, cfg, run / "fm", **kw)
        emb = export_embeddings(fm_run, sharded, at_june, run / "emb.parquet", **kw)
        scores = score_dataset(count, sharded, run / "count.parquet", **kw)
        risk = score_dataset(fm, sharded, run / "fm.parquet", task=load_task("in_hospital_mortality"),
                             cohort=at_june, samples=4, **kw)  # fmt: skip
        for name in ("fm/windows/train.npy", "fm/windows/tuning.npy", "fm/tokenizer.json", "emb.parquet",
                     "count.parquet", "fm.parquet"):  # fmt: skip
            digests.setdefault(name, set()).add(_sha(run / name))
    assert {k: len(v) for k, v in digests.items()} == dict.fromkeys(digests, 1)

    # what the files hold: every subject with a record by the date, once; scores are probabilities
    assert stats["train"]["subjects"] == 144 and stats["tuning"]["subjects"] == 48
    assert emb.height == emb["subject_id"].n_unique() > 100 and emb["prediction_time"].unique().to_list() == [AT]
    assert np.isfinite(np.stack(emb["last"].to_numpy())).all()
    assert risk.height == emb.height and risk["score"].is_between(0, 1).all()
    assert scores.height > 100 and scores["score"].is_between(0, 1).all() and scores["score"].std() > 0


def test_shards_are_joined_in_point_order_and_match_the_whole_dataset_labeler(sharded, count_run, tmp_path):
    from clinfm.tasks.labelers import label_dataset

    task = load_task("long_length_of_stay")
    scores = score_dataset(resolve_model(count_run), sharded, tmp_path / "s.parquet")
    whole = label_dataset(task, sharded).labels.select("subject_id", "prediction_time").sort("subject_id", "prediction_time")
    assert scores.select("subject_id", "prediction_time").equals(whole)
    assert task_cohort(task, sharded).outcome_codes == ()  # LOS has no outcome codes: nothing to resolve


def test_points_file_cohort_and_its_errors(sharded, fm_run, tmp_path):
    pts = tmp_path / "points.csv"
    pl.DataFrame({"subject_id": [3, 1, 2], "prediction_time": ["2020-03-01T00:00:00"] * 3}).write_csv(pts)
    emb = export_embeddings(fm_run, sharded, Cohort(points_file=str(pts)), tmp_path / "e.parquet")
    assert emb["subject_id"].to_list() == [1, 2, 3]
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"patient": [1], "prediction_time": ["2020-03-01"]}).write_csv(bad)
    with pytest.raises(BatchError, match=r"lacks column\(s\) \['subject_id'\]"):
        export_embeddings(fm_run, sharded, Cohort(points_file=str(bad)), tmp_path / "e2.parquet")
    assert not (tmp_path / "e2.parquet").exists() and not list(tmp_path.glob(".e2*"))
    with pytest.raises(BatchError, match="neither a run folder nor a registered version id"):
        resolve_model("no-such-model")
    with pytest.raises(BatchError, match="needs --task"):
        score_dataset(resolve_model(fm_run), sharded, tmp_path / "x.parquet", cohort=Cohort(at=AT))


def test_cli_embed_score_and_prepare_only(sharded, fm_run, count_run, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["score", str(count_run), str(sharded), "--out", str(tmp_path / "s.parquet"), "-w", "2"])
    assert r.exit_code == 0, r.output
    assert "scores of" in r.output and pl.read_parquet(tmp_path / "s.parquet").height > 100
    r = runner.invoke(app, ["embed", str(fm_run), str(sharded), "--out", str(tmp_path / "e.parquet"), "--at", "2020-06-01"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["embed", str(fm_run), str(sharded), "--out", str(tmp_path / "e.parquet")])
    assert r.exit_code == 2 and "one of --task, --points or --at" in r.output
    r = runner.invoke(app, ["score", str(fm_run), str(sharded), "--out", str(tmp_path / "f.parquet"), "--at", "June"])
    assert r.exit_code == 2 and "'June' is not a date" in r.output

    # --prepare-only writes the windows; the training run that follows reuses them instead of tokenizing again
    run = tmp_path / "run"
    r = runner.invoke(app, ["pretrain", str(sharded), "--out", str(run), "--config", str(TINY), "--prepare-only", "-w", "2"])
    assert r.exit_code == 0, r.output
    assert "train: 144 subjects" in r.output and not (run / "model.safetensors").exists()
    before = (run / "windows" / "train.npy").stat().st_mtime_ns
    r = runner.invoke(app, ["pretrain", str(sharded), "--out", str(run), "--config", str(TINY)])
    assert r.exit_code == 0, r.output
    assert (run / "model.safetensors").exists() and (run / "windows" / "train.npy").stat().st_mtime_ns == before


def test_a_registered_version_is_scored_by_id_and_refused_when_its_files_changed(sharded, count_run, tmp_path, monkeypatch):
    import shutil

    from clinfm.govern.registry import register_model

    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    run = shutil.copytree(count_run, tmp_path / "registered")
    version = register_model("los-count", run, sharded, "tester")
    r = CliRunner().invoke(app, ["score", version.id, str(sharded), "--out", str(tmp_path / "s.parquet")])
    assert r.exit_code == 0, r.output
    expected = score_dataset(resolve_model(count_run), sharded, tmp_path / "direct.parquet")
    assert pl.read_parquet(tmp_path / "s.parquet").equals(expected)
    from clinfm.govern.audit import list_entries, verify_chain

    [entry] = [e for e in list_entries() if e.action == "batch.score"]  # the unregistered run folder left none
    assert entry.model_version_id == version.id and entry.actor == "cli" and entry.subject_id is None
    assert entry.details["points"] == expected.height and entry.details["task"] == "long_length_of_stay"
    assert verify_chain().ok
    (run / "model.txt").write_text((run / "model.txt").read_text() + "\n")
    r = CliRunner().invoke(app, ["score", version.id, str(sharded), "--out", str(tmp_path / "s2.parquet")])
    assert r.exit_code == 2 and "['model.txt'] differ from version" in r.output
    assert not (tmp_path / "s2.parquet").exists()
