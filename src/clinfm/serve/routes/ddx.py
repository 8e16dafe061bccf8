"""Differential-diagnosis sessions: start one, answer its questions, read the ranked differential.

Sessions live in server memory, capped per organization (``CLINFM_DDX_SESSIONS_PER_ORG``): a full organization
evicts its own oldest session, never another's; another tenant's session id answers 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from clinfm.serve.deps import DDX_CREATE, DDX_READ, DDX_UPDATE, require, state
from clinfm.serve.predictions import new_id
from clinfm.serve.problems import AUTH_RESPONSES, Problem, responses
from clinfm.serve.schemas import DdxAnswer, DdxStart, DdxState
from clinfm.serve.security import Principal

router = APIRouter(prefix="/v1/ddx", tags=["differential diagnosis"])

SessionId = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]


def create_session(request: Request, principal: Principal, body: DdxStart) -> DdxState:
    s = state(request)
    subject = s.predictions.store_subject(principal, body.subject_id) if body.subject_id is not None else None
    session = s.ddx.start(body.age, body.sex, body.initial_evidence, body.answers, body.budget, subject)
    sid = new_id()
    s.ddx_sessions.put(principal.org, sid, session, limit=s.settings.ddx_sessions_per_org)
    return DdxState(session_id=sid, state=s.ddx.dump(session))


def session_of(request: Request, principal: Principal, session_id: str):
    found = state(request).ddx_sessions.get(principal.org, session_id)
    if found is None:  # another tenant's session id is as unknown as a made-up one
        raise Problem(404, f"no differential-diagnosis session {session_id}", slug="unknown-session")
    return found


def answer_session(request: Request, principal: Principal, session_id: str, body: DdxAnswer) -> DdxState:
    s = state(request)
    new = s.ddx.answer(session_of(request, principal, session_id), body.evidence, body.value, body.source)
    s.ddx_sessions.put(principal.org, session_id, new, limit=s.settings.ddx_sessions_per_org)
    return DdxState(session_id=session_id, state=s.ddx.dump(new))


@router.post("/sessions", response_model=DdxState, status_code=201, responses=responses(*AUTH_RESPONSES, 503),
             summary="Start an interview (age, sex, chief complaint, answers already known, the patient's record)")
def start(body: DdxStart, request: Request, principal: Principal = require(*DDX_CREATE)) -> DdxState:
    return create_session(request, principal, body)


@router.post("/sessions/{session_id}/answers", response_model=DdxState, responses=responses(*AUTH_RESPONSES, 404, 503),
             summary="Answer a question; returns the updated differential and the next question")
def answer(session_id: SessionId, body: DdxAnswer, request: Request,
           principal: Principal = require(*DDX_UPDATE)) -> DdxState:  # fmt: skip
    return answer_session(request, principal, session_id, body)


@router.get("/sessions/{session_id}", response_model=DdxState, responses=responses(*AUTH_RESPONSES, 404, 503),
            summary="The session's state: answers, ranked differential with findings, next question")
def get(session_id: SessionId, request: Request, principal: Principal = require(*DDX_READ)) -> DdxState:
    s = state(request)
    return DdxState(session_id=session_id, state=s.ddx.dump(session_of(request, principal, session_id)))
