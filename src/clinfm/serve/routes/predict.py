"""``POST /v1/predict``: risk forecasts with intervals, expected next diagnoses and their evidence."""

from __future__ import annotations

from fastapi import APIRouter, Request

from clinfm.serve.deps import PREDICT, require, state
from clinfm.serve.problems import AUTH_RESPONSES, responses
from clinfm.serve.schemas import PredictRequest, PredictResponse
from clinfm.serve.security import Principal

router = APIRouter(prefix="/v1", tags=["predict"])


@router.post("/predict", response_model=PredictResponse, responses=responses(*AUTH_RESPONSES, 404, 409, 503),
             summary="Forecast for a subject in the store or an inline FHIR R4 Bundle at a prediction time")
async def predict(body: PredictRequest, request: Request, principal: Principal = require(*PREDICT)) -> PredictResponse:
    outcome = await state(request).predictions.predict(principal, body, channel="api")
    return outcome.response
