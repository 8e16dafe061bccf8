"""The models compared on a task's labels: count-feature LightGBM and logistic regression, and the
foundation model as a linear probe on its embeddings and as a zero-shot rollout risk.

Every model follows scikit-learn discipline (``fit`` returns ``self``, learned state ends in ``_``, a seed
for everything random). Count models read the sparse count matrix; FM models read the prediction points
``[(subject_id, prediction_time), ...]`` and ask ``clinfm.model`` (imported lazily) for the rest.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MaxAbsScaler

Point = tuple[int, dt.datetime]


class ModelUnavailable(RuntimeError):
    """A model kind cannot run here (no FM run given, ``clinfm.model`` missing); the report says why."""


class NotFittedError(RuntimeError):
    pass


def _check_fitted(model: object) -> None:
    if not getattr(model, "fitted_", False):
        raise NotFittedError(f"{type(model).__name__} is not fitted yet: call fit() first")


class CountGBM:
    """LightGBM on count features (the EHRSHOT count-feature baseline)."""

    input_kind = "counts"

    def __init__(
        self, seed: int = 0, n_estimators: int = 300, learning_rate: float = 0.05, num_leaves: int = 15
    ) -> None:
        self.seed, self.n_estimators, self.learning_rate, self.num_leaves = (
            seed,
            n_estimators,
            learning_rate,
            num_leaves,
        )

    def fit(self, X: sp.spmatrix, y: np.ndarray) -> CountGBM:
        import lightgbm as lgb

        y = np.asarray(y, dtype=int)
        n_min = int(min(y.sum(), (1 - y).sum()))
        self.model_ = lgb.LGBMClassifier(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate, num_leaves=self.num_leaves,
            min_child_samples=max(2, min(20, n_min // 4)), subsample=0.8, subsample_freq=1, colsample_bytree=0.5,
            reg_lambda=1.0, random_state=self.seed, n_jobs=1, verbose=-1,  # n_jobs>1 thrashes on 2 shared cores
        )  # fmt: skip
        self.model_.fit(sp.csr_matrix(X, dtype=np.float32), y)
        self.fitted_ = True
        return self

    def predict_proba(self, X: sp.spmatrix) -> np.ndarray:
        _check_fitted(self)
        return np.asarray(self.model_.predict_proba(sp.csr_matrix(X, dtype=np.float32)))[:, 1]


class CountLogistic:
    """L2 logistic regression on log(1 + count), each feature scaled by its maximum absolute value.

    ``C`` is chosen from ``Cs`` by AUROC on the tuning points when they are given to ``fit``.
    """

    input_kind = "counts"

    def __init__(self, seed: int = 0, C: float = 0.1, Cs: Sequence[float] = (0.01, 0.1, 1.0)) -> None:
        self.seed, self.C, self.Cs = seed, C, tuple(Cs)

    def _transform(self, X: sp.spmatrix) -> sp.csr_matrix:
        X = sp.csr_matrix(X, dtype=np.float64, copy=True)
        X.data = np.log1p(np.maximum(X.data, 0))
        return X

    def fit(
        self,
        X: sp.spmatrix,
        y: np.ndarray,
        X_tune: sp.spmatrix | None = None,
        y_tune: np.ndarray | None = None,
    ) -> CountLogistic:
        from clinfm.validate.metrics import auroc

        Xt = self._transform(X)
        self.scaler_ = MaxAbsScaler().fit(Xt)
        Xs = self.scaler_.transform(Xt)
        C = self.C
        if X_tune is not None and y_tune is not None and 0 < np.sum(y_tune) < len(y_tune):
            Xv = self.scaler_.transform(self._transform(X_tune))
            scores = {c: auroc(y_tune, self._lr(c).fit(Xs, y).predict_proba(Xv)[:, 1]) for c in self.Cs}
            C = max(scores, key=lambda c: (scores[c], -c))
        self.C_ = C
        self.model_ = self._lr(C).fit(Xs, np.asarray(y, dtype=int))
        self.fitted_ = True
        return self

    def _lr(self, C: float) -> LogisticRegression:
        # liblinear: exact and fast for the few-thousand-row, many-column sparse problems here
        return LogisticRegression(C=C, solver="liblinear", max_iter=2000, random_state=self.seed)

    def predict_proba(self, X: sp.spmatrix) -> np.ndarray:
        _check_fitted(self)
        return self.model_.predict_proba(self.scaler_.transform(self._transform(X)))[:, 1]


def _fm_module(name: str):
    try:
        return importlib.import_module(f"clinfm.model.{name}")
    except ImportError as exc:
        raise ModelUnavailable(
            f"clinfm.model.{name} is not importable ({exc}); the foundation model is not built here"
        ) from exc


class FMProbe:
    """Logistic regression on foundation-model embeddings at each prediction time: the ``last`` and ``mean``
    hidden states from ``clinfm.model.embed.embed(run_dir, dataset_dir, points)``, which encodes only the
    events at or before each prediction time."""

    input_kind = "points"

    def __init__(
        self, run_dir: str | Path | None, dataset_dir: str | Path, seed: int = 0, C: float = 1.0
    ) -> None:
        self.run_dir, self.dataset_dir, self.seed, self.C = run_dir, Path(dataset_dir), seed, C

    _cache: dict[tuple[str, str], dict[tuple[object, ...], np.ndarray]] = {}
    """Embeddings by (run, dataset) and point: folds, learning curves and test sets reuse them (they are a
    deterministic function of the checkpoint and the history, so caching changes no number)."""

    def _embed(self, points: list[Point]) -> np.ndarray:
        if self.run_dir is None:
            raise ModelUnavailable("no FM run given (fm_run_dir is None)")
        embed = _fm_module("embed").embed
        cache = self._cache.setdefault((str(Path(self.run_dir).resolve()), str(self.dataset_dir.resolve())), {})
        missing = list(dict.fromkeys(p for p in map(tuple, points) if p not in cache))
        if missing:
            try:
                frame = embed(self.run_dir, self.dataset_dir, missing)
            except FileNotFoundError as exc:
                raise ModelUnavailable(str(exc)) from exc
            if frame.height != len(missing):
                raise RuntimeError(f"embed returned {frame.height} rows for {len(missing)} points")
            vectors = np.hstack([frame["last"].to_numpy(), frame["mean"].to_numpy()]).astype(np.float64)
            cache.update(zip(missing, vectors))
        return np.stack([cache[tuple(p)] for p in points])

    def fit(self, points: list[Point], y: np.ndarray) -> FMProbe:
        E = self._embed(points)
        self.mean_, self.scale_ = E.mean(axis=0), E.std(axis=0) + 1e-8
        self.model_ = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed).fit(
            (E - self.mean_) / self.scale_, np.asarray(y, dtype=int)
        )
        self.fitted_ = True
        return self

    def predict_proba(self, points: list[Point]) -> np.ndarray:
        _check_fitted(self)
        return self.model_.predict_proba((self._embed(points) - self.mean_) / self.scale_)[:, 1]


ZERO_SHOT_DEFAULT_HORIZON = dt.timedelta(days=30)
"""Horizon for outcome windows that close at discharge (the rollout does not know when discharge comes)."""


def zero_shot_outcomes(task) -> tuple[list[str], dt.timedelta]:
    """The rollout outcomes and horizon that stand for ``task``'s outcome; raises ModelUnavailable when the
    outcome is not an event the model can sample (a length of stay, a lab value above a threshold)."""
    if task.kind == "readmission":
        return [f"VISIT//{vt}//START" for vt in task.prediction_time.visit_types], task.outcome_window.end
    if task.kind in ("inpatient_mortality", "new_diagnosis"):
        return list(task.outcome.codes), task.outcome_window.end or ZERO_SHOT_DEFAULT_HORIZON
    raise ModelUnavailable(
        f"task kind {task.kind!r} has no event the FM can roll out (zero-shot not defined)"
    )


class FMZeroShot:
    """The foundation model's own probability of the outcome: the share of sampled futures from each
    prediction time in which an outcome code occurs within the horizon (``clinfm.model.generate.forecast``).
    With several code globs the largest per-glob share is used (a lower bound on P(any); exact when the
    dataset codes the outcome in one vocabulary). Nothing is trained on the task's labels."""

    input_kind = "points"

    def __init__(
        self, run_dir: str | Path | None, dataset_dir: str | Path, task, seed: int = 0, n_samples: int = 32
    ) -> None:
        self.run_dir, self.dataset_dir, self.task, self.seed, self.n_samples = (
            run_dir,
            Path(dataset_dir),
            task,
            seed,
            n_samples,
        )

    def fit(self, points: list[Point], y: np.ndarray) -> FMZeroShot:
        if self.run_dir is None:
            raise ModelUnavailable("no FM run given (fm_run_dir is None)")
        self.outcomes_, self.horizon_ = zero_shot_outcomes(self.task)
        self.generate_ = _fm_module("generate")
        self.fitted_ = True
        return self

    def predict_proba(self, points: list[Point]) -> np.ndarray:
        _check_fitted(self)
        try:
            forecasts = self.generate_.forecast(
                self.run_dir, self.dataset_dir, points, outcomes=self.outcomes_,
                horizon_days=self.horizon_.total_seconds() / 86400, n_samples=self.n_samples, seed=self.seed,
            )  # fmt: skip
        except FileNotFoundError as exc:
            raise ModelUnavailable(str(exc)) from exc
        return np.array([max(o.probability for o in f.outcomes) for f in forecasts], dtype=np.float64)


MODEL_KINDS = ("count_gbm", "count_lr", "fm_probe", "fm_zeroshot")
DEFAULT_MODELS = ("count_gbm", "count_lr", "fm_probe", "fm_zeroshot")


def make_model(kind: str, *, seed: int = 0, fm_run_dir=None, dataset_dir=None, task=None):
    if kind == "count_gbm":
        return CountGBM(seed=seed)
    if kind == "count_lr":
        return CountLogistic(seed=seed)
    if kind == "fm_probe":
        return FMProbe(fm_run_dir, dataset_dir, seed=seed)
    if kind == "fm_zeroshot":
        return FMZeroShot(fm_run_dir, dataset_dir, task, seed=seed)
    raise ValueError(f"model kind {kind!r} is not one of {MODEL_KINDS}")


def few_label_sample(y: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Indices of ``per_class`` positives and ``per_class`` negatives (all when fewer or ``None``)."""
    y = np.asarray(y, dtype=bool)
    if per_class is None:
        return np.arange(y.size)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    pick = np.r_[
        rng.choice(pos, min(per_class, pos.size), replace=False),
        rng.choice(neg, min(per_class, neg.size), replace=False),
    ]
    return np.sort(pick)


class Recalibrator:
    """Platt (logistic on the logit of the score) or isotonic recalibration, fitted on the tuning split."""

    def __init__(self, method: str = "platt") -> None:
        if method not in ("platt", "isotonic"):
            raise ValueError(f"recalibration method {method!r} is not 'platt' or 'isotonic'")
        self.method = method

    def fit(self, p: np.ndarray, y: np.ndarray) -> Recalibrator:
        p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=int)
        if self.method == "platt":
            self.model_ = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p)[:, None], y)
        else:
            from sklearn.isotonic import IsotonicRegression

            self.model_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
        self.fitted_ = True
        return self

    def transform(self, p: np.ndarray) -> np.ndarray:
        _check_fitted(self)
        p = np.asarray(p, dtype=np.float64)
        if self.method == "platt":
            return self.model_.predict_proba(_logit(p)[:, None])[:, 1]
        return self.model_.predict(p)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
