"""The ClinFM server: ``create_app(settings)`` builds the FastAPI app, ``run(host, port, settings)`` serves it.

The app holds one :class:`~clinfm.serve.state.ServeState` (governance, the dataset, the deployed models,
reasoning engines, caches and logs), built by the composition root :func:`clinfm.serve.wiring.build_state`;
routers in ``routes/`` only parse, authorize and call into it.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinfm import __version__
from clinfm.serve.problems import incident_response, install_problem_handlers, problem_response
from clinfm.serve.routes import assist, cds_hooks, ddx, fhir, health, models, predict, treatment, web
from clinfm.serve.settings import ServeSettings
from clinfm.serve.state import ServeState
from clinfm.serve.wiring import build_state

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Answers 413 before reading more than ``limit`` bytes (declared length or streamed bytes)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = problem_response(413, f"request bodies are limited to {self.limit} bytes", instance=scope.get("path"))
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await too_big(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await too_big(scope, receive, send)


class _TooLarge(Exception):
    pass


class Incidents:
    """Turns an unexpected exception into a 500 problem with an incident id, logged with its type and frames
    only (exception messages can quote request data), instead of letting the server print it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            await incident_response(exc, scope.get("method", ""), scope.get("path", ""))(scope, receive, send)


class SecurityHeaders:
    """No caching of responses that may hold patient data; no framing; no MIME sniffing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                for k, v in (
                    (b"cache-control", b"no-store"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ):
                    if k not in names:
                        headers.append((k, v))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: ServeSettings | None = None, state: ServeState | None = None) -> FastAPI:
    """The ClinFM API, CDS Hooks services, FHIR operation and clinician web pages.

    ``state`` lets a caller (tests, an embedding application) pass already-built backends.
    """
    settings = settings or ServeSettings()
    serve_state = state or build_state(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await serve_state.close()

    app = FastAPI(
        title="ClinFM",
        version=__version__,
        description=(
            "Clinical foundation model serving: risk forecasts with intervals and evidence, differential "
            "diagnosis, medication safety checks, FHIR RiskAssessment and CDS Hooks 2.0. Every route but "
            "/health, /ready and /cds-services needs `Authorization: Bearer <API key>`; errors are RFC 9457 "
            "problem documents."
        ),
        lifespan=lifespan,
    )
    app.state.serve = serve_state
    install_problem_handlers(app)

    for module in (health, models, predict, ddx, treatment, fhir, cds_hooks, web, assist):
        app.include_router(module.router)
    from clinfm.serve.routes import assist_feedback, fhir_read  # FHIR read API, proposals, feedback (issue 17)

    app.include_router(fhir_read.router)
    app.include_router(fhir_read.review_router)
    app.include_router(assist_feedback.router)
    app.include_router(web.root)  # "/" opens the web page
    web.mount_static(app)
    web.install(app)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )  # fmt: skip
    app.add_middleware(Incidents)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    return app


def run(host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None, **uvicorn_options: Any) -> None:
    """Serve the app with uvicorn (blocking). ``clinfm serve --host --port`` calls this."""
    import uvicorn

    app = create_app(settings or ServeSettings())
    uvicorn.run(app, host=host, port=port, log_level=uvicorn_options.pop("log_level", "info"),
                access_log=uvicorn_options.pop("access_log", False), **uvicorn_options)  # fmt: skip


