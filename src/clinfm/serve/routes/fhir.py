"""FHIR: ``POST /fhir/RiskAssessment/$predict`` answers a Bundle of ``RiskAssessment`` resources, validated with
``fhir.resources`` (R4B), with the model version in ``method`` and the evidence events in ``basis``.

Input is a FHIR ``Parameters`` resource: ``subject`` (valueReference ``Patient/<pseudonymous id>``, a subject in
the store) or ``bundle`` (resource: an R4 Bundle of one patient), plus optional ``predictionTime``
(valueDateTime), ``horizonDays`` (valueInteger), ``outcome`` (valueString, repeatable), ``modelVersion``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from clinfm.serve.deps import PREDICT, require, state
from clinfm.serve.inputs import parse_id
from clinfm.serve.problems import AUTH_RESPONSES, Problem, responses
from clinfm.serve.schemas import PredictRequest, PredictResponse
from clinfm.serve.security import Principal

router = APIRouter(prefix="/fhir", tags=["FHIR"])

FHIR_JSON = "application/fhir+json"
METHOD_SYSTEM = "https://clinfm.dev/fhir/model-version"
CI_EXTENSION = "https://clinfm.dev/fhir/StructureDefinition/probability-confidence-interval"
EVENT_SYSTEM = "https://clinfm.dev/fhir/event"


class Reference(BaseModel):
    model_config = ConfigDict(extra="allow")
    reference: StrictStr | None = None


class Parameter(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: StrictStr = Field(min_length=1, max_length=64)
    valueReference: Reference | None = None
    valueDateTime: StrictStr | None = None
    valueInteger: StrictInt | None = None
    valueString: StrictStr | None = None
    resource: dict[str, Any] | None = None


class Parameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    resourceType: Literal["Parameters"]
    parameter: list[Parameter] = Field(default_factory=list, max_length=50)


def predict_request(params: Parameters) -> PredictRequest:
    """The ``Parameters`` as a :class:`PredictRequest` (FHIR names to API names)."""
    values: dict[str, Any] = {"outcomes": []}
    for p in params.parameter:
        if p.name == "subject" and p.valueReference and p.valueReference.reference:
            ref = p.valueReference.reference
            if not ref.startswith("Patient/"):
                raise Problem(422, "subject must reference Patient/<pseudonymous numeric id>", slug="invalid-parameter")
            values["subject_id"] = parse_id(ref[8:], "subject (Patient/<id>)")
        elif p.name == "bundle" and p.resource is not None:
            values["bundle"] = p.resource
        elif p.name == "predictionTime" and p.valueDateTime:
            values["prediction_time"] = p.valueDateTime
        elif p.name == "horizonDays" and p.valueInteger is not None:
            values["horizon_days"] = p.valueInteger
        elif p.name == "outcome" and p.valueString:
            values["outcomes"].append(p.valueString)
        elif p.name == "modelVersion" and p.valueString:
            values["model_version"] = p.valueString
        else:
            raise Problem(422, f"parameter {p.name!r} is not one of subject, bundle, predictionTime, horizonDays, "
                          "outcome, modelVersion (with its value[x])", slug="invalid-parameter")  # fmt: skip
    values["outcomes"] = values["outcomes"] or None
    try:
        return PredictRequest.model_validate(values)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": "invalid"}
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise Problem(422, f"invalid parameters: {where + ': ' if where else ''}{first.get('msg')}",
                      slug="invalid-parameter") from None


def risk_assessment(r: PredictResponse, version_name: str) -> dict[str, Any]:
    """One ``RiskAssessment``: a prediction per outcome (probability, its interval as an extension, the horizon),
    ``basis`` citing every evidence event, ``method`` naming the model version."""
    start = r.prediction_time
    end = start + dt.timedelta(days=r.horizon_days)
    basis: dict[tuple, dict[str, Any]] = {}
    predictions = []
    for risk in r.risks:
        for e in risk.evidence:
            key = (e.time, e.code)
            if key not in basis:
                when = f" at {e.time.isoformat()}" if e.time else ""
                basis[key] = {"identifier": {"system": EVENT_SYSTEM, "value": f"{r.subject_id}|{e.time.isoformat() if e.time else ''}|{e.code}"},
                              "display": f"{e.description} ({e.code}){when}"[:250]}  # fmt: skip
        predictions.append({
            "outcome": {"coding": [{"system": "https://clinfm.dev/fhir/outcome", "code": risk.outcome}], "text": risk.description},
            "probabilityDecimal": round(risk.probability, 6),
            "whenPeriod": {"start": _instant(start), "end": _instant(end)},
            "extension": [{"url": CI_EXTENSION, "extension": [
                {"url": "low", "valueDecimal": round(risk.ci_low, 6)},
                {"url": "high", "valueDecimal": round(risk.ci_high, 6)},
                {"url": "level", "valueDecimal": 0.95}]}],
        })  # fmt: skip
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": r.prediction_id,
        "status": "final" if r.lifecycle_state == "general" else "preliminary",
        "subject": {"reference": f"Patient/{r.subject_id}"},
        "occurrenceDateTime": _instant(start),
        "method": {"coding": [{"system": METHOD_SYSTEM, "code": r.model_version, "display": version_name}],
                   "text": f"{version_name} ({r.lifecycle_state}), {r.n_samples} sampled futures"},
        "prediction": predictions,
    }
    if basis:
        resource["basis"] = list(basis.values())
    if r.warnings:
        resource["note"] = [{"text": w} for w in r.warnings]
    return resource


def _instant(t: dt.datetime) -> str:
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).isoformat()


def validated_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``collection`` Bundle of the resources, each validated as R4B (a failure is our bug: 500)."""
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.riskassessment import RiskAssessment

    for res in resources:
        RiskAssessment.model_validate(res)
    bundle = {
        "resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "entry": [{"fullUrl": f"urn:uuid:{res['id']}", "resource": res} for res in resources],
    }  # fmt: skip
    Bundle.model_validate(bundle)
    return bundle


@router.post("/RiskAssessment/$predict", responses={**responses(*AUTH_RESPONSES, 404, 409, 503),
             200: {"description": "A Bundle of RiskAssessment", "content": {FHIR_JSON: {}}}},
             summary="FHIR operation: RiskAssessment for a patient in the store or an inline Bundle")  # fmt: skip
async def predict_risk(params: Parameters, request: Request, principal: Principal = require(*PREDICT)) -> JSONResponse:
    outcome = await state(request).predictions.predict(principal, predict_request(params), channel="fhir")
    resources = [] if outcome.response.withheld else [risk_assessment(outcome.response, outcome.deployment.name)]
    return JSONResponse(validated_bundle(resources), media_type=FHIR_JSON)
