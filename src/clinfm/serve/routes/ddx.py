"""Differential-diagnosis sessions: start one, answer its questions, read the ranked differential.

Sessions live in server memory, per organization (another tenant's session id answers 404).
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

MAX_SESSIONS = 10_000
SessionId = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]


def create_session(request: Request, principal: Principal, body: DdxStart) -> DdxState:
    s = state(request)
    subject = s.predictions.store_subject(principal, body.subject_id) if body.subject_id is not None else None
    session = s.ddx.start(body.age, body.sex, body.initial_evidence, body.answers, body.budget, subject)
    sid = new_id()
    if len(s.ddx_sessions) >= MAX_SESSIONS:
        s.ddx_sessions.pop(next(iter(s.ddx_sessions)))
    s.ddx_sessions[sid] = (principal.org, session)
    return DdxState(session_id=sid, state=s.ddx.dump(session))


def session_of(request: Request, principal: Principal, session_id: str):
    found = state(request).ddx_sessions.get(session_id)
    if found is None or found[0] != principal.org:
        raise Problem(404, f"no differential-diagnosis session {session_id}", slug="unknown-session")
    return found[1]


def answer_session(request: Request, principal: Principal, session_id: str, body: DdxAnswer) -> DdxState:
    s = state(request)
    new = s.ddx.answer(session_of(request, principal, session_id), body.evidence, body.value, body.source)
    s.ddx_sessions[session_id] = (principal.org, new)
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
