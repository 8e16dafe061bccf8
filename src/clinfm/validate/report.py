"""The validation report: one self-contained HTML page (plots embedded as base64 PNG) and its JSON twin.

The HTML is for people; the JSON holds every number and is what governance code reads.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape

from clinfm import __version__
from clinfm.validate import metrics as M

if TYPE_CHECKING:
    from clinfm.validate.evaluate import EvaluationResult

TEMPLATES = Path(__file__).parent / "templates"
THRESHOLDS = np.linspace(0.01, 0.5, 50)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(result: EvaluationResult) -> dict[str, str]:
    """ROC, precision-recall, calibration and decision curves of every model, as base64 PNG."""
    if not result.models:
        return {}
    figs = {k: plt.subplots(figsize=(4.6, 4)) for k in ("roc", "pr", "calibration", "decision")}
    y_any = next(iter(result.models.values())).y
    for name, r in result.models.items():
        fpr, tpr = M.roc_curve(r.y, r.scores)
        figs["roc"][1].plot(fpr, tpr, label=f"{name} ({r.metrics['auroc'].value:.3f})")
        rec, prec = M.pr_curve(r.y, r.scores)
        figs["pr"][1].step(rec, prec, where="post", label=f"{name} ({r.metrics['auprc'].value:.3f})")
        mp, rate, _ = M.calibration_curve(r.y, r.scores)
        figs["calibration"][1].plot(mp, rate, "o-", label=name)
        nb = M.net_benefit(r.y, r.scores, THRESHOLDS)
        figs["decision"][1].plot(nb["threshold"], nb["model"], label=name)
    nb = M.net_benefit(y_any, np.zeros_like(y_any, dtype=float), THRESHOLDS)
    ax = figs["decision"][1]
    ax.plot(nb["threshold"], nb["treat_all"], "k--", label="treat all")
    ax.plot(nb["threshold"], nb["treat_none"], "k:", label="treat none")
    prevalence = float(np.mean(y_any))
    ax.set_ylim(min(-0.05, -prevalence * 0.2), max(prevalence * 1.1, 0.01))
    figs["roc"][1].plot([0, 1], [0, 1], "k:", lw=0.8)
    figs["pr"][1].axhline(prevalence, color="k", ls=":", lw=0.8)
    figs["calibration"][1].plot([0, 1], [0, 1], "k:", lw=0.8)
    labels = {
        "roc": ("False positive rate", "True positive rate", "ROC"),
        "pr": ("Recall", "Precision", "Precision-recall"),
        "calibration": ("Mean predicted risk (10 equal-width bins)", "Observed rate", "Calibration"),
        "decision": ("Threshold probability", "Net benefit", "Decision curve"),
    }
    for key, (fig, ax) in figs.items():
        xl, yl, title = labels[key]
        ax.set_xlabel(xl), ax.set_ylabel(yl), ax.set_title(title), ax.legend(fontsize=7)
    return {k: _png(fig) for k, (fig, _) in figs.items()}


def tripod_ai_checklist(result: EvaluationResult) -> list[dict]:
    """TRIPOD+AI (Collins et al., BMJ 2024) items this evaluation can fill, and those only people can."""
    t, c = result.task, result.cohort
    deid = result.dataset.get("deid") or {}
    filled, na, human = "filled", "not-applicable", "needs-human"
    items = [
        ("1", "Title: identify the study as developing/evaluating a prediction model", human, ""),
        ("3a", "Background: healthcare context and rationale", human, ""),
        (
            "5a",
            "Source of data",
            filled,
            (
                f"{result.dataset.get('name')} ({result.dataset.get('source')}), "
                f"ETL {result.dataset.get('etl_time')}"
            ),
        ),
        (
            "6a",
            "Setting and eligibility criteria",
            filled,
            (
                f"exclusions: {t.exclusions.model_dump(exclude_defaults=True)}; "
                f"excluded counts: {result.labeling.get('excluded')}"
            ),
        ),
        (
            "7",
            "Data preparation, de-identification",
            filled,
            f"de-identification policy: {deid.get('policy')}",
        ),
        (
            "8a",
            "Outcome: definition and time horizon",
            filled,
            f"{t.description} Outcome window {t.outcome_window.model_dump(mode='json')}",
        ),
        ("8c", "Outcome assessed blind to predictors", human, ""),
        (
            "9a",
            "Predictors: choice and timing",
            filled,
            (
                f"codes counted in windows {c.get('features', {}).get('windows')}, "
                "age, sex; only events at or before the prediction time"
            ),
        ),
        (
            "10",
            "Sample size",
            filled,
            f"{c.get('all', {}).get('labels')} labels, {c.get('all', {}).get('positives')} positives",
        ),
        (
            "11",
            "Missing data",
            filled,
            ("count features: an absent code is a zero count; unknown age is 0 with sex indicators both 0"),
        ),
        (
            "12a",
            "Analytical methods: data partitioning",
            filled,
            f"{result.split} split, by subject (asserted disjoint)",
        ),
        ("12c", "Model type and building", filled, ", ".join(result.models) or "none"),
        (
            "12e",
            "Performance measures",
            filled,
            (
                f"AUROC, AUPRC, Brier, ECE, calibration slope/intercept, decision curve; "
                f"{result.n_resamples} subject-level bootstrap resamples"
            ),
        ),
        (
            "12f",
            "Model updating / recalibration",
            filled if result.recalibration else na,
            result.recalibration or "no recalibration requested",
        ),
        ("12g", "Fairness: subgroup performance", filled, "sex, age band, race, ethnicity; four-fifths rule"),
        (
            "12h",
            "Class imbalance handling",
            filled,
            (f"prevalence {c.get('all', {}).get('prevalence', 0):.4f}; no resampling or reweighting"),
        ),
        ("14", "Ethics approval and consent", human, ""),
        ("15", "Funding and conflicts of interest", human, ""),
        ("16", "Protocol and registration", human, ""),
        ("17", "Patient and public involvement", human, ""),
        ("18", "Open science: code and software", filled, f"ClinFM {__version__}"),
        ("20a", "Participants: flow and characteristics", filled, "cohort table"),
        ("23a", "Model performance with CIs", filled, "model comparison table"),
        ("23b", "Heterogeneity across subgroups", filled, "subgroup table"),
        ("25", "Interpretation and limitations", human, ""),
        ("26", "Usability in the intended setting, intended use and users", human, ""),
    ]
    return [{"item": i, "topic": topic, "status": s, "evidence": ev} for i, topic, s, ev in items]


def render_html(result: EvaluationResult) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = lambda x, d=3: (
        "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{d}f}"
    )
    data = result.as_json()
    return env.get_template("report.html.j2").render(
        r=data, plots=plots(result), metric_names=list(M.METRICS)
    )


def write_report(result: EvaluationResult, report_path: Path) -> tuple[Path, Path]:
    """Write ``report_path`` (HTML) and its twin with the suffix ``.json``; returns both paths."""
    report_path = Path(report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    json_path = report_path.with_suffix(".json")
    json_path.write_text(json.dumps(result.as_json(), indent=2, default=str))
    report_path.write_text(render_html(result))
    return report_path, json_path
