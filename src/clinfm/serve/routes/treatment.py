"""``POST /v1/treatment/check``: safety checks on a medication list (allergies, interactions, renal, duplicates)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from clinfm.serve.deps import TREATMENT, require, state
from clinfm.serve.problems import AUTH_RESPONSES, responses
from clinfm.serve.schemas import TreatmentCheckRequest, TreatmentCheckResponse
from clinfm.serve.security import Principal

router = APIRouter(prefix="/v1/treatment", tags=["treatment"])


@router.post("/check", response_model=TreatmentCheckResponse, responses=responses(*AUTH_RESPONSES, 404, 503),
             summary="Drug-allergy, drug-drug, renal dosing and duplicate-therapy checks")
async def check(body: TreatmentCheckRequest, request: Request,
                principal: Principal = require(*TREATMENT)) -> TreatmentCheckResponse:  # fmt: skip
    s = state(request)
    subject = s.predictions.store_subject(principal, body.subject_id) if body.subject_id is not None else None
    meds = [m.code or m.name or "" for m in body.medications]
    result = await run_in_threadpool(s.treatment.check, meds, list(body.allergies), body.egfr, body.creatinine_mg_dl, subject)
    return TreatmentCheckResponse(result=result.model_dump(mode="json"))
