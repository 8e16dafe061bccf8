"""CDS Hooks 2.0: discovery, ``patient-view`` risk cards, ``order-select`` medication safety cards, feedback.

Data comes from ``prefetch`` when the EHR sends it (pseudonymized in memory like any inline Bundle) and from
the served dataset otherwise (``context.patientId`` is then the pseudonymous subject id). Only a model in the
``pilot`` or ``general`` state produces cards; a ``silent`` one computes, stores and audits, and answers
``{"cards": []}``.

Feedback is appended to ``<data_dir>/cds-feedback.jsonl``, one JSON object a line::

    {"received_at": ISO-8601 UTC, "service_id": str, "org": str, "key_id": str,
     "card": card uuid, "outcome": "accepted" | "overridden", "outcome_timestamp": str | null,
     "accepted_suggestions": [suggestion uuid], "override_reason": {"code", "system", "display"} | null,
     "has_user_comment": bool,            # the comment itself is free text and is not kept
     "model_version": str | null, "prediction_id": str | null, "card_kind": "risk" | "medication-safety" | null}

and every card served is appended to ``<data_dir>/cds-cards.jsonl`` (``issued_at``, ``service_id``, ``org``,
``card``, ``card_kind``, ``indicator``, ``model_version``, ``prediction_id``, ``subject_id``), so feedback
joins to its prediction after a restart too.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from clinfm.serve.cards import prefetch_bundle, risk_cards, safety_cards
from clinfm.serve.deps import CDS_FEEDBACK, PREDICT, TREATMENT, require, state
from clinfm.serve.inputs import parse_id
from clinfm.serve.problems import AUTH_RESPONSES, Problem, responses
from clinfm.serve.routes.models import card_url
from clinfm.serve.schemas import PredictRequest
from clinfm.serve.security import Principal, allowed

router = APIRouter(prefix="/cds-services", tags=["CDS Hooks"])

RISK_SERVICE, SAFETY_SERVICE = "clinfm-risk", "clinfm-medication-safety"
PATIENT = "{{context.patientId}}"
SERVICES = [
    {
        "id": RISK_SERVICE, "hook": "patient-view", "title": "ClinFM risk forecast",
        "description": "Risks over the coming year with 95% intervals and the record events behind them, "
                       "from the organization's foundation model (pilot or general release only).",
        "prefetch": {
            "patient": f"Patient/{PATIENT}",
            "conditions": f"Condition?patient={PATIENT}",
            "encounters": f"Encounter?patient={PATIENT}",
            "medications": f"MedicationRequest?patient={PATIENT}",
            "observations": f"Observation?patient={PATIENT}&category=laboratory",
        },
        "usageRequirements": "Send Authorization: Bearer <ClinFM API key> with scope system/RiskAssessment.rs.",
    },
    {
        "id": SAFETY_SERVICE, "hook": "order-select", "title": "ClinFM medication safety",
        "description": "Drug-allergy (with class cross-reactivity), drug-drug interaction, renal dosing and "
                       "duplicate-therapy checks on the selected medication orders.",
        "prefetch": {
            "patient": f"Patient/{PATIENT}",
            "allergies": f"AllergyIntolerance?patient={PATIENT}",
            "medications": f"MedicationRequest?patient={PATIENT}&status=active",
            "egfr": f"Observation?patient={PATIENT}&code=http://loinc.org|33914-3,http://loinc.org|62238-1&_sort=-date&_count=1",
        },
        "usageRequirements": "Send Authorization: Bearer <ClinFM API key> with scope system/DetectedIssue.rs.",
    },
]  # fmt: skip
ServiceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")]


class HookRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    hook: StrictStr = Field(min_length=1, max_length=64)
    hookInstance: StrictStr = Field(min_length=1, max_length=100)
    fhirServer: StrictStr | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow")
    reason: dict[str, Any] | None = None
    userComment: StrictStr | None = Field(None, max_length=2000)


class AcceptedSuggestion(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: StrictStr = Field(min_length=1, max_length=100)


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    card: StrictStr = Field(min_length=1, max_length=100)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] = Field(default_factory=list, max_length=50)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: StrictStr | None = Field(None, max_length=40)


class Feedback(BaseModel):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=100)


@router.get("", summary="CDS Hooks discovery (no key needed)")
def discovery() -> dict[str, Any]:
    return {"services": SERVICES}


def _service(service_id: str) -> dict[str, Any]:
    found = next((s for s in SERVICES if s["id"] == service_id), None)
    if found is None:
        raise Problem(404, f"no CDS service {service_id!r}", slug="unknown-service")
    return found


@router.post("/{service_id}", summary="Call a CDS service; answers {cards: [...]}",
             responses=responses(*AUTH_RESPONSES, 404, 503))
async def call_service(service_id: ServiceId, body: HookRequest, request: Request,
                       principal: Principal = require(*PREDICT, *TREATMENT)) -> dict[str, Any]:  # fmt: skip
    service = _service(service_id)
    if body.hook != service["hook"]:
        raise Problem(422, f"service {service_id!r} answers the {service['hook']!r} hook, not {body.hook!r}", slug="wrong-hook")
    needs = PREDICT if service_id == RISK_SERVICE else TREATMENT
    if not allowed(principal, needs, state(request).access.scope_allows):
        raise Problem(403, f"this key lacks the scope {needs[0]}", slug="insufficient-scope")
    if service_id == RISK_SERVICE:
        cards, meta = await _risk(request, principal, body)
    else:
        cards, meta = await _safety(request, principal, body)
    _log_cards(request, principal, service_id, cards, meta)
    return {"cards": cards}


def _patient_id(body: HookRequest) -> str:
    pid = body.context.get("patientId")
    if not isinstance(pid, str) or not pid:
        raise Problem(422, "context.patientId is required", slug="invalid-context")
    return pid


async def _risk(request: Request, principal: Principal, body: HookRequest) -> tuple[list, dict]:
    s = state(request)
    pid = _patient_id(body)
    bundle = prefetch_bundle(body.prefetch or {}, pid)
    if bundle is not None:
        req = PredictRequest(bundle=bundle)
    else:
        req = PredictRequest(subject_id=parse_id(pid, "context.patientId (no prefetch was sent)"))
    outcome = await s.predictions.predict(principal, req, channel="cds-hooks")
    r, d = outcome.response, outcome.deployment
    meta = {"card_kind": "risk", "model_version": d.version, "prediction_id": r.prediction_id, "subject_id": r.subject_id}
    if not d.produces_cards:
        return [], meta
    base = s.settings.public_base_url or str(request.base_url).rstrip("/")
    patient_url = f"{base}/web/patients/{r.subject_id}" if req.subject_id is not None else None
    return risk_cards(r, f"ClinFM {d.name} ({d.state})", card_url(request, d.version), patient_url), meta


def _codings(resource: dict[str, Any], field: str, where: str) -> list[dict[str, Any]]:
    cc = resource.get(field)
    if cc is None:
        return []
    if not isinstance(cc, dict):
        raise Problem(422, f"{where}.{field} must be a CodeableConcept (an object)", slug="invalid-prefetch")
    codings = cc.get("coding") or []
    if not isinstance(codings, list) or not all(isinstance(c, dict) for c in codings):
        raise Problem(422, f"{where}.{field}.coding must be a list of Coding objects", slug="invalid-prefetch")
    for i, c in enumerate(codings):
        for key in ("system", "code", "display"):
            if c.get(key) is not None and not isinstance(c[key], str):
                raise Problem(422, f"{where}.{field}.coding[{i}].{key} must be a string", slug="invalid-prefetch")
    return codings


def _text(resource: dict[str, Any], field: str, where: str) -> str | None:
    cc = resource.get(field)
    text = cc.get("text") if isinstance(cc, dict) else None
    if text is not None and not isinstance(text, str):
        raise Problem(422, f"{where}.{field}.text must be a string", slug="invalid-prefetch")
    return text or None


def _med_name(resource: dict[str, Any], where: str) -> str | None:
    codings = _codings(resource, "medicationCodeableConcept", where)
    for c in codings:
        if "rxnorm" in (c.get("system") or "").lower() and c.get("code"):
            return c["code"]  # the bare RxNorm code, as reasoning.treatment matches it
    text = _text(resource, "medicationCodeableConcept", where)
    return text or next((c["display"] for c in codings if c.get("display")), None)


def _resources(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return [e["resource"] for e in value.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    return [value] if isinstance(value, dict) and "resourceType" in value else []


def _selections(context: dict[str, Any]) -> set[str]:
    value = context.get("selections") or []
    if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= 200 for v in value) or len(value) > 100:
        raise Problem(422, "context.selections must be a list of at most 100 resource references "
                      "(strings such as MedicationRequest/123)", slug="invalid-context")  # fmt: skip
    return set(value)


EGFR_RANGE = (0.0, 300.0)
"""Physiological eGFR in mL/min/1.73m2: a value outside is an error in the record, never 'no renal finding'."""


def _egfr(prefetch: dict[str, Any]) -> float | None:
    egfr = None
    for i, o in enumerate(_resources(prefetch.get("egfr"))):
        q = o.get("valueQuantity")
        if q is None:
            continue
        value = q.get("value") if isinstance(q, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Problem(422, f"prefetch.egfr[{i}].valueQuantity.value must be a number (the eGFR in "
                          "mL/min/1.73m2)", slug="invalid-prefetch")  # fmt: skip
        if not EGFR_RANGE[0] <= value <= EGFR_RANGE[1]:
            raise Problem(422, f"prefetch.egfr[{i}]: an eGFR outside {EGFR_RANGE[0]:.0f}..{EGFR_RANGE[1]:.0f} "
                          "mL/min/1.73m2 is not physiological; renal dosing cannot be checked on it", slug="invalid-egfr")  # fmt: skip
        egfr = float(value)
    return egfr


async def _safety(request: Request, principal: Principal, body: HookRequest) -> tuple[list, dict]:
    s = state(request)
    _patient_id(body)
    selections = _selections(body.context)
    drafts = _resources(body.context.get("draftOrders"))
    prefetch = body.prefetch or {}
    meds, order_ids = [], {}
    active = [m for m in _resources(prefetch.get("medications")) if m not in drafts]
    for i, r in enumerate(drafts + active):
        where = f"context.draftOrders[{i}]" if i < len(drafts) else f"prefetch.medications[{i - len(drafts)}]"
        name = _med_name(r, where)
        if not name:
            continue
        meds.append(name)
        rid = f"{r.get('resourceType')}/{r.get('id')}"
        if rid in selections or (r in drafts and not selections):
            order_ids[name] = rid
    allergies = []
    for i, a in enumerate(_resources(prefetch.get("allergies"))):
        where = f"prefetch.allergies[{i}]"
        coded = [f"RxNorm//{c['code']}" for c in _codings(a, "code", where) if "rxnorm" in (c.get("system") or "").lower() and c.get("code")]
        text = _text(a, "code", where)
        allergies += coded or ([text] if text else [])
    egfr = _egfr(prefetch)
    if not meds:
        return [], {"card_kind": "medication-safety"}
    result = await run_in_threadpool(s.treatment.check, meds, allergies, egfr, None, None)
    check = result.model_dump(mode="json")
    kb = check.get("kb_version", "")
    cards = safety_cards(check, f"ClinFM medication safety (knowledge base {kb})".strip(),
                         f"{s.settings.public_base_url or str(request.base_url).rstrip('/')}/docs#/treatment", order_ids)  # fmt: skip
    return cards, {"card_kind": "medication-safety"}


def _log_cards(request: Request, principal: Principal, service_id: str, cards: list, meta: dict) -> None:
    now = dt.datetime.now(dt.UTC).isoformat()
    s = state(request)
    log, issued = s.cards_log, s.issued_cards
    for c in cards:
        record = {"issued_at": now, "service_id": service_id, "org": principal.org, "card": c["uuid"],
                  "indicator": c["indicator"], **meta}  # fmt: skip
        log.append(record)
        if len(issued) > 100_000:
            issued.clear()
        issued[c["uuid"]] = record


FEEDBACK_FIELD_MAX = 200
"""Characters kept of each override-reason field: a feedback request stores a bounded record, whatever it sends."""


def _clip(value: Any) -> str | None:
    return value[:FEEDBACK_FIELD_MAX] if isinstance(value, str) else None


@router.post("/{service_id}/feedback", summary="Feedback on served cards (stored for monitoring)",
             responses=responses(*AUTH_RESPONSES, 404))
def feedback(service_id: ServiceId, body: Feedback, request: Request,
             principal: Principal = require(*CDS_FEEDBACK)) -> dict[str, Any]:  # fmt: skip
    _service(service_id)
    s = state(request)
    issued = s.issued_cards
    now = dt.datetime.now(dt.UTC).isoformat()
    for item in body.feedback:
        card = issued.get(item.card)
        if card is not None and card["org"] != principal.org:
            card = None  # another tenant's card: record nothing of it
        reason = (item.overrideReason.reason if item.overrideReason else None) or None
        s.feedback.append({
            "received_at": now, "service_id": service_id, "org": principal.org, "key_id": principal.key_id,
            "card": item.card, "outcome": item.outcome, "outcome_timestamp": item.outcomeTimestamp,
            "accepted_suggestions": [a.id for a in item.acceptedSuggestions],
            "override_reason": {k: _clip(reason.get(k)) for k in ("code", "system", "display")} if isinstance(reason, dict) else None,
            "has_user_comment": bool(item.overrideReason and item.overrideReason.userComment),
            "model_version": card.get("model_version") if card else None,
            "prediction_id": card.get("prediction_id") if card else None,
            "card_kind": card.get("card_kind") if card else None,
        })  # fmt: skip
    return {"stored": len(body.feedback)}
