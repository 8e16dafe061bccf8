"""``POST /v1/assist``: a clinician's question about one patient, answered by the governed clinical assistant.

The assistant (backend + settings, ``CLINFM_ASSIST_*``) is built once per server process on first use, so the
local model loads once. Its configuration must be a registered version of the caller's organization in silent,
pilot or general state; silent answers are computed, verified and audited, and not shown.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import Field, ValidationError

from clinfm.serve.deps import ASSIST, require, state
from clinfm.serve.problems import AUTH_RESPONSES, Problem, responses
from clinfm.serve.schemas import Body, Purpose, SubjectId
from clinfm.serve.security import Principal

router = APIRouter(tags=["assist"])
_LOCK = threading.Lock()


class AssistRequest(Body):
    question: str = Field(..., min_length=1, max_length=1000, description="The question, in words.")
    subject_id: SubjectId | None = Field(None, description="Pseudonymous subject id in the served dataset.")
    bundle: dict[str, Any] | None = Field(None, description="Or: a FHIR R4 Bundle holding one Patient and their record.")
    at: dt.datetime | None = Field(None, description="Read the record as of this time (default: all of it).")
    purpose: Purpose = "treatment"


def assistant_of(s: Any) -> Any:
    """The server's one :class:`~clinfm.assist.service.Assistant` (built on first use; 503 when it cannot be)."""
    if getattr(s, "assistant", None) is None:
        with _LOCK:
            if getattr(s, "assistant", None) is None:
                from clinfm.assist.service import Assistant
                from clinfm.assist.settings import AssistSettings, make_backend

                try:
                    settings = AssistSettings()
                    s.assistant = Assistant(make_backend(settings), settings, db=s.settings.resolved_database_url,
                                            text_log=s.settings.data_dir / "assist-text.jsonl")  # fmt: skip
                except (ValueError, FileNotFoundError, ImportError) as exc:
                    raise Problem(503, f"the assistant's model is not available: {exc}", slug="assistant-unavailable",
                                  headers={"Retry-After": "60"}) from None  # fmt: skip
    return s.assistant


@router.post("/v1/assist", responses=responses(*AUTH_RESPONSES, 404, 422, 503),
             summary="Ask about one patient: verified statements with citations, or an abstention")
async def assist(body: AssistRequest, request: Request, principal: Principal = require(*ASSIST)) -> dict[str, Any]:
    return await answer_request(request, principal, body)


@router.post("/web/patients/{subject_id}/ask", include_in_schema=False)
async def web_ask(request: Request, subject_id: int, question: str = Form("")) -> Response:
    """The web page's "Ask about this patient" panel (a plain form; the answer is rendered on the server)."""
    from clinfm.serve.routes.web import page, web_principal

    principal = await web_principal(request, *ASSIST)
    answer, error, status = None, None, 200
    try:
        answer = await answer_request(request, principal, AssistRequest(question=question, subject_id=subject_id))
    except ValidationError:
        error, status = "Ask a question of 1 to 1000 characters.", 422
    except Problem as exc:
        error, status = exc.detail, exc.status
    return page(request, "assist.html", status=status, subject_id=subject_id, question=question, answer=answer,
                assist_error=error)  # fmt: skip


async def answer_request(request: Request, principal: Principal, body: AssistRequest) -> dict[str, Any]:
    """Authorize the subject, find the registered configuration, answer off the event loop within a timeout."""
    from clinfm.assist.agent import validate_question
    from clinfm.assist.backends import BackendError, BackendUnavailable
    from clinfm.assist.service import EgressRefused, NotServing, dataset_is_deidentified, find_assistant_version

    s = state(request)
    try:
        validate_question(body.question)
    except ValueError as exc:
        raise Problem(422, str(exc), slug="invalid-question") from None
    if (body.subject_id is None) == (body.bundle is None):
        raise Problem(422, "give exactly one of subject_id or bundle", slug="invalid-request")
    if body.subject_id is not None:
        subject = await run_in_threadpool(s.predictions.store_subject, principal, body.subject_id)
        descriptions, deidentified = s.descriptions, dataset_is_deidentified(s.settings.dataset_path)
    else:
        inline = await run_in_threadpool(s.predictions.inline_subject, principal, body.bundle or {})
        subject, descriptions, deidentified = inline.subject, inline.descriptions, True
    assistant = await run_in_threadpool(assistant_of, s)
    version = await run_in_threadpool(find_assistant_version, assistant.config(), principal.org,
                                      s.settings.resolved_database_url)  # fmt: skip
    if version is None:
        raise Problem(503, f"organization {principal.org!r} has no registered assistant configuration for "
                      f"{assistant.model.model_id} (register it: clinfm assist-register)", slug="assistant-not-registered",
                      headers={"Retry-After": "3600"})  # fmt: skip
    forecast = _forecast_fn(s, principal, body, asyncio.get_running_loop())
    timeout = assistant.settings.timeout_s * assistant.settings.max_steps + 2
    try:
        result = await asyncio.wait_for(run_in_threadpool(
            assistant.answer, subject, body.question, org=principal.org, actor=principal.actor, at=body.at,
            descriptions=descriptions, deidentified=deidentified, state=version.state, version=version.id,
            purpose=body.purpose, forecast=forecast), timeout=timeout)  # fmt: skip
    except TimeoutError:
        raise Problem(503, f"the assistant did not answer within {timeout:g} s", slug="assistant-timeout",
                      headers={"Retry-After": "30"}) from None  # fmt: skip
    except BackendUnavailable as exc:
        raise Problem(503, f"the assistant's model is unavailable: {exc}", slug="assistant-unavailable",
                      headers={"Retry-After": str(exc.retry_after_s)}) from None  # fmt: skip
    except BackendError as exc:
        raise Problem(503, f"the assistant's model failed: {exc}", slug="assistant-unavailable",
                      headers={"Retry-After": "30"}) from None  # fmt: skip
    except EgressRefused as exc:
        raise Problem(403, str(exc), slug="phi-egress-refused") from None
    except NotServing as exc:
        raise Problem(503, str(exc), slug="assistant-not-serving", headers={"Retry-After": "3600"}) from None
    except ValueError as exc:
        raise Problem(422, str(exc), slug="invalid-question") from None
    out = result.model_dump(mode="json")
    out.update(model_version=version.id, lifecycle_state=version.state)
    return out


def _forecast_fn(s: Any, principal: Principal, body: AssistRequest, loop: asyncio.AbstractEventLoop) -> Any:
    """The forecast tool: the served foundation model through the prediction service (its lifecycle applies)."""
    if body.subject_id is None or s.predictions is None:
        return None

    def forecast(chart: Any) -> dict[str, Any]:
        from clinfm.serve.schemas import PredictRequest

        req = PredictRequest(subject_id=body.subject_id, purpose=body.purpose)
        try:
            outcome = asyncio.run_coroutine_threadsafe(s.predictions.predict(principal, req, channel="assist"), loop).result(60)
        except Problem as exc:
            return {"state": "unavailable", "version": None, "detail": exc.detail}
        r = outcome.response
        return {"state": r.lifecycle_state, "version": r.model_version,
                "risks": [{"outcome": k.outcome, "probability": k.probability, "ci_low": k.ci_low, "ci_high": k.ci_high}
                          for k in r.risks]}  # fmt: skip

    return forecast
