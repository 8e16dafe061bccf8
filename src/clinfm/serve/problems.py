"""Errors as RFC 9457 ``application/problem+json``: a type, a title, a status and a safe detail.

Every error leaves the server through here, so no stack trace, exception text or PHI reaches a client:
unexpected exceptions are logged with an incident id and answered with that id only.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
INSTANCE_MAX = 200
"""A problem's ``instance`` (the request path) is cut to this: a client never gets a huge path echoed back."""
TYPE_BASE = "https://clinfm.dev/problems/"

TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """Raise anywhere in serving to answer with a problem document. ``detail`` must hold no PHI."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.slug = slug or TITLES.get(status, "error").lower().replace(" ", "-")
        self.title = title or TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    slug = slug or TITLES.get(status, "error").lower().replace(" ", "-")
    body = {"type": TYPE_BASE + slug, "title": title or TITLES.get(status, "Error"), "status": status, "detail": detail}
    if instance:
        body["instance"] = instance if len(instance) <= INSTANCE_MAX else instance[: INSTANCE_MAX - 1] + "…"
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


PROBLEM_SCHEMA = {
    "content": {
        PROBLEM_MEDIA_TYPE: {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                },
                "required": ["type", "title", "status"],
            }
        }
    }
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the problem statuses a route can answer (400 always: bad bytes)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({400, 413, 422, 500, *statuses}):
        out[status] = {"description": TITLES.get(status, "Error"), **PROBLEM_SCHEMA}
    return out


AUTH_RESPONSES = (401, 403, 429)


def _validation_detail(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    """Say which field failed and why, never echoing the submitted value (it may be PHI)."""
    errors = []
    status = 422
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            status = 400
        errors.append({"location": ".".join(str(p) for p in err.get("loc", ())), "message": str(err.get("msg", ""))})
    first = errors[0] if errors else {"location": "body", "message": "invalid"}
    detail = f"{first['location']}: {first['message']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return status, detail, errors


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, slug=exc.slug, title=exc.title, instance=request.url.path,
            headers=exc.headers, extra=exc.extra,
        )  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "error")
        return problem_response(exc.status_code, detail, instance=request.url.path, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail, errors = _validation_detail(exc)
        return problem_response(status, detail, instance=request.url.path, extra={"errors": errors})



def incident_response(exc: BaseException, method: str, path: str) -> JSONResponse:
    """A 500 problem naming an incident id; the log gets the type and frames, never the message."""
    incident = uuid.uuid4().hex[:12]
    log.error("incident %s: %s on %s %s\n%s", incident, type(exc).__name__, method, path,
              "".join(traceback.format_tb(exc.__traceback__)))  # fmt: skip
    return problem_response(500, f"an internal error occurred (incident {incident}); it has been logged",
                            instance=path, extra={"incident": incident})  # fmt: skip
