"""What the prediction routes (REST, FHIR, CDS Hooks, web) share: find the deployed model and the subject,
forecast (cached, batched), withhold a silent model's output, and store and audit every prediction.

Tenant isolation for the served dataset: its subjects belong to ``settings.dataset_org``; a key of another
organization gets 404 for them (as for a subject that does not exist), and inline Bundles are pseudonymized
with a secret of the caller's own organization.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi.concurrency import run_in_threadpool

from clinfm.data.timeline import event_kind
from clinfm.schema import Subject
from clinfm.serve.backends import Deployment, Estimate, Forecast, ForecasterLoader, ForecastQuery, Unavailable
from clinfm.serve.inline import BundleError, InlineSubject, deidentified_subject, save_subject
from clinfm.serve.predictions import (
    BatchingForecaster,
    JsonlLog,
    LRUCache,
    new_id,
    query_key,
    seed_for,
    subject_fingerprint,
)
from clinfm.serve.problems import Problem
from clinfm.serve.schemas import EvidenceItem, NextDiagnosis, PredictRequest, PredictResponse, RiskForecast
from clinfm.serve.security import Principal

if TYPE_CHECKING:
    from clinfm.serve.state import ServeState

log = logging.getLogger(__name__)

STATE_RANK = {"general": 3, "pilot": 2, "silent": 1}


@dataclass(frozen=True, slots=True)
class Outcome:
    """A prediction with what produced it (the route decides how to show it)."""

    response: PredictResponse
    deployment: Deployment
    subject: Subject | None  # None when served from the cache without loading the record


def tenant_secret(master: bytes, org: str, dataset_org: str) -> bytes:
    """The dataset's own organization uses the de-identification secret itself (its pseudonyms match the
    store's); every other organization gets a key derived from it, so tenants' pseudonyms never line up."""
    if org == dataset_org:
        return master
    return hmac.new(master, f"tenant:{org}".encode(), hashlib.sha256).digest()


class PredictionService:
    def __init__(self, state: ServeState, loader: ForecasterLoader, secret: bytes | None) -> None:
        self.state = state
        self.settings = state.settings
        self.loader = loader
        self.secret = secret
        self._models: dict[str, BatchingForecaster] = {}
        self._resolved = LRUCache(self.settings.prediction_cache_size)
        self.log = JsonlLog(self.settings.predictions_file)

    # --- deployments -----------------------------------------------------------------------------------
    def deployment(self, org: str, version: str | None) -> Deployment:
        deployments = self.state.registry.deployments(org)
        if version is not None:
            found = next((d for d in deployments if d.version == version), None)
            if found is None:
                raise Problem(404, f"model version {version!r} is not registered", slug="unknown-model")
            if not found.serves:
                raise Problem(409, f"model version {version!r} is in state {found.state!r}; only silent, pilot "
                              "and general models serve predictions", slug="model-not-deployed")  # fmt: skip
            return found
        serving = [d for d in deployments if d.serves]
        if not serving:
            raise Problem(503, "no model deployed: register a model and promote it to silent, pilot or general",
                          slug="no-model")  # fmt: skip
        return max(serving, key=lambda d: (STATE_RANK[d.state], d.version))

    def model(self, deployment: Deployment) -> BatchingForecaster:
        m = self._models.get(deployment.version)
        if m is None:
            s = self.settings
            m = BatchingForecaster(self.loader(deployment), s.batch_window_ms, s.max_batch_size, s.prediction_cache_size,
                                   s.model_timeout_s, s.model_queue_limit)
            self._models[deployment.version] = m
        return m

    async def close(self) -> None:
        for m in self._models.values():
            await m.close()

    # --- subjects --------------------------------------------------------------------------------------
    def store_subject(self, principal: Principal, subject_id: int) -> Subject:
        """A subject of the served dataset, if the caller's organization owns it and consent allows."""
        return self.check_store_access(principal, subject_id)[subject_id]

    def check_store_access(self, principal: Principal, subject_id: int) -> Any:
        """The store, once the caller's organization is known to own ``subject_id`` and consent allows."""
        store = self.state.store
        if isinstance(store, Unavailable) or store is None:
            raise Problem(503, "no dataset is served (set CLINFM_DATASET_PATH)", slug="no-dataset")
        if principal.org != self.settings.dataset_org or subject_id not in store:
            raise Problem(404, f"subject {subject_id} is not in this organization's dataset", slug="unknown-subject")
        if not self.state.access.may_use_subject(principal, subject_id):
            raise Problem(403, f"subject {subject_id} has opted out of model use", slug="consent-opt-out")
        return store

    def inline_subject(self, principal: Principal, bundle: dict) -> InlineSubject:
        if self.secret is None:
            raise Problem(503, "inline FHIR data needs a tenant secret (set CLINFM_TENANT_SECRET_FILE)", slug="no-secret")
        try:
            return deidentified_subject(bundle, tenant_secret(self.secret, principal.org, self.settings.dataset_org))
        except BundleError as exc:
            raise Problem(422, str(exc), slug="invalid-bundle") from None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise Problem(422, "the bundle is not a FHIR R4 Bundle this server can read", slug="invalid-bundle") from None

    # --- prediction ------------------------------------------------------------------------------------
    async def predict(self, principal: Principal, req: PredictRequest, channel: str = "api") -> Outcome:
        s = self.settings
        if isinstance(self.state.audit, Unavailable):
            self.state.audit._refuse()  # no audit log, no prediction
        horizon = req.horizon_days or s.default_horizon_days
        outcomes = tuple(req.outcomes) if req.outcomes else None
        requested = _naive_utc(req.prediction_time) if req.prediction_time else None
        inline: InlineSubject | None = None
        if req.subject_id is not None:
            pid = req.subject_id
            # Authorization first, even for a cached answer; governance reads happen off the event loop.
            store = await run_in_threadpool(self.check_store_access, principal, pid)
            deployment = await run_in_threadpool(self.deployment, principal.org, req.model_version)
            model = self.model(deployment)
            # The store is read-only: (version, subject, time, ...) fixes the answer, so look before loading.
            early = ("store", deployment.version, pid, requested, horizon, outcomes, s.rollout_samples)
            hit = self._resolved.get(early)
            if hit is not None:
                forecast, when, n_events, cached = *hit, True
            else:
                subject = await run_in_threadpool(store.__getitem__, pid)
                forecast, when, n_events, cached = await self._forecast(model, deployment, subject, pid, requested,
                                                                        horizon, outcomes, None)  # fmt: skip
                self._resolved.put(early, (forecast, when, n_events))
        else:
            inline = await run_in_threadpool(self.inline_subject, principal, req.bundle or {})
            subject, pid = inline.subject, inline.subject.subject_id
            requested = inline.shift(requested) if requested else None
            if req.store_bundle:
                save_subject(subject, s.data_dir / "inline" / principal.org)
            deployment = await run_in_threadpool(self.deployment, principal.org, req.model_version)
            model = self.model(deployment)
            forecast, when, n_events, cached = await self._forecast(model, deployment, subject, pid, requested, horizon,
                                                                    outcomes, subject_fingerprint(subject))  # fmt: skip
        response = self._response(deployment, pid, when, horizon, forecast, inline)
        await self._record(principal, deployment, response, forecast, req.purpose, channel, cached, n_events)
        return Outcome(response, deployment, inline.subject if inline else None)

    async def _forecast(self, model: BatchingForecaster, d: Deployment, subject: Subject, pid: int,
                        requested: dt.datetime | None, horizon: int, outcomes: tuple[str, ...] | None,
                        content: str | None) -> tuple[Forecast, dt.datetime, int, bool]:  # fmt: skip
        when = requested or _after_last_event(subject)
        query = ForecastQuery(
            subject=_before(subject, when), prediction_time=when, horizon_days=horizon, outcomes=outcomes,
            n_samples=self.settings.rollout_samples, seed=seed_for(d.version, pid, when),
        )  # fmt: skip
        forecast, cached = await model.forecast(query, query_key(d.version, query, content))
        return forecast, when, len(query.subject.events), cached

    def _response(
        self, d: Deployment, pid: int, when: dt.datetime, horizon: int, f: Forecast, inline: InlineSubject | None
    ) -> PredictResponse:
        withheld = not d.produces_cards
        warnings = list(f.warnings)
        if inline is not None:
            warnings.append(f"times are de-identified: shifted by a per-patient number of days; {inline.quarantined} "
                            "Bundle entries could not be read")  # fmt: skip
        if withheld:
            warnings.append(f"model {d.version} is in {d.state} mode: the prediction was computed and stored, not shown")
        return PredictResponse(
            prediction_id=new_id(), model_version=d.version, lifecycle_state=d.state, subject_id=pid,
            prediction_time=when, horizon_days=horizon, n_samples=f.n_samples, withheld=withheld,
            risks=[] if withheld else [self._risk(e) for e in f.risks],
            next_diagnoses=[] if withheld else [self._next(e) for e in f.next_diagnoses],
            warnings=warnings,
        )  # fmt: skip

    def _evidence(self, e: Estimate) -> list[EvidenceItem]:
        return [
            EvidenceItem(time=a.time, code=a.code, description=a.description or self.describe(a.code),
                         kind=event_kind(a.code), effect=a.effect)  # fmt: skip
            for a in e.evidence
        ]

    def _risk(self, e: Estimate) -> RiskForecast:
        return RiskForecast(outcome=e.name, description=e.description or self.describe(e.name), probability=e.probability,
                            ci_low=e.ci_low if e.ci_low is not None else e.probability,
                            ci_high=e.ci_high if e.ci_high is not None else e.probability,
                            evidence=self._evidence(e))  # fmt: skip

    def _next(self, e: Estimate) -> NextDiagnosis:
        return NextDiagnosis(code=e.name, description=e.description or self.describe(e.name), probability=e.probability,
                             ci_low=e.ci_low, ci_high=e.ci_high, evidence=self._evidence(e))  # fmt: skip

    def describe(self, code: str) -> str:
        return self.state.descriptions.get(code) or code

    async def _record(self, p: Principal, d: Deployment, r: PredictResponse, f: Forecast, purpose: str, channel: str,
                cached: bool, n_events: int) -> None:  # fmt: skip
        """The governance audit log (awaited: nothing is shown unaudited), then the prediction store (JSON lines,
        read by monitoring; the format is in the README of ``clinfm.serve``)."""
        await self.state.audit.record_prediction(
            actor=p.actor, org=p.org, model_version=d.version, subject=str(r.subject_id), purpose=purpose,
            detail={"prediction_id": r.prediction_id, "channel": channel, "key_id": p.key_id, "withheld": r.withheld},
        )  # fmt: skip
        self.log.append({
            "prediction_id": r.prediction_id, "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
            "org": p.org, "actor": p.actor, "key_id": p.key_id, "channel": channel, "purpose": purpose,
            "model_version": d.version, "lifecycle_state": d.state, "withheld": r.withheld,
            "subject_id": r.subject_id, "prediction_time": r.prediction_time.isoformat(),
            "horizon_days": r.horizon_days, "n_samples": r.n_samples, "cached": cached,
            "input": {"n_events": n_events},
            "risks": [_estimate_record(x) for x in f.risks],
            "next_diagnoses": [_estimate_record(x) for x in f.next_diagnoses],
        })  # fmt: skip


def _estimate_record(e: Estimate) -> dict[str, Any]:
    return {"code": e.name, "probability": e.probability, "ci_low": e.ci_low, "ci_high": e.ci_high}


def _naive_utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def _after_last_event(subject: Subject) -> dt.datetime:
    last = max((e.time for e in subject.events if e.time is not None), default=None)
    if last is None:
        raise Problem(422, "the record has no dated event; give prediction_time", slug="empty-record")
    return last + dt.timedelta(seconds=1)


def _before(subject: Subject, when: dt.datetime) -> Subject:
    """Only what was known before the prediction time reaches the model (static events included)."""
    return Subject(subject.subject_id, [e for e in subject.events if e.time is None or e.time < when])
