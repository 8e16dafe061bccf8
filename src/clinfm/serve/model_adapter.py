"""The foundation model behind serving's ``Forecaster`` seam: a registered run folder loaded once per version,
``model.generate.forecast_subject`` rollouts turned into risks with Wilson intervals and expected next
diagnoses, and the evidence behind each from ``reasoning.evidence`` (groups of events whose removal changes
the model's expectation), reusing the same rollouts.
"""

from __future__ import annotations

import logging
from typing import Any
from pathlib import Path

from clinfm.model import generate
from clinfm.model.checkpoint import load_checkpoint
from clinfm.reasoning import evidence
from clinfm.serve.backends import Attribution, Deployment, Estimate, Forecast, ForecasterLoader, ForecastQuery
from clinfm.serve.problems import Problem
from clinfm.serve.settings import ServeSettings

log = logging.getLogger(__name__)

DEFAULT_OUTCOMES = ("death", "admission")
OUTCOME_NAMES = {"death": "Death", "admission": "Inpatient admission", "inpatient": "Inpatient admission"}


class FoundationForecaster:
    """One loaded checkpoint; ``forecast_batch`` runs on the serving thread that owns the model.

    ``generate.forecast_subject`` rolls out one patient at a time, so batches are of one (``max_batch``); a
    batched rollout across patients in ``model.generate`` would let the batcher group concurrent misses.
    """

    max_batch = 1

    def __init__(self, version: str, run_dir: Path, descriptions: dict[str, str]) -> None:
        self.version = version
        self.model, self.tokenizer, _ = load_checkpoint(run_dir, device="cpu")
        self.descriptions = descriptions

    def forecast_batch(self, queries: list[ForecastQuery]) -> list[Forecast]:
        return [self._one(q) for q in queries]

    def _one(self, q: ForecastQuery) -> Forecast:
        f = generate.forecast_subject(
            self.model, self.tokenizer, q.subject, q.prediction_time, outcomes=q.outcomes or DEFAULT_OUTCOMES,
            horizon_days=float(q.horizon_days), n_samples=q.n_samples, seed=q.seed, descriptions=self.descriptions,
        )  # fmt: skip
        warnings: list[str] = []
        evidence_for: dict[str, list[Attribution]] = {}
        r = evidence.explain_subject(
            self.model, self.tokenizer, q.subject, q.prediction_time, outcomes=q.outcomes or DEFAULT_OUTCOMES,
            descriptions=self.descriptions, model_version=self.version, horizon_days=float(q.horizon_days),
            n_samples=q.n_samples, seed=q.seed, forecast=f,
        )  # fmt: skip
        warnings += r.warnings
        if r.abstained:
            warnings.append(r.abstention_reason or "insufficient evidence")
        targets: list[Any] = [*r.forecasts, *r.expected_next_diagnoses]
        for target in targets:
            name = str(getattr(target, "outcome", None) or getattr(target, "code", ""))
            evidence_for[name] = [
                Attribution(ev.time, ev.code, ev.description or "", item.delta)
                for item in target.evidence
                for ev in item.events[:1]  # the group's most recent event keeps cards readable
            ]
        risks = [Estimate(o.outcome, OUTCOME_NAMES.get(o.outcome, self.descriptions.get(o.outcome, o.outcome)),
                          o.probability, o.ci_low, o.ci_high, evidence_for.get(o.outcome, []))
                 for o in f.outcomes]  # fmt: skip
        nxt = []
        for d in f.next_diagnoses:
            lo, hi = generate.wilson_interval(round(d.probability * f.samples), f.samples)
            nxt.append(Estimate(d.code, d.description or self.descriptions.get(d.code, ""), d.probability, lo, hi,
                                evidence_for.get(d.code, [])))  # fmt: skip
        if f.history_tokens < 8:
            warnings.append(f"the record is short ({f.history_tokens} tokens before the prediction time)")
        return Forecast(risks=risks, next_diagnoses=nxt, n_samples=f.samples, warnings=warnings)


def loader(settings: ServeSettings, descriptions: dict[str, str]) -> ForecasterLoader:
    """Loads a deployment's checkpoint on first use; a version without one answers 503 naming it."""

    def load(deployment: Deployment) -> FoundationForecaster:
        run_dir = Path(settings.model_run_dir or deployment.run_dir or "")
        if not (run_dir / "model.safetensors").is_file():
            raise Problem(503, f"model version {deployment.version} has no trained checkpoint (model.safetensors) in "
                          "its run folder", slug="no-model")  # fmt: skip
        import torch

        torch.set_num_threads(settings.model_threads)
        log.info("loading model %s", deployment.version)
        return FoundationForecaster(deployment.version, run_dir, descriptions)

    return load
