"""The monitoring report: input drift, prediction drift, performance and the assistant per window against the
policy's thresholds, alerts merged into incidents, as one HTML page (plots first, embedded as base64 PNG, tables
below) and a JSON summary in the shape governance's ``pilot`` gate reads (``{"days", "alerts", "in_bounds",
"metrics", ...}``, see ``clinfm.govern.reports``).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from jinja2 import Environment, FileSystemLoader, select_autoescape

from clinfm import __version__
from clinfm.engine import ProgressFn
from clinfm.monitor import drift as D
from clinfm.monitor.assistant import AssistantCall, AssistantWindow, assistant_alerts, assistant_window
from clinfm.monitor.incidents import Alert, Budget, Incident, budget, group_incidents
from clinfm.monitor.performance import WindowPerformance, window_performance
from clinfm.monitor.policy import MonitoringPolicy, load_policy
from clinfm.monitor.store import PredictionStore

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(slots=True)
class WindowReport:
    start: dt.datetime
    end: dt.datetime
    index: int = 0
    reference: str = "validation"  # which reference this window was compared with
    input_events: int = 0
    code_psi: float | None = None
    code_limit: float | None = None
    unknown_share: float | None = None
    lab_psi: dict[str, dict] = field(default_factory=dict)  # code: {psi, n, limit}
    scored: int = 0
    missing: dict[str, dict] = field(default_factory=dict)  # key input: {share, reference, n}
    predictions: int = 0
    score_psi: float | None = None
    score_limit: float | None = None
    score_quantiles: list[float] | None = None  # 10th, 25th, 50th, 75th, 90th percentiles
    performance: WindowPerformance | None = None
    assistant: AssistantWindow | None = None
    incidents: list[str] = field(default_factory=list)
    judged: set[tuple[str, str | None]] = field(default_factory=set)
    """The checks that ran in this window, (alert kind, code): what can end an incident."""

    @property
    def anchor(self) -> str:
        return f"w{self.index}"

    def as_dict(self) -> dict:
        return {
            "index": self.index, "anchor": self.anchor, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "reference": self.reference, "input_events": self.input_events, "code_psi": _num(self.code_psi),
            "code_limit": _num(self.code_limit), "unknown_share": _num(self.unknown_share), "lab_psi": self.lab_psi,
            "scored": self.scored, "missing": self.missing, "predictions": self.predictions,
            "score_psi": _num(self.score_psi), "score_limit": _num(self.score_limit),
            "score_quantiles": self.score_quantiles,
            "performance": self.performance.as_dict() if self.performance else None,
            "assistant": self.assistant.as_dict() if self.assistant else None, "incidents": self.incidents,
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
    incidents: list[Incident] = field(default_factory=list)
    budget: Budget | None = None
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
            "window_days": round(self.policy.window.total_seconds() / 86400, 2),
            "alerts": [a.as_dict() for a in self.alerts],
            "incidents": [i.as_dict() for i in self.incidents],
            "budget": self.budget.as_dict() if self.budget else None,
            "in_bounds": self.in_bounds,
            "metrics": self.metrics(),
            "windows": [w.as_dict() for w in self.windows],
            "pending_outcomes": self.pending_outcomes,
            "reference": {k: self.reference.get(k) for k in ("n_events", "unknown_share", "settings", "window", "points")}
            | {"labs": sorted(self.reference.get("labs", {})), "key_inputs": sorted(self.reference.get("missing", {})),
               "top_codes": [c for c in self.reference.get("codes", {}) if c != D.OTHER],
               "mode": self.policy.reference.mode},
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
    assistant: Sequence[AssistantCall] | None = None,
    progress: ProgressFn | None = None,
) -> MonitoringSummary:
    """Monitor ``model_version`` from what the store holds: per window of ``policy.window``, input drift (codes,
    labs, unknown codes, missing key inputs) against the policy's reference, score drift, performance once
    outcomes are known, and the assistant's calls (``assistant``: per-call records, default the store's);
    alerts where the policy's thresholds are crossed, merged into incidents. Writes ``out_html`` and its
    ``.json`` twin when given. ``feedback``: a :class:`clinfm.monitor.feedback.FeedbackSummary` to include."""
    from clinfm.monitor.store import assistant_calls

    policy = load_policy(policy)
    store = store if isinstance(store, PredictionStore) else PredictionStore(store)
    reference = store.reference(model_version) or {}
    preds = store.predictions(model_version)
    inputs = store.input_windows(model_version)
    calls = list(assistant) if assistant is not None else assistant_calls(store)
    if preds.height == 0 and not inputs and not calls:
        raise LookupError(f"the store {store!r} holds nothing for model version {model_version!r}")
    moments = [w.start for w in inputs] + [w.end for w in inputs] + preds["prediction_time"].to_list()
    moments += [c.time for c in calls]
    first, last = min(moments), max(moments)
    spans = _windows(first, last, policy.window)
    windows: list[WindowReport] = []
    alerts: list[Alert] = []
    merged: list[dict | None] = []
    for i, (start, end) in enumerate(spans):
        w = WindowReport(start, end, index=i)
        counts = D.merge_counts([x.counts for x in inputs if start <= x.start < end]) if inputs else None
        merged.append(counts)
        if counts is not None and reference:
            base, w.reference = _reference_for(i, spans, merged, reference, policy)
            _input_drift(w, counts, base, reference, policy, alerts)
        in_window = preds.filter((pl.col("prediction_time") >= start) & (pl.col("prediction_time") < end))
        _prediction_drift(w, in_window, reference, policy, alerts)
        perf = policy.performance
        w.performance = window_performance(preds, start, end, min_labels=perf.min_labels, min_positives=perf.min_positives,
                                           n_resamples=perf.n_resamples, seed=policy.seed)  # fmt: skip
        _performance_alerts(w, policy, alerts)
        if calls:
            w.assistant = assistant_window([c for c in calls if start <= c.time < end])
            if w.assistant.calls >= policy.assistant.min_calls:
                w.judged |= {(f"assistant.{k}", None) for k in ("removed_statements", "abstention", "latency", "tokens")}
            if w.assistant.ratings >= policy.assistant.min_ratings:
                w.judged.add(("assistant.mean_rating", None))
            alerts += assistant_alerts(w.assistant, policy.assistant, i, start, end)
        windows.append(w)
        if progress is not None:
            progress(i + 1, len(spans))
    judged: dict[tuple[str, str | None], list[int]] = {}
    for w in windows:
        for key in w.judged:
            judged.setdefault(key, []).append(w.index)
    incidents = group_incidents(alerts, policy.incidents, judged)
    for inc in incidents:
        for i in inc.windows:
            windows[i].incidents.append(inc.id)
    summary = MonitoringSummary(
        model_version=model_version, days=(last - first).total_seconds() / 86400, alerts=alerts, windows=windows,
        policy=policy, reference=reference, pending_outcomes=int(preds["outcome"].is_null().sum()),
        incidents=incidents, budget=budget(incidents, first, last, policy.incidents),
        feedback=feedback.as_dict() if hasattr(feedback, "as_dict") else feedback,
    )  # fmt: skip
    if out_html is not None:
        summary.report_path, summary.json_path = write_report(summary, Path(out_html))
    return summary


def _where(w: WindowReport) -> tuple[str, str]:
    return w.start.isoformat(), w.end.isoformat()


def _reference_for(
    i: int, spans: list[tuple[dt.datetime, dt.datetime]], merged: list[dict | None], reference: dict,
    policy: MonitoringPolicy,
) -> tuple[dict, str]:  # fmt: skip
    """The counts window ``i`` is compared with: the validation profile, or (rolling, seasonal) a sum of
    earlier windows once they hold enough events; falls back to the validation profile."""
    rule = policy.reference
    if rule.mode == "rolling":
        earlier = [c for c in merged[max(0, i - rule.rolling_windows):i] if c is not None]
        chosen = earlier if len(earlier) == rule.rolling_windows else []
    elif rule.mode == "seasonal":
        year_ago = spans[i][0] - dt.timedelta(days=365)
        chosen = [c for (s, _), c in zip(spans[:i], merged[:i])
                  if c is not None and abs(s - year_ago) <= policy.window * 1.5]  # fmt: skip
    else:
        chosen = []
    if chosen:
        counts = D.merge_counts(chosen)
        if counts["n_events"] >= policy.input_drift.min_events:
            if not counts["scored"]:  # missingness is judged against the validation points then
                counts["scored"], counts["missing"] = reference.get("points", 0), dict(reference.get("missing", {}))
            return counts, rule.mode
    return D.reference_counts(reference), "validation"


def _input_drift(
    w: WindowReport, c: dict, base: dict, reference: dict, policy: MonitoringPolicy, alerts: list
) -> None:
    """Input drift of window counts ``c`` against ``base`` (reference counts in the same bins)."""
    w.input_events, w.scored = c["n_events"], c.get("scored", 0)
    rule, q = policy.input_drift, policy.input_drift.noise_quantile
    _missingness(w, c, base, policy, alerts)
    if c["n_events"] < rule.min_events:
        return
    w.judged |= {("input_drift.codes", None), ("input_drift.unknown_codes", None)}
    keys = list(reference["codes"])
    window_codes = [c["codes"].get(k, 0) for k in keys]
    ref_codes = [base["codes"].get(k, 0) for k in keys]
    w.code_psi = D.psi(ref_codes, window_codes)
    w.unknown_share = c["unknown"] / c["n_events"]
    w.code_limit = rule.code_psi_max + D.noise_psi(len(keys), sum(window_codes), sum(ref_codes), q)
    if math.isfinite(w.code_psi) and w.code_psi > w.code_limit:
        changes = tuple(x.as_dict() for x in D.top_changes(keys, ref_codes, window_codes))
        alerts.append(Alert("input_drift.codes", *_where(w), round(w.code_psi, 4), round(w.code_limit, 4),
                            f"shares of the model's codes shifted: PSI {w.code_psi:.3f} > {w.code_limit:.3f} "
                            f"({rule.code_psi_max} + sampling margin for {sum(window_codes)} events)",
                            window=w.index, changes=changes))  # fmt: skip
    ref_unknown = base["unknown"] / base["n_events"] if base["n_events"] else reference.get("unknown_share", 0.0)
    limit = ref_unknown + rule.unknown_share_increase_max
    if w.unknown_share > limit:
        unseen = sorted(c.get("unknown_codes", {}).items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        changes = tuple(D.Change(code, 0.0, n / c["n_events"], 0.0).as_dict() for code, n in unseen)
        alerts.append(Alert("input_drift.unknown_codes", *_where(w), round(w.unknown_share, 4), round(limit, 4),
                            f"{w.unknown_share:.1%} of events carry codes the model cannot see "
                            f"(reference: {ref_unknown:.1%})", window=w.index, changes=changes))  # fmt: skip
    for code, (value, n) in D.lab_psi(base, c).items():
        ref_hist = base["labs"].get(code) or reference["labs"][code]["counts"]
        judged = n >= rule.min_lab_values and math.isfinite(value)
        lab_limit = rule.lab_psi_max + D.noise_psi(len(ref_hist), n, sum(ref_hist), q)
        w.lab_psi[code] = {"psi": _num(value) if judged else None, "n": n, "limit": _num(lab_limit)}
        if judged:
            w.judged.add(("input_drift.lab", code))
        if judged and value > lab_limit:
            names = D.lab_bins(reference["labs"][code]["edges"])
            changes = tuple(x.as_dict() for x in D.top_changes(names, ref_hist, c["labs"][code]))
            alerts.append(Alert("input_drift.lab", *_where(w), round(value, 4), round(lab_limit, 4),
                                f"{code} values shifted: PSI {value:.3f} > {lab_limit:.3f} ({n} values)", code,
                                window=w.index, changes=changes))  # fmt: skip


def _missingness(w: WindowReport, c: dict, base: dict, policy: MonitoringPolicy, alerts: list) -> None:
    """Share of the window's scored points lacking each key input, against the reference's share."""
    rule = policy.input_drift
    scored, ref_points = c.get("scored", 0), base.get("scored", 0)
    if not scored or not ref_points:
        return
    for code, ref_missing in base.get("missing", {}).items():
        share, before = c.get("missing", {}).get(code, 0) / scored, ref_missing / ref_points
        w.missing[code] = {"share": round(share, 4), "reference": round(before, 4), "n": scored}
        if scored >= rule.min_scored:
            w.judged.add(("input_drift.missingness", code))
        if scored >= rule.min_scored and share > before + rule.missingness_increase_max:
            limit = round(before + rule.missingness_increase_max, 4)
            alerts.append(Alert("input_drift.missingness", *_where(w), round(share, 4), limit,
                                f"{share:.0%} of {scored} scored points lack key input {code} "
                                f"(reference: {before:.0%})", code, window=w.index,
                                changes=(D.Change(f"missing {code}", before, share, 0.0).as_dict(),)))  # fmt: skip


def _prediction_drift(
    w: WindowReport, preds: pl.DataFrame, reference: dict, policy: MonitoringPolicy, alerts: list
) -> None:
    scores = preds["score"].drop_nulls().to_numpy()
    w.predictions = preds.height
    if scores.size:
        w.score_quantiles = [round(float(x), 5) for x in np.quantile(scores, [0.1, 0.25, 0.5, 0.75, 0.9])]
    rule = policy.prediction_drift
    if not reference.get("scores") or scores.size < rule.min_predictions:
        return
    ref = reference["scores"]
    w.judged.add(("prediction_drift", None))
    w.score_psi = D.score_psi(reference, scores)
    w.score_limit = rule.score_psi_max + D.noise_psi(len(ref["counts"]), scores.size, ref.get("n") or math.inf,
                                                     policy.input_drift.noise_quantile)  # fmt: skip
    if w.score_psi > w.score_limit:
        names = D.lab_bins(ref["edges"])
        changes = tuple(x.as_dict() for x in D.top_changes(names, ref["counts"], D.histogram(scores, ref["edges"])))
        alerts.append(Alert("prediction_drift", *_where(w), round(w.score_psi, 4), round(w.score_limit, 4),
                            f"score distribution shifted: PSI {w.score_psi:.3f} > {w.score_limit:.3f} "
                            f"({scores.size} scores)", window=w.index, changes=changes))  # fmt: skip


def _performance_alerts(w: WindowReport, policy: MonitoringPolicy, alerts: list) -> None:
    p, rule = w.performance, policy.performance
    if p is None or not p.evaluated:
        return
    where = (*_where(w),)
    w.judged |= {(k, None) for k in ("performance.auroc", "performance.calibration_slope",
                                      "performance.calibration_intercept", "performance.observed_expected")}  # fmt: skip
    # a window's AUROC alerts only when its whole 95% interval is below the bound: few outcomes cannot show decay
    below = p.auroc is not None and (p.auroc.ci[1] if p.auroc.ci else p.auroc.value) < rule.min_auroc
    if below:
        ci = f" (95% CI {p.auroc.ci[0]:.3f}-{p.auroc.ci[1]:.3f})" if p.auroc.ci else ""
        alerts.append(Alert("performance.auroc", *where, round(p.auroc.value, 4), rule.min_auroc,
                            f"AUROC {p.auroc.value:.3f}{ci} < {rule.min_auroc} on {p.labels} outcomes",
                            window=w.index))  # fmt: skip
    slope, (lo, hi) = p.calibration_slope, rule.calibration_slope
    if slope is not None and slope.ci and (slope.ci[1] < lo or slope.ci[0] > hi):
        alerts.append(Alert("performance.calibration_slope", *where, round(slope.value, 4), [lo, hi],
                            f"calibration slope {slope.value:.2f} (95% CI {slope.ci[0]:.2f}-{slope.ci[1]:.2f}) "
                            f"outside [{lo}, {hi}]", window=w.index))  # fmt: skip
    if (
        p.calibration_intercept is not None
        and abs(p.calibration_intercept) > rule.max_abs_calibration_intercept
    ):
        alerts.append(Alert("performance.calibration_intercept", *where, round(p.calibration_intercept, 4),
                            rule.max_abs_calibration_intercept,
                            f"calibration-in-the-large {p.calibration_intercept:+.3f} (|a| > {rule.max_abs_calibration_intercept})",
                            window=w.index))  # fmt: skip
    oe = p.observed_expected
    lo, hi = rule.observed_expected
    if oe is not None and not lo <= oe <= hi:
        alerts.append(Alert("performance.observed_expected", *where, round(oe, 4), [lo, hi],
                            f"observed/expected {oe:.2f} ({p.observed:.3f} vs {p.expected:.3f}) outside [{lo}, {hi}]",
                            window=w.index))  # fmt: skip


# --- governance ---------------------------------------------------------------------------------------------
def attach_summary(
    version_id: str, summary: MonitoringSummary | dict, *, actor: str = "clinfm-monitor", org: str | None = None, db=None
):  # fmt: skip
    """Attach the summary to the registered version as a ``monitoring`` report (what the ``pilot`` gate reads)."""
    from clinfm.govern.registry import attach_report

    document = summary.as_json() if isinstance(summary, MonitoringSummary) else summary
    return attach_report(version_id, document, kind="monitoring", actor=actor, org=org, db=db)


# --- HTML ---------------------------------------------------------------------------------------------------
def _png(fig, tight: bool = False) -> str:
    """The figure as base64 PNG. Time panels keep their fixed margins, so their axes line up on the page."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


BAND = {"color": "#d62728", "alpha": 0.12, "lw": 0}
INCIDENT = {"color": "#ff7f0e", "alpha": 0.18, "lw": 0}


def _time_axis(s: MonitoringSummary, title: str, ylabel: str = ""):
    """One panel on the report's shared time axis, the incidents shaded behind it."""
    fig, ax = plt.subplots(figsize=(10.5, 2.5))
    fig.subplots_adjust(left=0.2, right=0.93, top=0.88, bottom=0.14)
    for inc in s.incidents:
        ax.axvspan(dt.datetime.fromisoformat(inc.start), dt.datetime.fromisoformat(inc.end), **INCIDENT)
    ax.set_xlim(s.windows[0].start, s.windows[-1].end)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, lw=0.5)
    return fig, ax


def _band_above(ax, x, limit, top=None) -> None:
    """Shade where a value alerts: above ``limit`` (a number or one per window)."""
    lim = np.broadcast_to(np.asarray(limit, dtype=np.float64), (len(x),))
    hi = top if top is not None else max(np.nanmax(lim) * 1.6, ax.get_ylim()[1]) if np.isfinite(lim).any() else 1.0
    ax.fill_between(x, lim, hi, step="mid", label="alert zone", **BAND)


def _band_below(ax, x, limit, bottom: float) -> None:
    ax.fill_between(x, bottom, np.broadcast_to(limit, (len(x),)), step="mid", label="alert zone", **BAND)


def _range_band(ax, x, lo: float, hi: float, top: float) -> None:
    """Shade outside ``[lo, hi]`` (bottom at 0, up to ``top``)."""
    ax.set_ylim(0, top)
    ax.fill_between(x, 0, lo, step="mid", label="alert zone", **BAND)
    ax.fill_between(x, hi, top, step="mid", **BAND)
    ax.axhline(1.0, color="k", ls=":", lw=0.8)


def _legend(ax) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="upper left", ncol=min(len(handles), 4), framealpha=0.7)


def plots(s: MonitoringSummary) -> dict[str, str]:
    """Every monitored quantity per window on one time axis, its alert zone shaded red and incidents orange;
    base64 PNG by name, in page order."""
    if not s.windows:
        return {}
    x = [w.start + (w.end - w.start) / 2 for w in s.windows]
    out: dict[str, str] = {}

    fig, ax = _time_axis(s, f"Incidents ({len(s.incidents)})")
    kinds = sorted({i.title for i in s.incidents})
    for inc in s.incidents:
        y = kinds.index(inc.title)  # labelled kind, then code on a second line
        a, b = dt.datetime.fromisoformat(inc.start), dt.datetime.fromisoformat(inc.end)
        ax.barh(y, b - a, left=a, height=0.6, color="#ff7f0e")
        ax.annotate(inc.id.removeprefix("incident-"), (a, y), fontsize=7, va="center", ha="right")
    ax.set_yticks(range(len(kinds)), [k.replace(" ", "\n", 1) for k in kinds], fontsize=7)
    ax.set_ylim(-0.7, max(len(kinds), 1) - 0.3)
    if not kinds:
        ax.set_yticks([]), ax.text(0.5, 0.5, "no incidents", transform=ax.transAxes, ha="center", color="#070")
    out["incidents"] = _png(fig)

    fig, ax = _time_axis(s, "Input drift: PSI of the model's code shares", "PSI")
    ax.plot(x, [_nan(w.code_psi) for w in s.windows], "o-", ms=3, label="codes")
    _band_above(ax, x, [_nan(w.code_limit) for w in s.windows])
    _legend(ax)
    out["code_psi"] = _png(fig)

    fig, ax = _time_axis(s, "Input drift: lab value PSI relative to its threshold (alert above 1)", "PSI / threshold")
    top = 2.0
    for code in s.reference.get("labs", {}):
        ratio = [_nan((w.lab_psi.get(code) or {}).get("psi")) / _nan((w.lab_psi.get(code) or {}).get("limit"))
                 for w in s.windows]  # fmt: skip
        ax.plot(x, ratio, ".-", ms=3, lw=0.8, label=code)
        top = max(top, 1.1 * np.nanmax(ratio)) if np.isfinite(ratio).any() else top
    if not s.reference.get("labs"):
        ax.text(0.5, 0.5, "no lab has enough values in the reference to be profiled", transform=ax.transAxes,
                ha="center", color="#888")  # fmt: skip
    ax.set_ylim(0, top)
    if s.reference.get("labs"):
        _band_above(ax, x, 1.0, top=top)
    _legend(ax)
    out["lab_psi"] = _png(fig)

    fig, ax = _time_axis(s, "Share of events with codes the model cannot see", "share")
    ax.plot(x, [_nan(w.unknown_share) for w in s.windows], "o-", ms=3, label="window")
    _band_above(ax, x, s.reference.get("unknown_share", 0.0) + s.policy.input_drift.unknown_share_increase_max)
    _legend(ax)
    out["unknown"] = _png(fig)

    fig, ax = _time_axis(s, "Missing key inputs: share of scored points without the code, minus the reference's",
                         "share - reference")  # fmt: skip
    for code in s.reference.get("missing", {}):
        ax.plot(x, [_nan((w.missing.get(code) or {}).get("share")) - _nan((w.missing.get(code) or {}).get("reference"))
                    for w in s.windows], "o", ms=3, label=code)  # fmt: skip
    _band_above(ax, x, s.policy.input_drift.missingness_increase_max, top=1.0)
    ax.set_ylim(-1, 1)
    _legend(ax)
    out["missingness"] = _png(fig)

    fig, ax = _time_axis(s, "Prediction volume", "predictions")
    width = (s.windows[0].end - s.windows[0].start) * 0.8
    ax.bar(x, [w.predictions for w in s.windows], width=width, color="#1f77b4")
    out["volume"] = _png(fig)

    fig, ax = _time_axis(s, "Score distribution (median, 25-75% and 10-90% of each window's scores)", "score")
    q = np.array([w.score_quantiles or [np.nan] * 5 for w in s.windows], dtype=np.float64)
    # vertical bars, not bands: a task scored on a few dates a year leaves most windows empty
    ax.vlines(x, q[:, 0], q[:, 4], lw=2, alpha=0.35, color="#1f77b4", label="10-90%")
    ax.vlines(x, q[:, 1], q[:, 3], lw=5, alpha=0.6, color="#1f77b4", label="25-75%")
    ax.plot(x, q[:, 2], "_", ms=9, mew=2, color="k", label="median")
    edges = (s.reference.get("scores") or {}).get("edges") or []
    if len(edges) >= 5:
        ax.axhline(edges[len(edges) // 2], color="k", ls=":", lw=0.8, label="validation median")
    ax2 = ax.twinx()
    ax2.plot(x, [_nan(w.score_psi) for w in s.windows], "s-", ms=2, lw=0.8, color="#9467bd", label="score PSI")
    lim = [_nan(w.score_limit) for w in s.windows]
    if np.isfinite(lim).any():
        ax2.plot(x, lim, "--", lw=0.8, color="#d62728", label="PSI alert above")
    ax2.tick_params(labelsize=8), ax2.set_ylabel("PSI", fontsize=8)
    _legend(ax)
    ax2.legend(fontsize=7, loc="upper right")
    out["scores"] = _png(fig)

    perf = [w.performance for w in s.windows]
    fig, ax = _time_axis(s, "Discrimination once outcomes are known: AUROC, 95% CI", "AUROC")
    auroc = [p.auroc if p else None for p in perf]
    ax.errorbar(x, [_nan(a.value if a else None) for a in auroc],
                yerr=_errors([a for a in auroc]), fmt="o", ms=4, capsize=3, label="AUROC")  # fmt: skip
    ax.set_ylim(0.3, 1.0)
    _band_below(ax, x, s.policy.performance.min_auroc, 0.3)
    _legend(ax)
    out["auroc"] = _png(fig)

    fig, ax = _time_axis(s, "Calibration once outcomes are known: slope, 95% CI (1 is ideal)", "slope")
    slope = [p.calibration_slope if p else None for p in perf]
    ax.errorbar(x, [_nan(a.value if a else None) for a in slope], yerr=_errors(slope), fmt="o", ms=4, capsize=3,
                label="calibration slope")  # fmt: skip
    lo, hi = s.policy.performance.calibration_slope
    _range_band(ax, x, lo, hi, max(3.0, hi * 1.3))
    _legend(ax)
    out["calibration_slope"] = _png(fig)

    fig, ax = _time_axis(s, "Calibration-in-the-large once outcomes are known: observed / expected event rate", "O / E")
    oe = [_nan(p.observed_expected if p and p.evaluated else None) for p in perf]
    ax.plot(x, oe, "s", ms=4, label="observed / expected")
    lo, hi = s.policy.performance.observed_expected
    _range_band(ax, x, lo, hi, max([2 * hi] + [1.15 * v for v in oe if math.isfinite(v)]))
    _legend(ax)
    out["observed_expected"] = _png(fig)

    if any(w.assistant and w.assistant.calls for w in s.windows):
        aw = [w.assistant for w in s.windows]
        rule = s.policy.assistant
        fig, ax = _time_axis(s, "Assistant: removed-statement and abstention rates", "rate")
        ax.plot(x, [_nan(v.removed_statement_rate if v else None) for v in aw], "o-", ms=3, label="removed statements")
        ax.plot(x, [_nan(v.abstention_rate if v else None) for v in aw], "s-", ms=3, label="abstentions")
        ax.axhline(rule.max_removed_statement_rate, color="#d62728", ls="--", lw=0.8, label="removed: alert above")
        ax.axhline(rule.max_abstention_rate, color="#d62728", ls=":", lw=0.8, label="abstention: alert above")
        ax.set_ylim(0, 1)
        _legend(ax)
        out["assistant_rates"] = _png(fig)
        fig, ax = _time_axis(s, "Assistant: latency (95th percentile) and clinician ratings", "ms")
        ax.plot(x, [_nan(v.latency_p95_ms if v else None) for v in aw], "o-", ms=3, label="latency p95 (ms)")
        _band_above(ax, x, rule.max_latency_p95_ms)
        ax2 = ax.twinx()
        ax2.plot(x, [_nan(v.mean_rating if v else None) for v in aw], "s-", ms=3, color="#2ca02c", label="mean rating")
        ax2.axhline(rule.min_mean_rating, color="#2ca02c", ls="--", lw=0.8, label="rating: alert below")
        ax2.set_ylim(1, 5), ax2.tick_params(labelsize=8)
        _legend(ax)
        ax2.legend(fontsize=7, loc="upper right")
        out["assistant_latency"] = _png(fig)
    return out


def _errors(estimates: list) -> np.ndarray:
    """Asymmetric error bars (2, n) from estimates with CIs (NaN where none)."""
    lo = [e.value - e.ci[0] if e and e.ci else np.nan for e in estimates]
    hi = [e.ci[1] - e.value if e and e.ci else np.nan for e in estimates]
    return np.array([lo, hi], dtype=np.float64)


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


__all__ = ["Alert", "Incident", "MonitoringSummary", "WindowReport", "attach_summary", "monitor_report", "write_report"]
