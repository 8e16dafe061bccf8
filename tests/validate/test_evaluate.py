"""End to end: a report and its JSON twin on a synthetic hospital; FM models skipped or wired; too few
positives stops."""

from __future__ import annotations

import json
import types

import numpy as np
import polars as pl
import pytest

from clinfm.validate import models as models_module
from clinfm.validate.evaluate import InsufficientPositivesError, evaluate
from tests.tasks.synthetic import hospital


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    return hospital(tmp_path_factory.mktemp("ward"), n=240)


def test_report_and_json_twin(ward, tmp_path):
    seen = []
    result = evaluate(
        ward,
        "long_length_of_stay",
        ["count_gbm", "count_lr", "fm_probe"],
        tmp_path / "r.html",
        progress=lambda d, t: seen.append((d, t)),
        n_resamples=200,
        learning_curve_sizes=(16, None),
    )
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["task"] == "long_length_of_stay" and data["clinfm_version"]
    for model in ("count_gbm", "count_lr"):
        m = data["models"][model]
        for k in ("auroc", "auprc", "brier", "ece", "calibration_slope", "calibration_intercept"):
            assert set(m[k]) == {"value", "ci"}
        assert m["auroc"]["value"] > 0.75 and m["auroc"]["ci"][0] < m["auroc"]["value"] < m["auroc"]["ci"][1]
        assert m["learning_curve"][0]["per_class"] == 16
    assert "no FM run given" in data["skipped_models"]["fm_probe"]
    assert {"four_fifths_flag", "worst_gap"} <= set(data["fairness"])
    assert data["dataset"]["deid"]["policy"] == "shift" and data["cohort"]["test"]["positives"] >= 10
    assert {c["metric"] for c in data["comparisons"]} == {"auroc", "auprc", "brier"}
    assert {t["status"] for t in data["tripod_ai"]} >= {"filled", "needs-human"}
    html = (tmp_path / "r.html").read_text()
    assert (
        html.count("data:image/png;base64,") == 4
        and "Skipped <b>fm_probe</b>" in html
        and "TRIPOD+AI" in html
    )
    assert (
        seen[-1][0] == seen[-1][1]
        and result.models["count_gbm"].scores.size == data["cohort"]["test"]["labels"]
    )


def test_fm_probe_uses_embeddings_at_the_prediction_points(ward, tmp_path, monkeypatch):
    asked = []

    def embed(run_dir, dataset_dir, points):
        asked.extend(points)
        risky = {s for s, t in points if s % 5 == 0}
        vec = np.array([[1.0 if s in risky else 0.0, s % 7] for s, _ in points])
        return pl.DataFrame(
            {
                "subject_id": [s for s, _ in points],
                "prediction_time": [t for _, t in points],
                "last": vec,
                "mean": vec,
            }
        )

    monkeypatch.setattr(models_module, "_fm_module", lambda name: types.SimpleNamespace(embed=embed))
    r = evaluate(
        ward,
        "long_length_of_stay",
        ["fm_probe"],
        None,
        fm_run_dir=tmp_path,
        n_resamples=50,
        learning_curve_sizes=(),
    )
    assert "fm_probe" in r.models and len(asked) >= r.cohort["test"]["labels"]


def test_too_few_positives_stops_with_the_counts(tmp_path):
    small = hospital(tmp_path / "small", n=30)
    with pytest.raises(
        InsufficientPositivesError, match=r"the test split has \d+ positive\(s\) and \d+ negative"
    ) as info:
        evaluate(small, "in_hospital_mortality", ["count_lr"], tmp_path / "never.html", n_resamples=10)
    assert info.value.positives < 10 and info.value.minimum == 10
    assert not (tmp_path / "never.html").exists()


def test_external_split_trains_on_one_dataset_and_tests_on_another(ward, tmp_path):
    other = hospital(tmp_path / "other", n=150, seed=5, first_id=10_000)
    r = evaluate(ward, "long_length_of_stay", ["count_lr"], None, split="external", external_dataset_dir=other,
                 n_resamples=50, learning_curve_sizes=())  # fmt: skip
    assert r.cohort["test"]["subjects"] <= 150 and r.labeling["splits"]["test"]["subjects"] == r.cohort["test"]["subjects"]
    assert r.models["count_lr"].metrics["auroc"].value > 0.7
    assert "external_test" in r.dataset
