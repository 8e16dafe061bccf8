"""The organization's models and their generated model cards."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from clinfm.serve.deps import MODELS_READ, require, state
from clinfm.serve.problems import AUTH_RESPONSES, Problem, responses
from clinfm.serve.schemas import ModelList, ModelSummary
from clinfm.serve.security import Principal

router = APIRouter(prefix="/v1/models", tags=["models"])

VersionPath = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@:-]+$")]


def card_url(request: Request, version: str) -> str:
    base = state(request).settings.public_base_url or str(request.base_url).rstrip("/")
    return f"{base}/web/models/{version}"


@router.get("", response_model=ModelList, summary="Registered model versions and their lifecycle state",
            responses=responses(*AUTH_RESPONSES, 503))
def list_models(request: Request, principal: Principal = require(*MODELS_READ)) -> ModelList:
    s = state(request)
    deployments = s.registry.deployments(principal.org)
    serving = [d for d in deployments if d.serves]
    default = s.predictions.deployment(principal.org, None).version if serving else None
    return ModelList(
        models=[ModelSummary(version=d.version, name=d.name, lifecycle_state=d.state, produces_cards=d.produces_cards,
                             card_url=card_url(request, d.version), description=d.description) for d in deployments],
        default_version=default,
    )  # fmt: skip


@router.get("/{version}/card", summary="The model card, generated from the registry",
            responses={**responses(*AUTH_RESPONSES, 404, 503),
                       200: {"content": {"application/json": {}, "text/html": {}, "text/markdown": {}}}})
def model_card(
    request: Request, version: VersionPath,
    format: Literal["json", "html", "markdown"] = Query("json"),
    principal: Principal = require(*MODELS_READ),
) -> Response:  # fmt: skip
    card = fetch_card(request, principal, version, format)
    if format == "html":
        return HTMLResponse(card)
    if format == "markdown":
        return PlainTextResponse(card, media_type="text/markdown")
    return JSONResponse(card)


def fetch_card(request: Request, principal: Principal, version: str, fmt: Literal["json", "html", "markdown"]) -> Any:
    try:
        return state(request).registry.card(principal.org, version, fmt)
    except KeyError:
        raise Problem(404, f"model version {version!r} is not registered for this organization", slug="unknown-model") from None
    except LookupError as exc:
        raise Problem(503, f"model cards are not available: {exc}", slug="unavailable") from None
