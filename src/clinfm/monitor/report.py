"""The monitoring report: input drift, prediction drift and performance per window against the policy's thresholds,
as one HTML page (plots embedded as base64 PNG) and a JSON summary in the shape governance's ``pilot`` gate reads
(``{"days", "alerts", "in_bounds", "metrics", ...}``, see ``clinfm.govern.reports``).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl
from jinja2 import Environment, FileSystemLoader, select_autoescape

from clinfm import __version__
from clinfm.engine import ProgressFn
from clinfm.monitor import drift as D
from clinfm.monitor.performance import WindowPerformance, window_performance
from clinfm.monitor.policy import MonitoringPolicy, load_policy
from clinfm.monitor.store import PredictionStore

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True, slots=True)
class Alert:
    """A threshold crossed in one window: what, where (a code for labs), the value and the threshold."""

    kind: str  # input_drift.codes | input_drift.lab | input_drift.unknown_codes | prediction_drift | performance.*
    window_start: str
    window_end: str
    value: float
    threshold: float | list[float]
    message: str
    code: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class WindowReport:
    start: dt.datetime
    end: dt.datetime
    input_events: int = 0
    code_psi: float | None = None
    unknown_share: float | None = None
    lab_psi: dict[str, dict] = field(default_factory=dict)
    predictions: int = 0
    score_psi: float | None = None
    performance: WindowPerformance | None = None

    def as_dict(self) -> dict:
        return {
            "start": self.start.isoformat(), "end": self.end.isoformat(), "input_events": self.input_events,
            "code_psi": _num(self.code_psi), "unknown_share": _num(self.unknown_share), "lab_psi": self.lab_psi,
            "predictions": self.predictions, "score_psi": _num(self.score_psi),
            "performance": self.performance.as_dict() if self.performance else None,
        }  # fmt: skip


@dataclass(slots=True)
class MonitoringSummary:
    """What ``monitor_report`` found; ``as_json()`` is what :func:`attach_summary` attaches (kind ``monitoring``)."""

    model_version: str
    days: float
    alerts: list[Alert]
    windows: list[WindowReport]
    policy: MonitoringPolicy
    reference: dict[str, Any]
    pending_outcomes: int
    feedback: dict | None = None
    report_path: Path | None = None
    json_path: Path | None = None

    @property
    def in_bounds(self) -> bool:
        return not self.alerts

    def metrics(self) -> dict[str, Any]:
        """The latest judged window's performance and the worst drift over all windows (governance reads these)."""
        out: dict[str, Any] = {}
        judged = [w.performance for w in self.windows if w.performance and w.performance.evaluated]
        if judged:
            last = judged[-1]
            out["auroc"] = last.auroc.as_dict() if last.auroc else None
            out["calibration_intercept"] = _num(last.calibration_intercept)
            out["observed_expected"] = _num(last.observed_expected)
        for name in ("code_psi", "score_psi", "unknown_share"):
            values = [getattr(w, name) for w in self.windows if getattr(w, name) is not None]
            if values:
                out[f"max_{name}"] = _num(max(values))
        labs = [v["psi"] for w in self.windows for v in w.lab_psi.values() if v["psi"] is not None]
        if labs:
            out["max_lab_psi"] = _num(max(labs))
        return {k: v for k, v in out.items() if v is not None}

    def as_json(self) -> dict:
        return {
            "kind": "monitoring",
            "model_version": self.model_version,
            "days": round(self.days, 2),
            "alerts": [a.as_dict() for a in self.alerts],
            "in_bounds": self.in_bounds,
            "metrics": self.metrics(),
            "windows": [w.as_dict() for w in self.windows],
            "pending_outcomes": self.pending_outcomes,
            "reference": {k: self.reference.get(k) for k in ("n_events", "unknown_share", "settings")}
            | {"labs": sorted(self.reference.get("labs", {})), "top_codes": [c for c in self.reference.get("codes", {}) if c != D.OTHER]},
            "policy": self.policy.model_dump(mode="json"),
            "feedback": self.feedback,
            "clinfm_version": __version__,
        }  # fmt: skip


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _windows(
    first: dt.datetime, last: dt.datetime, length: dt.timedelta
) -> list[tuple[dt.datetime, dt.datetime]]:
    out, t = [], first
    while t <= last:
        out.append((t, t + length))
        t += length
    return out


def monitor_report(
    model_version: str,
    store: PredictionStore | str | Path | None = None,
    policy: MonitoringPolicy | str | Path | None = None,
    out_html: str | Path | None = None,
    *,
    feedback: Any = None,
    progress: ProgressFn | None = None,
) -> MonitoringSummary:
    """Monitor ``model_version`` from what the store holds: per window of ``policy.window``, input drift (codes,
    labs, unknown codes) against the version's reference profile, score drift, and performance once outcomes are
    known; alerts where the policy's thresholds are crossed. Writes ``out_html`` and ``out_html``'s ``.json``
    twin when given. ``feedback``: a :class:`clinfm.monitor.feedback.FeedbackSummary` to include."""
    policy = load_policy(policy)
    store = store if isinstance(store, PredictionStore) else PredictionStore(store)
    reference = store.reference(model_version) or {}
    preds = store.predictions(model_version)
    inputs = store.input_windows(model_version)
    if preds.height == 0 and not inputs:
        raise LookupError(f"the store {store!r} holds nothing for model version {model_version!r}")
    moments = [w.start for w in inputs] + [w.end for w in inputs] + preds["prediction_time"].to_list()
    first, last = min(moments), max(moments)
    spans = _windows(first, last, policy.window)
    windows, alerts = [], []
    for i, (start, end) in enumerate(spans, 1):
        w = WindowReport(start, end)
        _input_drift(w, [x.counts for x in inputs if start <= x.start < end], reference, policy, alerts)
        in_window = preds.filter((pl.col("prediction_time") >= start) & (pl.col("prediction_time") < end))
        _prediction_drift(w, in_window, reference, policy, alerts)
        perf = policy.performance
        w.performance = window_performance(preds, start, end, min_labels=perf.min_labels, min_positives=perf.min_positives,
                                           n_resamples=perf.n_resamples, seed=policy.seed)  # fmt: skip
        _performance_alerts(w, policy, alerts)
        windows.append(w)
        if progress is not None:
            progress(i, len(spans))
    summary = MonitoringSummary(
        model_version=model_version, days=(last - first).total_seconds() / 86400, alerts=alerts, windows=windows,
        policy=policy, reference=reference, pending_outcomes=int(preds["outcome"].is_null().sum()),
        feedback=feedback.as_dict() if hasattr(feedback, "as_dict") else feedback,
    )  # fmt: skip
    if out_html is not None:
        summary.report_path, summary.json_path = write_report(summary, Path(out_html))
    return summary


def _where(w: WindowReport) -> tuple[str, str]:
    return w.start.isoformat(), w.end.isoformat()


def _input_drift(
    w: WindowReport, counts: list[dict], reference: dict, policy: MonitoringPolicy, alerts: list
) -> None:
    if not counts or not reference:
        return
    c = D.merge_counts(counts)
    w.input_events = c["n_events"]
    rule = policy.input_drift
    if c["n_events"] < rule.min_events:
        return
    w.code_psi = D.code_psi(reference, c)
    w.unknown_share = c["unknown"] / c["n_events"]
    code_limit = rule.code_psi_max + D.chance_psi(policy.reference.top_codes + 1, c["n_events"])
    if w.code_psi > code_limit:
        alerts.append(Alert("input_drift.codes", *_where(w), round(w.code_psi, 4), round(code_limit, 4),
                            f"code frequencies shifted: PSI {w.code_psi:.3f} > {code_limit:.3f} "
                            f"({rule.code_psi_max} + sampling margin for {c['n_events']} events)"))  # fmt: skip
    limit = reference["unknown_share"] + rule.unknown_share_increase_max
    if w.unknown_share > limit:
        alerts.append(Alert("input_drift.unknown_codes", *_where(w), round(w.unknown_share, 4), round(limit, 4),
                            f"{w.unknown_share:.1%} of events carry codes the model cannot see "
                            f"(training data: {reference['unknown_share']:.1%})"))  # fmt: skip
    for code, (value, n) in D.lab_psi(reference, c).items():
        judged = n >= rule.min_lab_values and math.isfinite(value)
        w.lab_psi[code] = {"psi": _num(value) if judged else None, "n": n}
        lab_limit = rule.lab_psi_max + D.chance_psi(policy.reference.bins, n)
        if judged and value > lab_limit:
            alerts.append(Alert("input_drift.lab", *_where(w), round(value, 4), round(lab_limit, 4),
                                f"{code} values shifted: PSI {value:.3f} > {lab_limit:.3f} ({n} values)", code))  # fmt: skip


def _prediction_drift(
    w: WindowReport, preds: pl.DataFrame, reference: dict, policy: MonitoringPolicy, alerts: list
) -> None:
    scores = preds["score"].drop_nulls().to_numpy()
    w.predictions = preds.height
    rule = policy.prediction_drift
    if not reference.get("scores") or scores.size < rule.min_predictions:
        return
    w.score_psi = D.score_psi(reference, scores)
    limit = rule.score_psi_max + D.chance_psi(policy.reference.bins, scores.size)
    if w.score_psi > limit:
        alerts.append(Alert("prediction_drift", *_where(w), round(w.score_psi, 4), round(limit, 4),
                            f"score distribution shifted: PSI {w.score_psi:.3f} > {limit:.3f} ({scores.size} scores)"))  # fmt: skip


def _performance_alerts(w: WindowReport, policy: MonitoringPolicy, alerts: list) -> None:
    p, rule = w.performance, policy.performance
    if p is None or not p.evaluated:
        return
    # a window's AUROC alerts only when its whole 95% interval is below the bound: few outcomes cannot show decay
    below = p.auroc is not None and (p.auroc.ci[1] if p.auroc.ci else p.auroc.value) < rule.min_auroc
    if below:
        ci = f" (95% CI {p.auroc.ci[0]:.3f}-{p.auroc.ci[1]:.3f})" if p.auroc.ci else ""
        alerts.append(Alert("performance.auroc", *_where(w), round(p.auroc.value, 4), rule.min_auroc,
                            f"AUROC {p.auroc.value:.3f}{ci} < {rule.min_auroc} on {p.labels} outcomes"))  # fmt: skip
    if (
        p.calibration_intercept is not None
        and abs(p.calibration_intercept) > rule.max_abs_calibration_intercept
    ):
        alerts.append(Alert("performance.calibration_intercept", *_where(w), round(p.calibration_intercept, 4),
                            rule.max_abs_calibration_intercept,
                            f"calibration-in-the-large {p.calibration_intercept:+.3f} (|a| > {rule.max_abs_calibration_intercept})"))  # fmt: skip
    oe = p.observed_expected
    lo, hi = rule.observed_expected
    if oe is not None and not lo <= oe <= hi:
        alerts.append(Alert("performance.observed_expected", *_where(w), round(oe, 4), [lo, hi],
                            f"observed/expected {oe:.2f} ({p.observed:.3f} vs {p.expected:.3f}) outside [{lo}, {hi}]"))  # fmt: skip


# --- governance ---------------------------------------------------------------------------------------------
def attach_summary(
    version_id: str, summary: MonitoringSummary | dict, *, actor: str = "clinfm-monitor", org: str | None = None, db=None
):  # fmt: skip
    """Attach the summary to the registered version as a ``monitoring`` report (what the ``pilot`` gate reads)."""
    from clinfm.govern.registry import attach_report

    document = summary.as_json() if isinstance(summary, MonitoringSummary) else summary
    return attach_report(version_id, document, kind="monitoring", actor=actor, org=org, db=db)


# --- HTML ---------------------------------------------------------------------------------------------------
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x


def plots(s: MonitoringSummary) -> dict[str, str]:
    """Performance, calibration, drift and unknown codes over time, as base64 PNG."""
    if not s.windows:
        return {}
    mid = [w.start + (w.end - w.start) / 2 for w in s.windows]
    out = {}
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    auroc = [w.performance.auroc if w.performance else None for w in s.windows]
    ax.plot(mid, [_nan(a.value if a else None) for a in auroc], "o-", label="AUROC")
    lo = [_nan(a.ci[0] if a and a.ci else None) for a in auroc]
    hi = [_nan(a.ci[1] if a and a.ci else None) for a in auroc]
    ax.fill_between(mid, lo, hi, alpha=0.2, label="95% CI")
    ax.axhline(s.policy.performance.min_auroc, color="r", ls="--", lw=0.8, label="alert below")
    ax.set_title("Discrimination per window"), ax.legend(fontsize=7)
    out["auroc"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    perf = [w.performance for w in s.windows]
    ax.plot(mid, [_nan(p.observed if p else None) for p in perf], "o-", label="observed rate")
    ax.plot(mid, [_nan(p.expected if p else None) for p in perf], "s--", label="expected (mean score)")
    ax.set_title("Observed vs expected"), ax.legend(fontsize=7)
    out["calibration"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.plot(mid, [_nan(w.code_psi) for w in s.windows], "o-", label="codes")
    ax.plot(mid, [_nan(w.score_psi) for w in s.windows], "s-", label="scores")
    for code in s.reference.get("labs", {}):
        ax.plot(mid, [_nan((w.lab_psi.get(code) or {}).get("psi")) for w in s.windows], ".--", label=code)
    ax.axhline(s.policy.input_drift.code_psi_max, color="r", ls="--", lw=0.8)
    ax.set_title("Population stability index"), ax.legend(fontsize=7)
    out["psi"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.plot(mid, [_nan(w.unknown_share) for w in s.windows], "o-", label="window")
    ax.axhline(s.reference.get("unknown_share", 0.0), color="k", ls=":", lw=0.8, label="training data")
    ax.axhline(s.reference.get("unknown_share", 0.0) + s.policy.input_drift.unknown_share_increase_max,
               color="r", ls="--", lw=0.8, label="alert above")  # fmt: skip
    ax.set_title("Share of events with unknown codes"), ax.legend(fontsize=7)
    out["unknown"] = _png(fig)
    return out


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def write_report(summary: MonitoringSummary, path: Path) -> tuple[Path, Path]:
    """Write the HTML page and its JSON twin (``path`` with ``.json``); returns both paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = _fmt
    data = summary.as_json()
    html = env.get_template("monitoring.html.j2").render(s=data, plots=plots(summary))
    path.write_text(html, encoding="utf-8")
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    return path, json_path


__all__ = ["Alert", "MonitoringSummary", "WindowReport", "attach_summary", "monitor_report", "write_report"]
