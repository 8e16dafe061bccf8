"""Liveness (``/health``) and readiness (``/ready``: which backends are in place); no key needed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from clinfm import __version__
from clinfm.serve.deps import state

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is up")
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/ready", summary="Governance, the dataset, a deployed model and reasoning are in place",
            responses={503: {"description": "Something the API needs is missing; the body says what"}})
def ready(request: Request) -> JSONResponse:
    parts = state(request).readiness()
    needed = ("access", "registry", "audit", "model")
    ok = all(parts[k] == "ok" for k in needed)
    return JSONResponse({"status": "ready" if ok else "not ready", "parts": parts}, status_code=200 if ok else 503)
