"""The report documents governance reads (validation reports, monitoring summaries), read tolerantly.

Readers never fail on a missing key: they collect what is absent in ``missing`` so a gate can refuse, and a card
can say so, in words. The validation report (``attach_report(..., kind="validation")``) is read in this shape;
every key is optional, though the ``validated`` gate needs the primary model's AUROC with a confidence interval,
its calibration error, and the four-fifths flag::

    {
      "task": "mortality_30d",              # or {"name": ..., "prediction_time": ..., "outcome_window": ...}
      "setting": "internal",                # internal (same source as training, default) | external | local
      "data_source": "...", "conducted_by": "...", "method": "...",   # said of external and local validations
      "cohort": "adults admitted ...",      # inclusion and exclusion criteria (text, or clinfm.validate's table)
      "task_config": {...},                 # the labeler's definition (prediction time, windows, exclusions)
      "n": 1234, "positives": 123,
      "primary_model": "clinfm",            # which entry of "models" is the registered version (else: the
                                            # only model, the only one named fm_* / clinfm*, or the only non-baseline)
      "models": {
        "clinfm": {"auroc": {"value": 0.81, "ci": [0.78, 0.84]}, "auprc": {"value": 0.4, "ci": [0.35, 0.45]},
                   "calibration_error": {"value": 0.03, "ci": [0.02, 0.05]}, "brier": 0.08},
        "lightgbm_baseline": {...}
      },
      "subgroups": [
        {"attribute": "sex", "group": "F", "n": 600, "positives": 60,
         "auroc": {"value": 0.80, "ci": [0.75, 0.85]}, "calibration_error": 0.04, "selection_rate": 0.12}
      ],
      "fairness": {"four_fifths_flag": false, "min_selection_rate_ratio": 0.91, "attribute": "race"}
    }

A metric is a number or ``{"value": x, "ci": [lo, hi]}`` (``lower``/``upper`` also read); ``ece`` is read as
``calibration_error``, ``roc_auc``/``auc`` as ``auroc``. Without ``models``, top-level metrics are the primary
model's. ``subgroups`` may also be ``{attribute: {group: {...}}}``; ``fairness`` may hold one
``{"four_fifths_flag": ...}`` per attribute; subgroup rows naming a ``model`` other than the primary are skipped. The monitoring summary (``kind="monitoring"``) is
``{"days": 30, "alerts": [], "in_bounds": true, "metrics": {...}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALIASES = {
    "ece": "calibration_error", "expected_calibration_error": "calibration_error", "calibration": "calibration_error",
    "roc_auc": "auroc", "auc": "auroc", "auc_roc": "auroc", "pr_auc": "auprc", "average_precision": "auprc",
}  # fmt: skip
NOT_METRICS = {"n", "positives", "negatives", "attribute", "group", "variable", "value", "level", "models", "model",
               "threshold", "fit_seconds", "seconds", "prevalence"}  # fmt: skip


@dataclass(frozen=True)
class Metric:
    value: float
    lo: float | None = None
    hi: float | None = None

    @property
    def has_ci(self) -> bool:
        return self.lo is not None and self.hi is not None

    def __str__(self) -> str:
        return f"{self.value:.3f}" + (f" ({self.lo:.3f}–{self.hi:.3f})" if self.has_ci else "")


@dataclass
class Subgroup:
    attribute: str
    group: str
    n: int | None
    positives: int | None
    metrics: dict[str, Metric]


@dataclass
class ValidationSummary:
    """A validation report as read: the primary model's metrics, all models, subgroups, fairness, what is missing."""

    task: str | None
    setting: str
    primary: str | None
    models: dict[str, dict[str, Metric]]
    subgroups: list[Subgroup]
    four_fifths_flag: bool | None
    fairness: dict[str, Any]
    n: int | None
    missing: list[str] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, Metric]:
        return self.models.get(self.primary, {}) if self.primary else {}


@dataclass
class MonitoringSummary:
    days: float | None
    alerts: list[Any]
    in_bounds: bool | None
    metrics: dict[str, Metric]
    missing: list[str]


def parse_metric(value: Any) -> Metric | None:
    """A number, or a dict with ``value`` (``estimate``, ``point``) and ``ci`` (or ``lower``/``upper``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Metric(float(value))
    if not isinstance(value, dict):
        return None
    point = next((value[k] for k in ("value", "estimate", "point", "mean") if k in value), None)
    if isinstance(point, bool) or not isinstance(point, int | float):
        return None
    ci = value.get("ci") or value.get("ci95") or value.get("confidence_interval")
    lo, hi = (
        (ci[0], ci[1])
        if isinstance(ci, list | tuple) and len(ci) == 2
        else (value.get("lower", value.get("ci_low")), value.get("upper", value.get("ci_high")))
    )
    bounds = [float(b) if isinstance(b, int | float) and not isinstance(b, bool) else None for b in (lo, hi)]
    return Metric(float(point), *bounds)


def parse_metrics(block: Any) -> dict[str, Metric]:
    if not isinstance(block, dict):
        return {}
    out: dict[str, Metric] = {}
    for key, value in block.items():
        name = ALIASES.get(str(key).lower(), str(key).lower())
        metric = None if name in NOT_METRICS else parse_metric(value)
        if metric is not None:
            out.setdefault(name, metric)
    return out


def _task(doc: dict[str, Any]) -> str | None:
    task = doc.get("task")
    if isinstance(task, dict):
        task = task.get("name") or task.get("id")
    return str(task) if task else None


def _primary(
    doc: dict[str, Any], models: dict[str, Any], model_name: str | None, missing: list[str]
) -> str | None:
    named = doc.get("primary_model")
    if named in models:
        return named
    if model_name in models:
        return model_name
    if len(models) == 1:
        return next(iter(models))
    foundation = [m for m in models if m.lower().startswith(("fm_", "clinfm"))]
    if len(foundation) == 1:
        return foundation[0]
    not_baselines = [m for m in models if "baseline" not in m.lower()]
    if len(not_baselines) == 1:
        return not_baselines[0]
    missing.append(
        f"primary_model (the report has models {sorted(models)} and does not say which is this one: "
        "attach it with primary_model=...)"
    )
    return None


def _subgroups(raw: Any, primary: str | None) -> list[Subgroup]:
    rows: list[dict[str, Any]] = []
    if isinstance(raw, list):
        rows = [r for r in raw if isinstance(r, dict)]
    elif isinstance(raw, dict):  # {attribute: {group: {...}}}
        rows = [
            {"attribute": a, "group": g, **v}
            for a, groups in raw.items()
            if isinstance(groups, dict)
            for g, v in groups.items()
            if isinstance(v, dict)
        ]
    if primary is not None:  # clinfm.validate writes one row per model and group
        rows = [r for r in rows if r.get("model") in (None, primary)]
    out = []
    for row in rows:
        block = row["models"].get(primary, {}) if isinstance(row.get("models"), dict) else row
        n, positives = row.get("n"), row.get("positives")
        out.append(
            Subgroup(
                attribute=str(row.get("attribute") or row.get("variable") or "?"),
                group=str(row.get("group") if row.get("group") is not None else row.get("level", "?")),
                n=n if isinstance(n, int) else None,
                positives=positives if isinstance(positives, int) else None,
                metrics=parse_metrics(block),
            )
        )
    return out


def _four_fifths(fairness: dict[str, Any]) -> bool | None:
    if isinstance(fairness.get("four_fifths_flag"), bool):
        return fairness["four_fifths_flag"]
    flags = [
        v["four_fifths_flag"]
        for v in fairness.values()
        if isinstance(v, dict) and isinstance(v.get("four_fifths_flag"), bool)
    ]
    return any(flags) if flags else None


def read_validation(doc: dict[str, Any], model_name: str | None = None) -> ValidationSummary:
    """Read a validation report; ``model_name`` (the registered name) helps find the primary model."""
    missing: list[str] = []
    raw_models = doc.get("models") if isinstance(doc.get("models"), dict) else None
    if raw_models is None:
        raw_models = {model_name or "model": doc} if parse_metrics(doc) else {}
    models = {str(name): parse_metrics(block) for name, block in raw_models.items()}
    if not models:
        missing.append("models (no metrics found)")
    primary = _primary(doc, models, model_name, missing) if models else None
    metrics = models.get(primary, {}) if primary else {}
    for name in ("auroc", "calibration_error"):
        if primary and name not in metrics:
            missing.append(f"models.{primary}.{name}")
    if "auroc" in metrics and not metrics["auroc"].has_ci:
        missing.append(f"models.{primary}.auroc.ci (confidence interval)")
    subgroups = _subgroups(doc.get("subgroups"), primary)
    if not subgroups:
        missing.append("subgroups (no subgroup table)")
    fairness: dict[str, Any] = doc["fairness"] if isinstance(doc.get("fairness"), dict) else {}
    flag = _four_fifths(fairness)
    if flag is None:
        missing.append("fairness.four_fifths_flag")
    if not _task(doc):
        missing.append("task")
    n = doc.get("n")
    if not isinstance(n, int):  # clinfm.validate: the test split's label count in the cohort table
        cohort: dict[str, Any] = doc["cohort"] if isinstance(doc.get("cohort"), dict) else {}
        split = cohort.get(str(doc.get("split")))
        n = split.get("labels") if isinstance(split, dict) else None
    return ValidationSummary(
        task=_task(doc),
        setting=str(doc.get("setting") or "internal"),
        primary=primary,
        models=models,
        subgroups=subgroups,
        four_fifths_flag=flag,
        fairness=fairness,
        n=n if isinstance(n, int) else None,
        missing=missing,
        document=doc,
    )


def read_monitoring(doc: dict[str, Any]) -> MonitoringSummary:
    missing = []
    days = doc.get("days")
    if isinstance(days, bool) or not isinstance(days, int | float):
        days = None
        missing.append("days")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        missing.append("alerts")
        alerts = []
    in_bounds = doc.get("in_bounds") if isinstance(doc.get("in_bounds"), bool) else None
    return MonitoringSummary(days, alerts, in_bounds, parse_metrics(doc.get("metrics")), missing)
