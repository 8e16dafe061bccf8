"""FHIR R4 read API over the served MEDS store (``/fhir``), and writes kept as proposals for clinician review.

``GET /fhir/metadata`` (CapabilityStatement, no key needed), ``GET /fhir/<Type>/<id>``, ``GET /fhir/<Type>?...``
(searchset Bundles with paging links), ``GET /fhir/Patient/<id>/$everything``; ``POST /fhir/ServiceRequest``,
``/fhir/MedicationRequest``, ``/fhir/Observation`` store a proposal (validated, audited, medication orders
passed through the treatment safety check) and never touch the dataset; ``GET /v1/proposals`` lists them and
``POST /v1/proposals/<id>/review`` accepts or rejects one.

Each interaction needs its SMART v2 scope (``patient/Observation.rs``, ``user/Observation.r``, ...; ``c`` for
writes, in any of the system/user/patient contexts). Only a de-identified dataset is served unless the
caller's organization is listed in ``CLINFM_FHIR_IDENTIFIED_ORGS``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from clinfm import __version__
from clinfm.fhir.proposals import WRITABLE, ProposalError, ProposalStore, medication_names, validate_resource
from clinfm.fhir.resources import RESOURCE_TYPES, CodeCatalog
from clinfm.fhir.search import COMMON, PARAMS, FhirStore, SearchError, searchset
from clinfm.serve.backends import Unavailable
from clinfm.serve.deps import api_key_of, bearer, resolve_principal, state
from clinfm.serve.problems import AUTH_RESPONSES, Problem, responses
from clinfm.serve.security import Principal, ScopeNeed

router = APIRouter(prefix="/fhir", tags=["FHIR"])
review_router = APIRouter(prefix="/v1/proposals", tags=["FHIR"])

FHIR_JSON = "application/fhir+json"
CONTEXTS = ("system", "user", "patient")
PROPOSAL_TAG = {"system": "https://clinfm.dev/fhir/tag", "code": "proposal",
                "display": "proposed for clinician review; not part of the record"}  # fmt: skip
SEARCH_TYPES = {"_id": "token", "identifier": "token", "birthdate": "date", "gender": "token", "name": "string",
                "family": "string", "given": "string", "address": "string", "address-city": "string",
                "address-postalcode": "string", "address-state": "string", "telecom": "token",
                "death-date": "date", "patient": "reference", "subject": "reference", "code": "token",
                "date": "date", "category": "token"}  # fmt: skip


def _fhir(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


async def _principal(request: Request, creds: HTTPAuthorizationCredentials | None, resource: str,
                     permissions: str) -> Principal:  # fmt: skip
    return await resolve_principal(request, api_key_of(request, creds), (ScopeNeed(resource, permissions, CONTEXTS),))


def fhir_store(request: Request) -> FhirStore:
    """The app's :class:`FhirStore`, built on first use over the served dataset."""
    app_state = request.app.state
    store = getattr(app_state, "fhir_store", None)
    if store is None:
        db = state(request).store
        if db is None or isinstance(db, Unavailable):
            raise Problem(503, "no dataset is served (set CLINFM_DATASET_PATH)", slug="no-dataset")
        store = FhirStore(db, CodeCatalog.for_dataset(db.path, state(request).descriptions))
        app_state.fhir_store = store
        app_state.fhir_deidentified = _deidentified(Path(db.path))
    return store


def _deidentified(path: Path) -> bool:
    meta = path / "metadata" / "dataset.json"
    try:
        return bool(json.loads(meta.read_text()).get("clinfm", {}).get("deid"))
    except (OSError, ValueError):
        return False


def _subject_access(request: Request, principal: Principal, subject_id: int) -> None:
    """404/403 unless the caller's organization owns the subject and consent allows; identified data only for
    organizations allowed to read it."""
    fhir_store(request)
    s = state(request)
    if not request.app.state.fhir_deidentified and principal.org not in s.settings.fhir_identified_orgs:
        raise Problem(403, "the served dataset is not de-identified and this organization is not allowed identified "
                      "data (CLINFM_FHIR_IDENTIFIED_ORGS)", slug="identified-data")  # fmt: skip
    s.predictions.check_store_access(principal, subject_id)


def _params(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in request.query_params.multi_items():
        out.setdefault(k, []).append(v)
    return out


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _check_type(resource_type: str, allowed: tuple[str, ...] = RESOURCE_TYPES) -> None:
    if resource_type not in allowed:
        raise Problem(404, f"resource type {resource_type!r} is not served; served: {list(allowed)}", slug="unknown-type")


@router.get("/metadata", summary="FHIR CapabilityStatement: what this server reads, searches and accepts")
def metadata(request: Request) -> JSONResponse:
    return _fhir(capability_statement(_base(request)))


def capability_statement(base: str) -> dict[str, Any]:
    resources = []
    for r in RESOURCE_TYPES:
        interactions = [{"code": "read"}, {"code": "search-type"}]
        entry: dict[str, Any] = {
            "type": r, "interaction": interactions,
            "searchParam": [{"name": p, "type": SEARCH_TYPES[p]} for p in sorted(PARAMS[r])],
        }  # fmt: skip
        if r == "Patient":
            entry["operation"] = [{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
        if r in WRITABLE:
            interactions.append({"code": "create"})
        resources.append(entry)
    resources.append({"type": "ServiceRequest", "interaction": [{"code": "create"}]})
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": "2026-12-08", "kind": "instance",
        "software": {"name": "ClinFM", "version": __version__},
        "implementation": {"description": "ClinFM FHIR R4 view of a de-identified MEDS store", "url": base},
        "fhirVersion": "4.0.1", "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "Writes (create) are kept as proposals for clinician review, never in the record. "
                             f"Paging: _count (<= 1000) and _offset. Sort: _sort=date|-date. Common: {sorted(COMMON)}.",
            "security": {"service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                                  "code": "SMART-on-FHIR"}]}],
                         "description": "Bearer API key with SMART v2 scopes, e.g. patient/Observation.rs"},
            "resource": resources,
        }],
    }  # fmt: skip


@router.get("/Patient/{subject_id}/$everything", summary="Every resource of one patient (a searchset Bundle)")
async def everything(subject_id: str, request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> JSONResponse:
    principal = await _principal(request, creds, "Patient", "rs")
    if not subject_id.isdigit():
        raise Problem(404, f"Patient id {subject_id!r} is not a numeric pseudonymous id", slug="unknown-subject")
    sid = int(subject_id)
    _subject_access(request, principal, sid)
    resources = await run_in_threadpool(fhir_store(request).everything, sid)
    return _fhir(searchset(resources, len(resources), _base(request), f"Patient/{sid}/$everything", {"_count": [str(len(resources))]}))


@router.get("/{resource_type}/{resource_id}", summary="Read one resource by id (<subject_id>-<row>; Patient: <subject_id>)")
async def read(resource_type: str, resource_id: str, request: Request,
               creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> JSONResponse:  # fmt: skip
    _check_type(resource_type)
    principal = await _principal(request, creds, resource_type, "r")
    store = fhir_store(request)
    head = resource_id.split("-", 1)[0]
    if not head.isdigit():
        raise Problem(404, f"{resource_type}/{resource_id} is not a ClinFM resource id", slug="not-found")
    _subject_access(request, principal, int(head))  # tenancy and consent before anything of the record is read
    try:
        _, resource = await run_in_threadpool(store.read, resource_type, resource_id)
    except SearchError:
        resource = None
    if resource is None:
        raise Problem(404, f"{resource_type}/{resource_id} does not exist", slug="not-found")
    return _fhir(resource)


@router.get("/{resource_type}", summary="Search: patient, code, date (eq/ge/le/gt/lt), category, _sort, _count, _offset")
async def search(resource_type: str, request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> JSONResponse:
    _check_type(resource_type)
    principal = await _principal(request, creds, resource_type, "s")
    store = fhir_store(request)
    params = _params(request)
    try:
        sid = store.subject_of(params)
    except SearchError as exc:
        raise Problem(400, str(exc), slug="invalid-search") from None
    if sid is not None:
        _subject_access(request, principal, sid)
    elif resource_type == "Patient":
        _org_access(request, principal)
    try:
        resources, total = await run_in_threadpool(store.search, resource_type, params)
    except SearchError as exc:
        raise Problem(400, str(exc), slug="invalid-search") from None
    except KeyError:
        raise Problem(404, f"subject {sid} is not in this organization's dataset", slug="unknown-subject") from None
    if resource_type == "Patient":
        resources = [r for r in resources if _consented(request, principal, int(r["id"]))]
    return _fhir(searchset(resources, total, _base(request), resource_type, params))


def _org_access(request: Request, principal: Principal) -> None:
    s = state(request)
    if principal.org != s.settings.dataset_org:
        raise Problem(404, "this organization has no patients in the served dataset", slug="unknown-subject")
    if not request.app.state.fhir_deidentified and principal.org not in s.settings.fhir_identified_orgs:
        raise Problem(403, "the served dataset is not de-identified and this organization is not allowed identified "
                      "data (CLINFM_FHIR_IDENTIFIED_ORGS)", slug="identified-data")  # fmt: skip


def _consented(request: Request, principal: Principal, subject_id: int) -> bool:
    return bool(state(request).access.may_use_subject(principal, subject_id))


# --- writes: proposals ------------------------------------------------------------------------------------
def proposal_store(request: Request) -> ProposalStore:
    store = getattr(request.app.state, "proposals", None)
    if store is None:
        store = request.app.state.proposals = ProposalStore(state(request).settings.data_dir / "proposals.sqlite")
    return store


@router.post("/{resource_type}", status_code=201, responses=responses(*AUTH_RESPONSES, 400, 404, 422, 503),
             summary="Propose a ServiceRequest, MedicationRequest or Observation for clinician review")  # fmt: skip
async def create(resource_type: str, request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> JSONResponse:
    _check_type(resource_type, WRITABLE)
    principal = await _principal(request, creds, resource_type, "c")
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise Problem(400, f"the body is not JSON (expected a FHIR {resource_type} resource)", slug="invalid-json") from None
    try:
        resource, sid = validate_resource(resource_type, body)
    except ProposalError as exc:
        raise Problem(422, str(exc), slug="invalid-resource") from None
    _subject_access(request, principal, sid)
    s = state(request)
    safety = None
    if resource_type == "MedicationRequest":
        safety = await run_in_threadpool(_safety_check, s, sid, medication_names(resource))
    resource.setdefault("meta", {})["tag"] = [PROPOSAL_TAG]
    proposals = proposal_store(request)
    proposal = await run_in_threadpool(proposals.add, principal.org, principal.actor, resource_type, sid, resource, safety)
    try:
        await run_in_threadpool(_audit, s, "fhir.proposal.create", principal, sid,
                                {"proposal_id": proposal.id, "resource_type": resource_type,
                                 "safety": (safety or {}).get("highest_severity") if safety else None})  # fmt: skip
    except Exception:
        await run_in_threadpool(proposals.delete, principal.org, proposal.id)  # never kept unaudited
        raise Problem(503, "the audit log could not be written; the proposal was not kept", slug="audit-unavailable") from None
    headers = {"Location": f"{_base(request)}/{resource_type}/{proposal.id}"}
    out = dict(proposal.resource)
    if safety is not None:
        out = {**out, "contained": out.get("contained", []) + [_detected_issue(safety, sid)]} if _issues(safety) else out
    return _fhir(out, 201, headers)


def _safety_check(s: Any, sid: int, medications: list[str]) -> dict[str, Any]:
    if isinstance(s.treatment, Unavailable):
        return {"checked": False, "reason": s.treatment.reason}
    result = s.treatment.check(medications, [], None, None, s.store[sid])
    out = result if isinstance(result, dict) else result.model_dump(mode="json")
    return {"checked": True, **out}


def _issues(safety: dict[str, Any]) -> list[str]:
    out = []
    for group in ("allergy_conflicts", "interactions", "renal_flags", "duplicates"):
        for f in safety.get(group) or []:
            out.append(f"{group}: {f.get('severity', '')} {f.get('reason') or f.get('risk') or ''}".strip())
    return out + list(safety.get("warnings") or [])


def _detected_issue(safety: dict[str, Any], sid: int) -> dict[str, Any]:
    return {"resourceType": "DetectedIssue", "id": "safety", "status": "preliminary",
            "patient": {"reference": f"Patient/{sid}"},
            "severity": {"major": "high", "contraindicated": "high", "moderate": "moderate"}.get(safety.get("highest_severity") or "", "low"),
            "detail": "; ".join(_issues(safety))[:2000]}  # fmt: skip


def _audit(s: Any, action: str, principal: Principal, sid: int, details: dict[str, Any]) -> None:
    from clinfm.govern import audit
    from clinfm.govern.db import session_scope

    with session_scope(s.settings.resolved_database_url, write=True) as session:
        audit.append(session, action, actor=principal.actor, org=principal.org, subject_id=sid,
                     purpose="fhir-write", details=details)  # fmt: skip


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: str = Field(pattern="^(accepted|rejected)$")
    reason: str | None = Field(None, max_length=2000)


@review_router.get("", summary="Proposals waiting for (or past) clinician review")
async def list_proposals(request: Request, status: str | None = "proposed", subject_id: int | None = None,
                         creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> JSONResponse:  # fmt: skip
    principal = await _principal(request, creds, "ServiceRequest", "r")
    try:
        items = await run_in_threadpool(proposal_store(request).list, principal.org, status, None, subject_id)
    except ProposalError as exc:
        raise Problem(422, str(exc), slug="invalid-parameter") from None
    return JSONResponse({"proposals": [p.summary() for p in items]})


async def _reviewer(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """The caller, authenticated as a dependency so that a request without a key gets 401 before its body is read."""
    return await _principal(request, creds, "ServiceRequest", "u")


@review_router.post("/{proposal_id}/review", summary="Accept or reject a proposal (the record is not changed)")
async def review(proposal_id: str, body: ReviewRequest, request: Request,
                 principal: Principal = Depends(_reviewer)) -> JSONResponse:  # fmt: skip
    store = proposal_store(request)
    try:
        p = await run_in_threadpool(store.review, principal.org, proposal_id, principal.actor, body.decision, body.reason)
    except KeyError:
        raise Problem(404, f"proposal {proposal_id} does not exist", slug="not-found") from None
    except ProposalError as exc:
        raise Problem(409, str(exc), slug="already-reviewed") from None
    await run_in_threadpool(_audit, state(request), "fhir.proposal.review", principal, p.subject_id,
                            {"proposal_id": p.id, "decision": body.decision})  # fmt: skip
    return JSONResponse(p.summary())
