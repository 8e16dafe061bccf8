"""Local validation of one task on one dataset: label, split by subject, featurize, fit every model on the
same labels, score the test split with bootstrap CIs, compare models pairwise, and look at subgroups.

``evaluate`` is the one entry point (the ``clinfm evaluate`` command is a thin call to it); it writes the
HTML report and its JSON twin through ``report.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from clinfm import __version__, schema
from clinfm.engine import ProgressFn
from clinfm.tasks.config import TaskConfig, load_task
from clinfm.tasks.features import CountFeaturizer, subject_attributes
from clinfm.tasks.labelers import LABEL, PRED, SID, LabelingResult, label_dataset, load_events
from clinfm.tasks.splits import (
    TEST,
    TRAIN,
    TUNING,
    cross_validation_folds,
    external_split,
    split_counts,
    subject_split,
    temporal_split,
)
from clinfm.validate import fairness as F
from clinfm.validate import metrics as M
from clinfm.validate.models import (
    DEFAULT_MODELS,
    CountLogistic,
    ModelUnavailable,
    Recalibrator,
    few_label_sample,
    make_model,
)

log = logging.getLogger(__name__)

LEARNING_CURVE_SIZES: tuple[int | None, ...] = (16, 64, 256, None)
"""Training labels per class for the learning curve (``None`` = all training labels)."""


class InsufficientPositivesError(RuntimeError):
    """Too few positives (or negatives) to validate: the task stops instead of reporting a meaningless AUROC."""

    def __init__(self, task: str, split: str, positives: int, negatives: int, minimum: int) -> None:
        self.task, self.split, self.positives, self.negatives, self.minimum = (
            task,
            split,
            positives,
            negatives,
            minimum,
        )
        super().__init__(
            f"task {task!r}: the {split} split has {positives} positive(s) and {negatives} negative(s); "
            f"at least {minimum} of each are needed to validate"
        )


@dataclass(slots=True)
class ModelResult:
    name: str
    metrics: dict[str, M.Estimate]
    y: np.ndarray
    scores: np.ndarray
    threshold: float
    fit_seconds: float
    details: dict = field(default_factory=dict)
    learning_curve: list[dict] = field(default_factory=list)


@dataclass(slots=True)
class EvaluationResult:
    """Everything the report shows; ``as_json()`` is the governance-facing twin."""

    task: TaskConfig
    dataset: dict
    cohort: dict
    labeling: dict
    models: dict[str, ModelResult]
    skipped: dict[str, str]
    comparisons: list[M.Comparison]
    subgroups: list[F.SubgroupRow]
    subgroup_summary: dict[str, dict]
    fairness: dict
    split: str
    n_resamples: int
    recalibration: str | None
    seconds: float = 0.0
    report_path: Path | None = None
    json_path: Path | None = None
    tripod_ai: list[dict] = field(default_factory=list)

    @staticmethod
    def _model_json(r: ModelResult) -> dict:
        metrics = {k: e.as_dict() for k, e in r.metrics.items()}
        return metrics | {"threshold": r.threshold, "fit_seconds": round(r.fit_seconds, 3), "details": r.details,
                          "learning_curve": r.learning_curve}  # fmt: skip

    def as_json(self) -> dict:
        return {
            "task": self.task.name,
            "task_config": self.task.model_dump(mode="json"),
            "dataset": self.dataset,
            "cohort": self.cohort,
            "labeling": self.labeling,
            "split": self.split,
            "models": {name: self._model_json(r) for name, r in self.models.items()},
            "skipped_models": self.skipped,
            "comparisons": [c.as_dict() for c in self.comparisons],
            "subgroups": [s.as_dict() for s in self.subgroups],
            "subgroup_summary": self.subgroup_summary,
            "fairness": self.fairness,
            "bootstrap": {
                "resamples": self.n_resamples,
                "ci": "percentile 95%, subjects resampled (cluster bootstrap)",
                "ece_bins": M.ECE_BINS,
                "calibration_intercept": "calibration-in-the-large (slope fixed at 1)",
            },
            "recalibration": self.recalibration,
            "tripod_ai": self.tripod_ai,
            "seconds": round(self.seconds, 2),
            "clinfm_version": __version__,
        }


def dataset_info(dataset_dir: str | Path) -> dict:
    """Provenance: path, name, source, ETL time and the de-identification policy from ``dataset.json``."""
    path = Path(dataset_dir)
    meta_file = path / schema.DATASET_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    clin = meta.get("clinfm", {})
    return {
        "path": str(path.resolve()),
        "name": meta.get("dataset_name", path.name),
        "source": clin.get("source"),
        "etl_time": clin.get("etl_time"),
        "etl_version": clin.get("clinfm_version"),
        "meds_version": meta.get("meds_version"),
        "subjects": clin.get("row_counts", {}).get("subjects"),
        "deid": clin.get("deid")
        or {"policy": None, "note": "not de-identified by ClinFM (identifiable data)"},
    }


def cohort_table(labels: pl.DataFrame, attributes: pl.DataFrame) -> dict:
    """Per split (and overall): labels, subjects, positives, prevalence, age and sex."""
    frame = pl.concat([labels, attributes.select("age", "sex")], how="horizontal")
    out = {}
    for name, part in [("all", frame)] + [
        (s, frame.filter(pl.col("split") == s)) for s in (TRAIN, TUNING, TEST)
    ]:
        if part.height == 0:
            continue
        age = part["age"].drop_nulls()
        out[name] = {
            "labels": part.height,
            "subjects": part[SID].n_unique(),
            "positives": int(part[LABEL].sum()),
            "prevalence": float(part[LABEL].mean()),
            "age_mean": float(age.mean()) if age.len() else None,
            "age_median": float(age.median()) if age.len() else None,
            "age_iqr": [float(age.quantile(0.25)), float(age.quantile(0.75))] if age.len() else None,
            "sex": {k: int(v) for k, v in part.group_by("sex").len().iter_rows()},
        }
    return out


def evaluate(
    dataset_dir: str | Path,
    task_name_or_path: str | Path | TaskConfig,
    models: Sequence[str] = DEFAULT_MODELS,
    report_path: str | Path | None = None,
    progress: ProgressFn | None = None,
    fm_run_dir: str | Path | None = None,
    *,
    split: str = "subject",
    temporal_cutoff: dt.datetime | None = None,
    cv_folds: int = 5,
    external_dataset_dir: str | Path | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    recalibrate: str | None = None,
    learning_curve_sizes: Sequence[int | None] = LEARNING_CURVE_SIZES,
) -> EvaluationResult:
    """Validate ``models`` on one task and write the HTML report (and ``<report>.json``) to ``report_path``.

    ``split``: ``"subject"`` (the dataset's own subject split; held_out is the test set), ``"cv"`` (``cv_folds``
    subject-level folds, pooled out-of-fold predictions: for datasets whose held-out split is too small), ``"temporal"``
    (train before ``temporal_cutoff``, test after) or ``"external"`` (train on ``dataset_dir``, test on
    ``external_dataset_dir``). ``recalibrate``: ``None``, ``"platt"`` or ``"isotonic"`` (fitted on the tuning
    split). FM models need ``fm_run_dir`` and ``clinfm.model``; without them they are skipped and the report
    says why. Raises :class:`InsufficientPositivesError` when the test split cannot support an AUROC, and
    ``TaskConfigError`` (``CodeNotFoundError``) for a bad task.
    """
    started = time.perf_counter()
    total_steps = 4 + len(models)
    step = _Stepper(progress, total_steps)
    task = task_name_or_path if isinstance(task_name_or_path, TaskConfig) else load_task(task_name_or_path)
    for m in models:
        if m not in DEFAULT_MODELS:
            raise ValueError(f"model {m!r} is not one of {DEFAULT_MODELS}")
    if recalibrate not in (None, "platt", "isotonic"):
        raise ValueError(f"recalibrate={recalibrate!r} is not None, 'platt' or 'isotonic'")

    # 1. labels and split ----------------------------------------------------------------------------
    events = load_events(dataset_dir)
    labeled = label_dataset(task, dataset_dir, events)
    labeling = labeled.summary()
    test_events = events
    if split == "subject":
        folds = [subject_split(labeled.labels, dataset_dir)]
    elif split == "cv":
        folds = cross_validation_folds(labeled.labels, dataset_dir, k=cv_folds, seed=seed)
    elif split == "temporal":
        if temporal_cutoff is None:
            raise ValueError("split='temporal' needs temporal_cutoff")
        folds = [temporal_split(labeled.labels, dataset_dir, temporal_cutoff)]
    elif split == "external":
        if external_dataset_dir is None:
            raise ValueError("split='external' needs external_dataset_dir")
        test_events = load_events(external_dataset_dir)
        ext = label_dataset(task, external_dataset_dir, test_events)
        labeling = {**labeling, "test_dataset": ext.summary()}
        folds = [external_split(labeled.labels, ext.labels, dataset_dir).drop("source")]
    else:
        raise ValueError(f"split={split!r} is not 'subject', 'cv', 'temporal' or 'external'")
    labeling["splits"] = (
        split_counts(folds[0])
        if len(folds) == 1
        else {f"fold{i}": split_counts(f) for i, f in enumerate(folds)}
    )
    _require_positives(task, folds)
    step("labels")

    # 2. features, fitted on each fold's training points only ----------------------------------------
    data = [_fold_data(task, f, events, test_events) for f in folds]
    test_labels = pl.concat([d.parts[TEST] for d in data])
    test_attrs = pl.concat([d.attrs[TEST] for d in data])
    y_test = np.concatenate([d.y[TEST] for d in data])
    subjects = test_labels[SID].to_numpy()  # CIs resample subjects, not prediction times
    first = data[0]
    if len(data) == 1:  # train / tuning / test rows of the one split
        cohort = cohort_table(pl.concat([first.parts[s].with_columns(pl.lit(s).alias("split")) for s in first.parts]),
                              pl.concat([first.attrs[s] for s in first.parts]))  # fmt: skip
    else:  # cross-validation: every label is a test label once
        cohort = cohort_table(test_labels.with_columns(pl.lit(TEST).alias("split")), test_attrs)
    cohort["features"] = {"count_columns": len(first.featurizer.feature_names_), "codes": len(first.featurizer.vocabulary_),
                          "windows": [_window_label(w) for w in first.featurizer.windows]}  # fmt: skip
    step("features")

    # 3. models -------------------------------------------------------------------------------------
    results: dict[str, ModelResult] = {}
    skipped: dict[str, str] = {}
    for kind in models:
        t0 = time.perf_counter()
        try:
            p_test, p_tune, details = _fit_predict(
                kind, data, task, dataset_dir, fm_run_dir, seed, recalibrate
            )
        except ModelUnavailable as exc:
            skipped[kind] = str(exc)
            step(kind)
            continue
        prevalence = float(np.mean(np.concatenate([d.y[TRAIN] for d in data])))
        threshold = F.operating_threshold(p_tune, p_test, prevalence)
        fit_s = time.perf_counter() - t0
        curve = (
            []
            if kind == "fm_zeroshot"
            else _learning_curve(
                kind, first, task, dataset_dir, fm_run_dir, learning_curve_sizes, n_resamples, seed
            )
        )
        results[kind] = ModelResult(kind, M.all_metrics(y_test, p_test, n_resamples, seed, subjects), y_test, p_test,
                                    threshold, fit_s, details, curve)  # fmt: skip
        step(kind)

    # 4. comparisons and subgroups ------------------------------------------------------------------
    names = list(results)
    comparisons = [
        M.paired_difference(y_test, results[a].scores, results[b].scores, metric, (a, b), n_resamples, seed, subjects)
        for i, a in enumerate(names) for b in names[i + 1:] for metric in ("auroc", "auprc", "brier")
    ]  # fmt: skip
    subgroups: list[F.SubgroupRow] = []
    per_model: dict[str, dict] = {}
    for name, r in results.items():
        rows, summary = F.subgroup_table(
            name, r.y, r.scores, test_attrs, r.threshold, n_resamples, seed, subjects
        )
        subgroups += rows
        per_model[name] = summary
    step("metrics")

    result = EvaluationResult(
        task=task, dataset=dataset_info(dataset_dir) | ({"external_test": dataset_info(external_dataset_dir)}
                                                        if external_dataset_dir else {}),
        cohort=cohort, labeling=labeling, models=results, skipped=skipped, comparisons=comparisons,
        subgroups=subgroups, subgroup_summary=per_model, fairness=F.fairness_summary(per_model), split=split,
        n_resamples=n_resamples, recalibration=recalibrate,
    )  # fmt: skip
    from clinfm.validate.report import tripod_ai_checklist, write_report

    result.tripod_ai = tripod_ai_checklist(result)
    result.seconds = time.perf_counter() - started
    if report_path is not None:
        result.report_path, result.json_path = write_report(result, Path(report_path))
    step("report")
    return result


def _lookback(task: TaskConfig) -> dt.timedelta | None:
    start = task.observation_window.start
    return -start if start is not None else None


def _window_label(w: dt.timedelta | None) -> str:
    return "all" if w is None else f"{w.days}d" if w.days else f"{w.total_seconds() / 3600:g}h"


@dataclass(slots=True)
class _Fold:
    """One fold's labels per split and every model input built from them."""

    parts: dict[str, pl.DataFrame]
    featurizer: CountFeaturizer
    X: dict
    y: dict[str, np.ndarray]
    points: dict[str, list]
    attrs: dict[str, pl.DataFrame]


def _fold_data(
    task: TaskConfig, labels: pl.DataFrame, events: pl.DataFrame, test_events: pl.DataFrame
) -> _Fold:
    parts = {s: labels.filter(pl.col("split") == s).drop("split") for s in (TRAIN, TUNING, TEST)}
    source = {TRAIN: events, TUNING: events, TEST: test_events}
    featurizer = CountFeaturizer(lookback=_lookback(task)).fit(events, parts[TRAIN])
    return _Fold(
        parts=parts,
        featurizer=featurizer,
        X={s: featurizer.transform(source[s], parts[s]) for s in parts},
        y={s: parts[s][LABEL].to_numpy().astype(int) for s in parts},
        points={s: list(zip(parts[s][SID].to_list(), parts[s][PRED].to_list())) for s in parts},
        attrs={s: subject_attributes(source[s], parts[s]) for s in parts},
    )


def _require_positives(task: TaskConfig, folds: list[pl.DataFrame]) -> None:
    """The pooled test labels need ``task.min_positives`` of each class (checked first: it is the reason a
    task cannot be validated); then every training split needs two of each class."""
    counts = [split_counts(f) for f in folds]
    empty = {"labels": 0, "positives": 0}
    pos = sum(c.get(TEST, empty)["positives"] for c in counts)
    neg = sum(c.get(TEST, empty)["labels"] for c in counts) - pos
    if min(pos, neg) < task.min_positives:
        raise InsufficientPositivesError(task.name, "test", pos, neg, task.min_positives)
    for c in counts:
        train = c.get(TRAIN, empty)
        if min(train["positives"], train["labels"] - train["positives"]) < 2:
            raise InsufficientPositivesError(task.name, "train", train["positives"], train["labels"] - train["positives"], 2)


def _fit_predict(kind, data: list[_Fold], task, dataset_dir, fm_run_dir, seed, recalibrate):
    """Fit on each fold's training split; pooled test and tuning predictions (recalibrated per fold)."""
    tests, tunes, details = [], [], {}
    for fold in data:
        model = make_model(kind, seed=seed, fm_run_dir=fm_run_dir, dataset_dir=dataset_dir, task=task)
        inputs = fold.X if model.input_kind == "counts" else fold.points
        if isinstance(model, CountLogistic) and fold.y[TUNING].size:
            model.fit(inputs[TRAIN], fold.y[TRAIN], inputs[TUNING], fold.y[TUNING])
        else:
            model.fit(inputs[TRAIN], fold.y[TRAIN])
        p_test = model.predict_proba(inputs[TEST])
        p_tune = model.predict_proba(inputs[TUNING]) if fold.y[TUNING].size else np.empty(0)
        details["input"] = model.input_kind
        if hasattr(model, "C_"):
            details.setdefault("C", []).append(model.C_)
        if recalibrate and 0 < fold.y[TUNING].sum() < fold.y[TUNING].size:
            cal = Recalibrator(recalibrate).fit(p_tune, fold.y[TUNING])
            p_test, p_tune = cal.transform(p_test), cal.transform(p_tune)
            details["recalibrated"] = recalibrate
        tests.append(p_test)
        tunes.append(p_tune)
    tune = np.concatenate(tunes)
    return np.concatenate(tests), (tune if tune.size else None), details


def _learning_curve(kind, fold: _Fold, task, dataset_dir, fm_run_dir, sizes, n_resamples, seed) -> list[dict]:
    """AUROC on the (first fold's) test split when trained on ``k`` labels per class, one draw per size."""
    out = []
    y_train = fold.y[TRAIN]
    n_pos, n_neg = int(y_train.sum()), int((1 - y_train).sum())
    for k in sizes:
        if k is not None and k >= max(n_pos, n_neg):
            continue  # the same as "all"
        idx = few_label_sample(y_train, k, seed)
        if y_train[idx].sum() < 2 or (1 - y_train[idx]).sum() < 2:
            continue
        model = make_model(kind, seed=seed, fm_run_dir=fm_run_dir, dataset_dir=dataset_dir, task=task)
        inputs = fold.X if model.input_kind == "counts" else fold.points
        x_sub = inputs[TRAIN][idx] if model.input_kind == "counts" else [inputs[TRAIN][i] for i in idx]
        try:
            p = model.fit(x_sub, y_train[idx]).predict_proba(inputs[TEST])
        except ModelUnavailable:
            break
        est = M.estimate(fold.y[TEST], p, M.auroc_w, n_resamples, seed, fold.parts[TEST][SID].to_numpy())
        out.append({"per_class": k if k is not None else "all", "train_positives": int(y_train[idx].sum()),
                    "train_labels": int(idx.size), "auroc": est.as_dict()})  # fmt: skip
    return out


class _Stepper:
    def __init__(self, progress: ProgressFn | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, what: str) -> None:
        self.done += 1
        log.info("evaluate: %s done (%d/%d)", what, self.done, self.total)
        if self.progress:
            self.progress(self.done, self.total)


__all__ = ["EvaluationResult", "InsufficientPositivesError", "LabelingResult", "ModelResult", "evaluate"]
