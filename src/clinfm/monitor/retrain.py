"""Controlled change: build a candidate as the change plan allows (retrain on newer data, or recalibrate on recent
outcomes), compare it with the incumbent on the same held-out patients (paired bootstrap), and record the result.

Where it goes in the registry: an accepted candidate is registered as the next ``draft`` version of the model,
with the comparison (kind ``change_comparison``) and a validation report (kind ``validation``) attached, and is
put to the ``validated`` gate; nothing here goes further (silent, pilot and general need a person's approval). A
refused candidate is not registered: the comparison, with the reasons, is attached to the incumbent, so the
attempt stays on the record; its run folder is kept on disk for inspection.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from clinfm import __version__, schema
from clinfm.engine import ProgressFn
from clinfm.monitor.labels import KNOWN_AT, labels_with_known_at
from clinfm.monitor.plan import ChangePlan, load_plan
from clinfm.monitor.scorer import (
    Calibration,
    CountScorer,
    NotEnoughLabels,
    load_registered_scorer,
    save_scorer,
    train_scorer,
)
from clinfm.tasks.features import subject_attributes
from clinfm.tasks.labelers import LABEL, PRED, SID, load_events
from clinfm.tasks.splits import TEST, TUNING, subject_split
from clinfm.validate import fairness as F
from clinfm.validate import metrics as M

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ChangeDecision:
    """Whether the candidate may proceed to the governance gates, and why (``reasons`` name each failed bound)."""

    accepted: bool
    reasons: list[str]
    plan: str
    method: str
    incumbent_version: str
    cutoff: dt.datetime
    comparison: dict[str, Any]
    candidate_version: str | None = None
    candidate_state: str | None = None
    report_id: int | None = None
    report_attached_to: str | None = None
    gate_failures: list[str] = field(default_factory=list)
    run_dir: Path | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(cutoff=self.cutoff.isoformat(), run_dir=str(self.run_dir) if self.run_dir else None)
        return out


def _window(labels: pl.DataFrame, cutoff: dt.datetime, length: dt.timedelta) -> pl.DataFrame:
    """Labels predicted in ``[cutoff - length, cutoff)`` whose outcome was known by the cutoff."""
    return labels.filter(
        (pl.col(PRED) >= cutoff - length) & (pl.col(PRED) < cutoff) & (pl.col(KNOWN_AT) <= cutoff)
    )


def retrain(
    plan_path: str | Path | ChangePlan | None,
    dataset_dir: str | Path,
    incumbent_version: str,
    *,
    actor: str = "clinfm-retrain",
    cutoff: dt.datetime | None = None,
    run_dir: str | Path | None = None,
    candidate: CountScorer | None = None,
    db=None,
    progress: ProgressFn | None = None,
) -> ChangeDecision:
    """Build, compare and record a candidate under the change plan; returns the decision.

    ``cutoff`` is the change's "now" (default: the dataset's last event): only events before it are read and only
    outcomes known by it are used. ``candidate``: a scorer built elsewhere, judged as a ``retrain`` change under
    the same bounds. ``run_dir``: where the candidate's run folder goes (default ``$CLINFM_HOME/runs/...``).
    """
    from clinfm.govern import GateError, attach_report, promote, register_model
    from clinfm.govern.db import clinfm_home

    plan = load_plan(plan_path)
    steps = _Steps(progress, 5)
    incumbent, inc_version = load_registered_scorer(incumbent_version, db=db)
    task = incumbent.task
    events = load_events(dataset_dir)
    if cutoff is None:
        cutoff = events[schema.TIME].max() + dt.timedelta(microseconds=1)
    seen = events.filter(pl.col(schema.TIME).is_null() | (pl.col(schema.TIME) < cutoff))
    labels = labels_with_known_at(task, dataset_dir, events)
    split = subject_split(labels.select(SID, PRED, LABEL), dataset_dir).join(
        labels.select(SID, PRED, KNOWN_AT), on=[SID, PRED]
    )
    steps("labels")

    # 1. the candidate, as the plan allows
    method = "retrain" if candidate is not None else plan.method
    reasons: list[str] = []
    if method not in plan.allowed_changes:
        reasons.append(
            f"change {method!r} is not allowed by plan {plan.name!r} (allowed: {plan.allowed_changes})"
        )
    training: dict[str, Any] = {"change_plan": plan.name, "method": method, "incumbent": inc_version.id}
    try:
        if candidate is None and method == "retrain":
            candidate = train_scorer(dataset_dir, task, before=cutoff, after=cutoff - plan.data.train_window,
                                     name=incumbent.name, seed=plan.bounds.seed, events=events, labels=labels)  # fmt: skip
            candidate.training.update(training)
        elif candidate is None:
            recal = _window(split.filter(pl.col("split") == TUNING), cutoff, plan.data.recalibration_window)
            y = recal[LABEL].to_numpy().astype(int)
            if y.size == 0 or min(y.sum(), y.size - y.sum()) < 5:
                raise NotEnoughLabels(f"{y.size} recent tuning label(s) with {int(y.sum())} positive(s) to "
                                      f"recalibrate on; at least 5 of each class are needed")  # fmt: skip
            cal = Calibration.fit(plan.recalibration, incumbent.raw_scores(seen, recal), y)
            candidate = incumbent.recalibrated(cal, incumbent.name, training | {
                "recalibration": plan.recalibration, "recalibration_labels": int(y.size), "before": cutoff.isoformat()})  # fmt: skip
        else:
            candidate.training.update(training)
    except NotEnoughLabels as exc:
        reasons.append(f"no candidate could be built: {exc}")
    steps("candidate")

    # 2. the same held-out patients for both
    evaluation = _window(split.filter(pl.col("split") == TEST), cutoff, plan.data.evaluation_window)
    y = evaluation[LABEL].to_numpy().astype(float)
    b = plan.bounds
    if y.size < b.min_evaluation_labels or y.sum() < b.min_evaluation_positives:
        reasons.append(f"the held-out evaluation has {y.size} label(s) and {int(y.sum())} positive(s); the plan needs "
                       f"{b.min_evaluation_labels} and {b.min_evaluation_positives}")  # fmt: skip
    comparison: dict[str, Any] = {
        "evaluation": {"labels": int(y.size), "positives": int(y.sum()), "subjects": evaluation[SID].n_unique(),
                       "window": [(cutoff - plan.data.evaluation_window).isoformat(), cutoff.isoformat()],
                       "split": "held_out subjects, outcomes known by the cutoff"},
    }  # fmt: skip
    validation = None
    if candidate is not None and 0 < y.sum() < y.size:
        points = evaluation.select(SID, PRED)
        groups = evaluation[SID].to_numpy()
        p_inc, p_cand = incumbent.score(seen, points), candidate.score(seen, points)
        metrics = {
            name: M.all_metrics(y, p, b.n_resamples, b.seed, groups)
            for name, p in (("candidate", p_cand), ("incumbent", p_inc))
        }
        diffs = [M.paired_difference(y, p_cand, p_inc, m, ("candidate", "incumbent"), b.n_resamples, b.seed, groups)
                 for m in ("auroc", "brier")]  # fmt: skip
        comparison["models"] = {k: {m: e.as_dict() for m, e in v.items()} for k, v in metrics.items()}
        comparison["comparisons"] = [d.as_dict() for d in diffs]
        reasons += _bounds_failures(plan, diffs[0], metrics["candidate"])
        validation = _validation_report(task, candidate, comparison, y, p_cand, seen, points, groups, plan)
    steps("comparison")

    accepted = not reasons
    document = {
        "kind": plan.governance.report_kind, "change_plan": plan.model_dump(mode="json"), "method": method,
        "cutoff": cutoff.isoformat(), "incumbent": inc_version.id, "task": task.name,
        "decision": {"accepted": accepted, "reasons": reasons},
        "candidate_training": candidate.training if candidate is not None else None,
        "clinfm_version": __version__, **comparison,
    }  # fmt: skip
    decision = ChangeDecision(accepted, reasons, plan.name, method, inc_version.id, cutoff, comparison)
    if candidate is not None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        decision.run_dir = save_scorer(
            candidate, Path(run_dir) if run_dir else clinfm_home() / "runs" / f"{candidate.name}-{stamp}"
        )
    steps("run folder")

    # 3. the registry: an accepted candidate becomes a draft version and meets the validated gate; never further
    if accepted:
        name = plan.governance.model_name or inc_version.name
        registered = register_model(name, decision.run_dir, dataset_dir, actor, org=inc_version.org_id,
                                    training_config=candidate.training, db=db)  # fmt: skip
        document["candidate"] = registered.id
        decision.candidate_version, decision.candidate_state = registered.id, registered.state
        report = attach_report(registered.id, document, kind=plan.governance.report_kind, actor=actor, db=db)
        if validation is not None:
            attach_report(
                registered.id, validation, kind="validation", actor=actor, primary_model="candidate", db=db
            )
        if plan.governance.try_validated_gate:
            try:
                decision.candidate_state = promote(
                    registered.id, "validated", actor,
                    f"change plan {plan.name}: {method} accepted against {inc_version.id}", db=db,
                ).state  # fmt: skip
            except GateError as exc:
                decision.gate_failures = list(exc.failures)
    else:
        report = attach_report(inc_version.id, document, kind=plan.governance.report_kind, actor=actor, db=db)
    decision.report_id, decision.report_attached_to = report.id, report.model_version_id
    steps("registry")
    log.info("change %s for %s: %s", method, inc_version.id, "accepted" if accepted else "refused")
    return decision


def _bounds_failures(
    plan: ChangePlan, auroc_diff: M.Comparison, candidate: dict[str, M.Estimate]
) -> list[str]:
    b = plan.bounds
    out = []
    if auroc_diff.ci is None:
        out.append(
            "the paired bootstrap gave no confidence interval for the AUROC difference (one class only)"
        )
    elif auroc_diff.ci[0] < -b.max_auroc_drop:
        out.append(
            f"AUROC candidate - incumbent = {auroc_diff.difference:+.3f} (95% CI {auroc_diff.ci[0]:+.3f} to "
            f"{auroc_diff.ci[1]:+.3f}): the lower bound is below -{b.max_auroc_drop}, the candidate may be worse"
        )
    ece = candidate["ece"].value
    if not ece <= b.max_calibration_error:
        out.append(
            f"candidate calibration error {ece:.3f} is above the plan's maximum {b.max_calibration_error}"
        )
    cit = candidate["calibration_intercept"].value
    if b.max_abs_calibration_intercept is not None and not abs(cit) <= b.max_abs_calibration_intercept:
        out.append(
            f"candidate calibration-in-the-large {cit:+.3f} is outside ±{b.max_abs_calibration_intercept}"
        )
    return out


def _validation_report(task, candidate, comparison, y, p, events, points, groups, plan: ChangePlan) -> dict:
    """The candidate's held-out validation in the shape the ``validated`` gate reads (``clinfm.govern.reports``)."""
    b = plan.bounds
    attributes = subject_attributes(events, points)
    threshold = F.operating_threshold(None, p, float(np.mean(y)))
    rows, per_attr = F.subgroup_table(
        "candidate", y.astype(int), p, attributes, threshold, b.n_resamples, b.seed, groups
    )
    return {
        "task": task.name, "task_config": task.model_dump(mode="json"), "setting": "local",
        "method": f"change plan {plan.name}: held-out subjects, outcomes known by the cutoff",
        "n": int(y.size), "positives": int(y.sum()), "primary_model": "candidate",
        "models": comparison["models"], "subgroups": [r.as_dict() for r in rows],
        "fairness": F.fairness_summary({"candidate": per_attr}),
    }  # fmt: skip


class _Steps:
    def __init__(self, progress: ProgressFn | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, what: str) -> None:
        self.done += 1
        log.info("retrain: %s done (%d/%d)", what, self.done, self.total)
        if self.progress:
            self.progress(self.done, self.total)


__all__ = ["ChangeDecision", "retrain"]
