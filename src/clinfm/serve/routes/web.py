"""The clinician web pages: login with an API key, find a patient by pseudonymous id, the timeline chart and
list, the risk panel, a differential-diagnosis session, and the model card. Server-rendered (Jinja2), plain
HTML forms and a few lines of JavaScript; no front-end build.

Web auth: the login form checks the key with governance and stores it in the ``clinfm_key`` cookie
(HttpOnly, SameSite=Strict, Secure in production, 8 hours), which the same scope and quota checks read as the
API's Bearer header. SameSite=Strict keeps the cookie off cross-site requests (no CSRF); logout clears it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi import Path as FastAPIPath
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from clinfm.data.timeline import event_kind
from clinfm.serve.deps import (
    DDX_CREATE,
    DDX_READ,
    DDX_UPDATE,
    MODELS_READ,
    PREDICT,
    TIMELINE,
    WEB_COOKIE,
    resolve_principal,
    state,
)
from clinfm.serve.inputs import INT64_MAX, parse_id
from clinfm.serve.problems import Problem
from clinfm.serve.routes.ddx import answer_session, create_session, session_of
from clinfm.serve.routes.models import fetch_card
from clinfm.serve.schemas import DdxAnswer, DdxStart, PredictRequest
from clinfm.serve.security import Principal, ScopeNeed

WEB = Path(__file__).resolve().parent.parent / "web"
templates = Jinja2Templates(directory=str(WEB / "templates"))
router = APIRouter(prefix="/web", include_in_schema=False)
root = APIRouter(include_in_schema=False)


@root.get("/")
def home_redirect() -> RedirectResponse:
    """The server's root opens the clinician web page."""
    return RedirectResponse("/web/", status_code=307)
COOKIE_MAX_AGE = 8 * 3600
CHART_KINDS = ("visit", "diagnosis", "medication", "lab", "procedure")
MAX_CHART_EVENTS = 3000


def mount_static(app: FastAPI) -> None:
    app.mount("/web/static", StaticFiles(directory=str(WEB / "static")), name="static")


class LoginRequired(Exception):
    pass


async def web_principal(request: Request, *needs: ScopeNeed) -> Principal:
    try:
        return await resolve_principal(request, request.cookies.get(WEB_COOKIE), needs)
    except Problem as exc:
        if exc.status == 401:
            raise LoginRequired from None
        raise


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    return templates.TemplateResponse(request, name, {"principal": principal, **context}, status_code=status)


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Scripts only from /web/static (no inline script can run, even if escaping ever failed); inline style attributes
are allowed for the probability bars; no framing (clickjacking)."""


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def _web_headers(request: Request, call_next) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/web"):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/web/login?next={request.url.path}", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/web/") -> HTMLResponse:
    return page(request, "login.html", next=_local(next))


@router.post("/login")
async def login(request: Request, api_key: str = Form(..., max_length=200), next: str = Form("/web/")) -> Response:
    try:
        await resolve_principal(request, api_key.strip(), ())
    except Problem as exc:
        return page(request, "login.html", status=exc.status, error=exc.detail, next=_local(next))
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(WEB_COOKIE, api_key.strip(), max_age=COOKIE_MAX_AGE, httponly=True, samesite="strict",
                        secure=state(request).settings.cookie_secure, path="/")  # fmt: skip
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/web/login", status_code=303)
    response.delete_cookie(WEB_COOKIE, path="/")
    return response


def _local(path: str) -> str:
    """Only same-site paths after login (no open redirect)."""
    return path if path.startswith("/web/") and "//" not in path and "\\" not in path else "/web/"


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, subject_id: str | None = None) -> Response:
    await web_principal(request, *TIMELINE)
    if subject_id:
        try:
            return RedirectResponse(f"/web/patients/{parse_id(subject_id, 'subject_id')}", status_code=303)
        except Problem:
            return page(request, "home.html", status=422,
                        error=f"A pseudonymous id is a number of 1 to 19 digits, at most {INT64_MAX}.")
    return page(request, "home.html")


@router.get("/patients/{subject_id}", response_class=HTMLResponse)
async def patient(request: Request, subject_id: Annotated[int, FastAPIPath(ge=0, le=INT64_MAX)]) -> Response:
    principal = await web_principal(request, *TIMELINE)
    s = state(request)
    try:
        subject = s.predictions.store_subject(principal, subject_id)
    except Problem as exc:
        return page(request, "home.html", status=exc.status, error=exc.detail)
    risk, risk_error = None, None
    try:
        from clinfm.serve.security import allowed

        if not allowed(principal, PREDICT, s.access.scope_allows):
            raise Problem(403, "this key may not read risk forecasts (needs RiskAssessment.rs)")
        outcome = await s.predictions.predict(principal, PredictRequest(subject_id=subject_id, purpose="treatment"), channel="web")
        risk = {"response": outcome.response, "deployment": outcome.deployment}
    except Problem as exc:
        risk_error = exc.detail
    events = [e for e in subject.events if e.time is not None]
    return page(request, "patient.html", subject_id=subject_id, static=[e.code for e in subject.events if e.time is None],
                chart=timeline_chart(events, s.descriptions), rows=timeline_rows(events, s.descriptions),
                n_events=len(events), risk=risk, risk_error=risk_error)  # fmt: skip


def timeline_rows(events: list, descriptions: dict[str, str], limit: int = 300) -> list[dict[str, Any]]:
    """The most recent events first, as table rows (values shown, notes never)."""
    rows = []
    for e in reversed(events[-limit:]):
        kind = event_kind(e.code)
        value = f"{e.numeric_value:g} {e.unit or ''}".strip() if e.numeric_value is not None else ""
        if not value and e.text_value and kind != "note":
            value = e.text_value[:40]
        rows.append({"time": e.time, "kind": kind, "code": e.code, "description": descriptions.get(e.code, ""), "value": value})
    return rows


def timeline_chart(events: list, descriptions: dict[str, str], width: int = 960, row_h: int = 34) -> dict[str, Any]:
    """An inline SVG: one row per kind of event, one mark per event, x = time; year ticks."""
    shown = [e for e in events if event_kind(e.code) in CHART_KINDS][-MAX_CHART_EVENTS:]
    left, right, top = 110, 20, 20
    height = top + row_h * len(CHART_KINDS) + 30
    if not shown:
        return {"width": width, "height": height, "marks": [], "ticks": [], "rows": [], "empty": True}
    t0, t1 = shown[0].time, shown[-1].time
    span = max((t1 - t0).total_seconds(), 86400.0)

    def x(t: dt.datetime) -> float:
        return round(left + (width - left - right) * (t - t0).total_seconds() / span, 1)

    rows = [{"kind": k, "y": top + row_h * i + row_h / 2} for i, k in enumerate(CHART_KINDS)]
    y_of = {r["kind"]: r["y"] for r in rows}
    marks = []
    for e in shown:
        kind = event_kind(e.code)
        label = descriptions.get(e.code, e.code)
        marks.append({"x": x(e.time), "y": y_of[kind], "kind": kind, "title": f"{e.time:%Y-%m-%d} {label}"[:120]})
    ticks = [{"x": x(dt.datetime(y, 1, 1)), "label": str(y)} for y in range(t0.year + 1, t1.year + 1)]
    step = max(1, len(ticks) // 12)
    return {"width": width, "height": height, "marks": marks, "ticks": ticks[::step], "rows": rows, "empty": False,
            "start": f"{t0:%Y-%m-%d}", "end": f"{t1:%Y-%m-%d}", "axis_y": height - 20}  # fmt: skip


@router.get("/ddx", response_class=HTMLResponse)
async def ddx_start_form(request: Request) -> Response:
    await web_principal(request, *DDX_CREATE)
    return page(request, "ddx_start.html")


@router.post("/ddx")
async def ddx_start(request: Request, age: str = Form(""), sex: str = Form(""), complaint: str = Form("")) -> Response:
    principal = await web_principal(request, *DDX_CREATE)
    try:
        body = DdxStart(age=int(age) if age.strip().isdigit() else None, sex=sex if sex in ("female", "male") else None,
                        initial_evidence=complaint.strip() or None)  # fmt: skip
        created = create_session(request, principal, body)
    except (Problem, ValueError) as exc:
        return page(request, "ddx_start.html", status=422, error=getattr(exc, "detail", "invalid input"))
    return RedirectResponse(f"/web/ddx/{created.session_id}", status_code=303)


@router.get("/ddx/{session_id}", response_class=HTMLResponse)
async def ddx_session(request: Request, session_id: str) -> Response:
    principal = await web_principal(request, *DDX_READ)
    s = state(request)
    try:
        session = session_of(request, principal, session_id)
    except Problem as exc:
        return page(request, "home.html", status=exc.status, error=exc.detail)
    return page(request, "ddx.html", session_id=session_id, session=s.ddx.dump(session))


@router.post("/ddx/{session_id}/answer")
async def ddx_answer(request: Request, session_id: str, evidence: str = Form(..., max_length=64),
                     value: list[str] = Form(...)) -> Response:  # fmt: skip
    principal = await web_principal(request, *DDX_UPDATE)
    parsed: Any = value if len(value) > 1 else {"yes": True, "no": False}.get(value[0], value[0])
    try:
        answer_session(request, principal, session_id, DdxAnswer(evidence=evidence, value=parsed))
    except Problem as exc:
        if exc.status == 404:
            return page(request, "home.html", status=404, error=exc.detail)
    return RedirectResponse(f"/web/ddx/{session_id}", status_code=303)


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request) -> Response:
    principal = await web_principal(request, *MODELS_READ)
    return page(request, "models.html", deployments=state(request).registry.deployments(principal.org))


@router.get("/models/{version}", response_class=HTMLResponse)
async def model_card_page(request: Request, version: str) -> Response:
    principal = await web_principal(request, *MODELS_READ)
    try:
        html = fetch_card(request, principal, version, "html")
    except Problem as exc:
        return page(request, "card.html", status=exc.status, error=exc.detail, version=version)
    return page(request, "card.html", version=version, card_html=html)
