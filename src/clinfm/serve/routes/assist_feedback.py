"""``POST /v1/assist/{answer_id}/feedback``: a clinician's rating, correction and reason on an assistant answer,
kept for review and for fine-tuning (``clinfm assist-finetune``); scope ``Assist.c`` in any context."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from clinfm.agentbench.feedback import Feedback, record_feedback
from clinfm.serve.deps import require, state
from clinfm.serve.problems import AUTH_RESPONSES, Problem, responses
from clinfm.serve.security import Principal, ScopeNeed

router = APIRouter(prefix="/v1/assist", tags=["assist"])
FEEDBACK = (ScopeNeed("Assist", "c", ("system", "user", "patient")),)
FEEDBACK_FILE = "assist-feedback.jsonl"


@router.post("/{answer_id}/feedback", status_code=201, responses=responses(*AUTH_RESPONSES, 422),
             summary="Rate an assistant answer, with a correction and a reason")  # fmt: skip
async def feedback(answer_id: str, body: Feedback, request: Request,
                   principal: Principal = require(*FEEDBACK)) -> JSONResponse:  # fmt: skip
    if not 1 <= len(answer_id) <= 100 or not answer_id.replace("-", "").replace("_", "").isalnum():
        raise Problem(422, f"answer id {answer_id[:100]!r} is not an answer id (letters, digits, - and _)", slug="invalid-parameter")
    path = state(request).settings.data_dir / FEEDBACK_FILE
    entry = await run_in_threadpool(record_feedback, path, answer_id, body, principal.org, principal.actor)
    return JSONResponse({"id": entry["id"], "answer_id": answer_id, "rating": body.rating}, status_code=201)
