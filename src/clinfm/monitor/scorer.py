"""The model monitoring runs by default: count-feature LightGBM (``clinfm.validate``'s ``CountGBM``) trained on one
task's labels known before a cutoff, with an optional recalibration, saved as a run folder the registry can hash.

A run folder holds only text (no pickle): ``model.txt`` (the LightGBM booster), ``featurizer.json`` (the count
vocabulary), ``calibration.json``, ``reference.json`` (the training-data profile drift is measured against) and
``training_config.json``. :func:`load_scorer` refuses a folder whose files no longer match what the registry
recorded for the version.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import scipy.sparse as sp

from clinfm import __version__, schema
from clinfm.monitor.drift import build_reference, missing_inputs, observation_events
from clinfm.monitor.labels import KNOWN_AT, labels_with_known_at
from clinfm.tasks.config import TaskConfig
from clinfm.tasks.features import CountFeaturizer
from clinfm.tasks.labelers import LABEL, PRED, SID, load_events
from clinfm.tasks.splits import TEST, TRAIN, TUNING, subject_split
from clinfm.validate.models import CountGBM, Recalibrator

FILES = ("model.txt", "featurizer.json", "calibration.json", "reference.json", "training_config.json")


class Scorer(Protocol):
    """What replay and retrain need from a model: a name, the codes it can see, its reference profile, scores."""

    name: str
    vocabulary: set[str]
    reference: dict[str, Any]

    def score(self, events: pl.DataFrame, points: pl.DataFrame) -> np.ndarray: ...


class NotEnoughLabels(ValueError):
    """Too few labels (or of one class) before the cutoff to train or recalibrate."""


@dataclass(slots=True)
class Calibration:
    """A fitted recalibration map kept as numbers: Platt ``sigmoid(a + b logit p)`` or isotonic steps."""

    method: str
    params: dict[str, list[float] | float]

    @classmethod
    def fit(cls, method: str, p: np.ndarray, y: np.ndarray) -> Calibration:
        r = Recalibrator(method).fit(p, y)
        if method == "platt":
            return cls("platt", {"a": float(r.model_.intercept_[0]), "b": float(r.model_.coef_[0, 0])})
        return cls("isotonic", {"x": r.model_.X_thresholds_.tolist(), "y": r.model_.y_thresholds_.tolist()})

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "platt":
            z = np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))
            return 1.0 / (1.0 + np.exp(-(self.params["a"] + self.params["b"] * z)))
        return np.interp(p, self.params["x"], self.params["y"])


@dataclass
class CountScorer:
    """A fitted count-feature LightGBM for one task; ``score(events, points)`` sees only events at or before
    each point's prediction time (the featurizer's cut)."""

    name: str
    task: TaskConfig
    featurizer: CountFeaturizer
    booster: Any  # lightgbm.Booster
    calibration: Calibration | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def vocabulary(self) -> set[str]:
        return set(self.featurizer.vocabulary_)

    def raw_scores(self, events: pl.DataFrame, points: pl.DataFrame) -> np.ndarray:
        if points.height == 0:
            return np.empty(0)
        X = sp.csr_matrix(self.featurizer.transform(events, points), dtype=np.float32)
        return np.asarray(self.booster.predict(X), dtype=np.float64)

    def score(self, events: pl.DataFrame, points: pl.DataFrame) -> np.ndarray:
        p = self.raw_scores(events, points)
        return self.calibration.apply(p) if self.calibration is not None and p.size else p

    def recalibrated(self, calibration: Calibration, name: str, training: dict[str, Any]) -> CountScorer:
        """The same model with another calibration map (a change plan's ``recalibrate``)."""
        return CountScorer(name, self.task, self.featurizer, self.booster, calibration, self.reference,
                           {**self.training, **training})  # fmt: skip


def observation_lookback(task: TaskConfig) -> dt.timedelta | None:
    start = task.observation_window.start
    return -start if start is not None else None


def _before(events: pl.DataFrame, cutoff: dt.datetime) -> pl.DataFrame:
    return events.filter(pl.col(schema.TIME).is_null() | (pl.col(schema.TIME) < cutoff))


def train_scorer(
    dataset_dir: str | Path,
    task: TaskConfig,
    before: dt.datetime,
    *,
    after: dt.datetime | None = None,
    name: str | None = None,
    seed: int = 0,
    events: pl.DataFrame | None = None,
    labels: pl.DataFrame | None = None,
    subjects: str = "train",
    reference: Any = None,
) -> CountScorer:
    """Train on the labels whose prediction time is in ``[after, before)`` and whose outcome was known by
    ``before``, from the dataset's ``train`` subjects; ``tuning`` subjects give the held-out scores of the
    reference profile. Events at or after ``before`` are never read. ``subjects="train+tuning"`` trains on
    both (tuning still scores the reference). ``reference``: the monitoring policy's ``reference`` settings
    (``clinfm.monitor.policy.Reference``) for the drift reference (:func:`validation_reference`)."""
    events = load_events(dataset_dir) if events is None else events
    labels = labels_with_known_at(task, dataset_dir, events) if labels is None else labels
    seen = _before(events, before)
    usable = labels.filter((pl.col(PRED) < before) & (pl.col(KNOWN_AT) <= before))
    if after is not None:
        usable = usable.filter(pl.col(PRED) >= after)
    split = subject_split(usable.select(SID, PRED, LABEL), dataset_dir)
    fit_on = [TRAIN, TUNING] if subjects == "train+tuning" else [TRAIN]
    train = split.filter(pl.col("split").is_in(fit_on))
    held = split.filter(pl.col("split").is_in([TUNING, TEST]))
    y = train[LABEL].to_numpy().astype(int)
    if y.size == 0 or min(y.sum(), y.size - y.sum()) < 5:
        window = f"[{after}, {before})" if after else f"before {before}"
        raise NotEnoughLabels(
            f"task {task.name!r}: {y.size} training label(s) with {int(y.sum())} positive(s) {window}; "
            "at least 5 of each class are needed"
        )
    featurizer = CountFeaturizer(lookback=observation_lookback(task)).fit(seen, train)
    model = CountGBM(seed=seed).fit(featurizer.transform(seen, train), y)
    scorer = CountScorer(
        name=name or f"{task.name}-count_gbm",
        task=task,
        featurizer=featurizer,
        booster=model.model_.booster_,
        training={
            "model": "count_gbm", "task": task.name, "seed": seed, "before": before.isoformat(),
            "after": after.isoformat() if after else None, "labels": int(y.size), "positives": int(y.sum()),
            "subjects": subjects, "dataset": str(Path(dataset_dir).resolve()), "clinfm_version": __version__,
        },
    )  # fmt: skip
    scorer.reference = validation_reference(scorer, seen, held if held.height else train, before, after, reference)
    return scorer


def key_inputs(scorer: CountScorer, k: int) -> list[str]:
    """The ``k`` codes the booster gains most from (summed over their lookback windows)."""
    if k <= 0:
        return []
    gain = np.asarray(scorer.booster.feature_importance(importance_type="gain"), dtype=np.float64)
    names = scorer.featurizer.feature_names_
    by_code: dict[str, float] = {}
    for name, g in zip(names[3:], gain[3:]):  # the first three are age and sex
        code = name.rsplit("@", 1)[0]
        by_code[code] = by_code.get(code, 0.0) + float(g)
    ranked = sorted((c for c, g in by_code.items() if g > 0), key=lambda c: (-by_code[c], c))
    return ranked[:k]


def validation_reference(
    scorer: CountScorer, events: pl.DataFrame, held: pl.DataFrame, before: dt.datetime,
    after: dt.datetime | None = None, settings: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """The drift reference of a trained scorer: what it saw for its validation points, the held-out points
    with prediction times in ``[before - validation_window, before)`` (each point's observation window), its
    scores on them and the missingness of its key inputs among them."""
    from clinfm.monitor.policy import Reference

    settings = settings if settings is not None else Reference()
    start = before - settings.validation_window
    if after is not None:
        start = max(start, after)
    points = held.filter(pl.col(PRED) >= start)
    if points.height == 0:  # a validation window with no points: all held-out points instead
        points, start = held, held[PRED].min()
    lookback = observation_lookback(scorer.task)
    seen = observation_events(events, points, lookback)
    # static codes (race, ethnicity) are never missing from a window: watch the timed ones
    timed_codes = set(seen[schema.CODE].unique().to_list())
    keys = [c for c in key_inputs(scorer, 4 * settings.key_inputs) if c in timed_codes][: settings.key_inputs]
    return build_reference(
        seen, scorer.vocabulary, scorer.score(events, points),
        top_codes=settings.top_codes, lab_codes=settings.lab_codes, bins=settings.bins,
        min_lab_values=settings.min_lab_values, missing=missing_inputs(events, points, keys, lookback),
        points=points.height,
        window={"start": start.isoformat() if start is not None else None, "end": before.isoformat(),
                "points": points.height, "subjects": points[SID].n_unique(),
                "lookback_days": None if lookback is None else lookback.total_seconds() / 86400},
    )  # fmt: skip


# --- run folders ------------------------------------------------------------------------------------------
def _seconds(td: dt.timedelta | None) -> float | None:
    return None if td is None else td.total_seconds()


def save_scorer(scorer: CountScorer, run_dir: str | Path) -> Path:
    """Write the scorer's run folder (text files only); returns it."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "model.txt").write_text(scorer.booster.model_to_string())
    f = scorer.featurizer
    (run / "featurizer.json").write_text(json.dumps({
        "windows": [_seconds(w) for w in f.windows], "min_points": f.min_points, "lookback": _seconds(f.lookback),
        "vocabulary": list(f.vocabulary_), "feature_names": f.feature_names_,
    }))  # fmt: skip
    cal = scorer.calibration
    (run / "calibration.json").write_text(
        json.dumps(None if cal is None else {"method": cal.method, "params": cal.params})
    )
    (run / "reference.json").write_text(json.dumps(scorer.reference))
    (run / "training_config.json").write_text(json.dumps({
        "name": scorer.name, "task_config": scorer.task.model_dump(mode="json"), **scorer.training,
    }, indent=1))  # fmt: skip
    return run


def load_scorer(run_dir: str | Path, expected: dict[str, dict] | None = None) -> CountScorer:
    """Read a run folder written by :func:`save_scorer`. ``expected`` is the registry's file manifest
    (``{path: {"sha256", ...}}``); a file that differs from it is refused before anything is parsed."""
    import lightgbm as lgb

    from clinfm.govern.registry import sha256_file

    run = Path(run_dir)
    missing = [n for n in FILES if not (run / n).is_file()]
    if missing:
        raise FileNotFoundError(f"run folder {str(run)!r} lacks {missing}: not a count-model run folder")
    if expected is not None:
        changed = [n for n in FILES if n in expected and sha256_file(run / n) != expected[n]["sha256"]]
        if changed:
            raise ValueError(
                f"run folder {str(run)!r}: {changed} differ from the registered version's SHA-256"
            )
    meta = json.loads((run / "training_config.json").read_text())
    fz = json.loads((run / "featurizer.json").read_text())
    featurizer = CountFeaturizer(
        windows=tuple(None if w is None else dt.timedelta(seconds=w) for w in fz["windows"]),
        min_points=fz["min_points"],
        lookback=None if fz["lookback"] is None else dt.timedelta(seconds=fz["lookback"]),
    )
    featurizer.vocabulary_ = {c: i for i, c in enumerate(fz["vocabulary"])}
    featurizer.feature_names_ = fz["feature_names"]
    cal = json.loads((run / "calibration.json").read_text())
    task = TaskConfig.model_validate(meta.pop("task_config"))
    return CountScorer(
        name=meta.pop("name"), task=task, featurizer=featurizer,
        booster=lgb.Booster(model_str=(run / "model.txt").read_text()),
        calibration=None if cal is None else Calibration(cal["method"], cal["params"]),
        reference=json.loads((run / "reference.json").read_text()), training=meta,
    )  # fmt: skip


def load_registered_scorer(version_id: str, *, db=None) -> tuple[CountScorer, Any]:
    """The scorer of a registered version (files checked against the registry) and the version itself."""
    from clinfm.govern.registry import get_model

    version = get_model(version_id, db=db)
    return load_scorer(version.run_dir, version.artifacts.get("files") or {}), version


def register_scorer(
    scorer: CountScorer, run_dir: str | Path, dataset_dir: str | Path, *, actor: str, name: str | None = None,
    org: str | None = None, db=None,
):  # fmt: skip
    """Save the scorer to ``run_dir`` and register it as the next ``draft`` version of ``name``."""
    from clinfm.govern.db import LOCAL_ORG
    from clinfm.govern.registry import register_model

    save_scorer(scorer, run_dir)
    return register_model(name or scorer.name, run_dir, dataset_dir, actor, org=org or LOCAL_ORG, db=db)


__all__ = [
    "Calibration", "CountScorer", "NotEnoughLabels", "Scorer", "key_inputs", "load_registered_scorer",
    "load_scorer", "observation_lookback", "register_scorer", "save_scorer", "train_scorer",
    "validation_reference",
]  # fmt: skip
