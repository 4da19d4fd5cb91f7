"""Web console pages: the seed's dashboard, jobs, job, backend and analytics pages.

Server-rendered with Jinja2 from the same handlers the JSON API uses (so tenancy, checks
and errors are the API's), Chart.js vendored under /static, no build step. Login stores
the API key in an HttpOnly, SameSite=Strict (and Secure) cookie; every form that changes
something carries a CSRF token that must match the `qjt_csrf` cookie (double submit), and
a form without it is refused with 403. Pages never print a key or a token.
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from qjt.contracts import DISPLAY_STATUS
from services.api.deps import SESSION_COOKIE, GatewayDep, gateway
from services.api.errors import ApiError
from services.api.routes import accounts, backends, jobs, overview
from services.api.schemas import AddInstance
from services.api.store import Principal, hash_key

HERE = Path(__file__).parent
CSRF_COOKIE = "qjt_csrf"
STATUSES = ("Queued", "Running", "Completed", "Failed", "Cancelled")
FINAL = {"Completed", "Failed", "Cancelled"}
GRAFANA = {"dashboard": "qjt-overview", "jobs": "qjt-overview", "job": "qjt-overview",
           "backend": "qjt-backend-analytics", "analytics": "qjt-backend-analytics"}  # fmt: skip
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)


class NotLoggedIn(Exception):
    """No valid session: the page sends the browser to /login."""


async def session(request: Request) -> Principal:
    key = request.cookies.get(SESSION_COOKIE)
    if not key:
        raise NotLoggedIn
    who = await gateway(request).store.principal(hash_key(key))
    if who is None:
        raise NotLoggedIn
    return who


def csrf_of(request: Request) -> str:
    return request.cookies.get(CSRF_COOKIE) or ""


def check_csrf(request: Request, token: str | None) -> None:
    expected = csrf_of(request)
    if not token or not expected or not hmac.compare_digest(token, expected):
        raise ApiError(403, "csrf_failed", "the form's CSRF token is missing or wrong; reload")


def page(
    request: Request, name: str, who: Principal | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A rendered page; a browser without a CSRF cookie gets one with it."""
    gw = gateway(request)
    token = csrf_of(request) or secrets.token_urlsafe(32)
    shown = context.get("backend")
    context.update(
        who=who,
        csrf=token,
        grafana_link=grafana_link(
            gw.settings.grafana_url, name.removesuffix(".html"), getattr(shown, "name", None)
        ),
        statuses=STATUSES,
    )
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    if not csrf_of(request):
        response.set_cookie(CSRF_COOKIE, token, **_cookie_options(request))
    return response


def grafana_link(grafana_url: str | None, page_name: str, backend: str | None) -> str | None:
    """The Grafana dashboard that matches a console page, on that page's backend if any."""
    uid = GRAFANA.get(page_name)
    if not grafana_url or uid is None:
        return None
    link = f"{grafana_url.rstrip('/')}/d/{uid}"
    if backend and uid == "qjt-backend-analytics":
        link += "?" + urlencode({"var-backend": backend})
    return link


def _cookie_options(request: Request) -> dict[str, Any]:
    secure = gateway(request).settings.console_secure_cookie
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/"}


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, error: Annotated[str | None, Query()] = None) -> Response:
    return page(request, "login.html", None, error=error)


@router.post("/login")
async def login(
    request: Request,
    gw: GatewayDep,
    api_key: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    check_csrf(request, csrf_token)
    who = await gw.store.principal(hash_key(api_key.strip())) if api_key.strip() else None
    if who is None:
        return RedirectResponse("/login?error=" + quote("unknown or revoked API key"), 303)
    response = RedirectResponse("/dashboard", 303)
    response.set_cookie(SESSION_COOKIE, api_key.strip(), max_age=7 * 86400,
                        **_cookie_options(request))  # fmt: skip
    return response


@router.post("/logout")
async def logout(request: Request, csrf_token: Annotated[str | None, Form()] = None) -> Response:
    check_csrf(request, csrf_token)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/dashboard", 303)


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard_page(request: Request, gw: GatewayDep) -> Response:
    who = await session(request)
    listed = await backends.list_backends(who, gw)
    summary = await overview.dashboard(who, gw)
    return page(request, "dashboard.html", who, backends=listed, summary=summary)


@router.get("/jobs", response_class=HTMLResponse)
async def jobs_page(  # noqa: PLR0917 (query parameters)
    request: Request,
    gw: GatewayDep,
    backend: Annotated[str, Query(max_length=100)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    tag: Annotated[str, Query(max_length=64)] = "",
    user: Annotated[str, Query(max_length=100)] = "",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    who = await session(request)
    where = jobs.job_filter(
        who,
        backend=[backend] if backend else None,
        status_=[status] if status else None,
        tag=[t for t in tag.split(",") if t] or None,
        user=user or None,
    )
    found = await jobs.list_jobs(gw, where, limit=50, cursor=cursor)
    filters = {k: v for k, v in {"backend": backend, "status": status, "tag": tag,
                                 "user": user}.items() if v}  # fmt: skip
    return page(
        request, "jobs.html", who, page_of=found, filters=filters,
        query=urlencode(filters), backends=await backends.list_backends(who, gw),
        instances=await accounts.list_instances(who, gw), final=FINAL,
    )  # fmt: skip


@router.post("/jobs/{job_id}/cancel")
async def cancel(
    job_id: str, request: Request, gw: GatewayDep, csrf_token: Annotated[str | None, Form()] = None
) -> Response:
    check_csrf(request, csrf_token)
    who = await session(request)
    await jobs.cancel_job(job_id, who, gw)
    return RedirectResponse(request.headers.get("referer") or "/jobs", 303)


@router.post("/instances")
async def add_instance(
    request: Request,
    gw: GatewayDep,
    crn: Annotated[str, Form(max_length=300)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    check_csrf(request, csrf_token)
    who = await session(request)
    await accounts.add_instance(AddInstance(crn=crn.strip()), who, gw)
    return RedirectResponse("/jobs#instances", 303)


@router.post("/instances/remove")
async def remove_instance(
    request: Request,
    gw: GatewayDep,
    crn: Annotated[str, Form(max_length=300)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    check_csrf(request, csrf_token)
    who = await session(request)
    await accounts.remove_instance(crn, who, gw)
    return RedirectResponse("/jobs#instances", 303)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(job_id: str, request: Request, gw: GatewayDep) -> Response:
    who = await session(request)
    job = await jobs.job_detail(job_id, who, gw)
    predicted = None
    if job.status == "Queued" and job.backend != "aer_simulator":
        try:
            predicted = await backends.prediction(
                job.backend, who, gw, job.num_circuits or 1, job.shots, "learned"
            )
        except ApiError:
            predicted = None
    return page(request, "job.html", who, job=job, predicted=predicted)


@router.get("/backends/{name}", response_class=HTMLResponse)
async def backend_page(name: str, request: Request, gw: GatewayDep) -> Response:
    who = await session(request)
    detail = await backends.backend_detail(name, who, gw)
    return page(request, "backend.html", who, backend=detail)


RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@router.get("/backends/{name}/analytics", response_class=HTMLResponse)
async def analytics_page(  # noqa: PLR0917 (query parameters)
    name: str,
    request: Request,
    gw: GatewayDep,
    range_: Annotated[str, Query(alias="range", pattern="^(24h|7d|30d)$")] = "7d",
    qubit: Annotated[list[int] | None, Query()] = None,
    metric: Annotated[str, Query(pattern="^(t1_us|t2_us|readout_error)$")] = "t1_us",
) -> Response:
    who = await session(request)
    detail = await backends.backend_detail(name, who, gw)
    latest = detail.calibration.calibrated_at if detail.calibration else datetime.now(UTC)
    since = latest - RANGES[range_]
    chosen = qubit or list(range(min(detail.num_qubits or 0, 5)))
    series: dict[str, list[dict[str, Any]]] = {}
    for m in ("t1_us", "t2_us", "readout_error"):
        history = await backends.calibration_history(
            name,
            who,
            gw,
            m,
            since,
            latest + timedelta(seconds=1),
            chosen,
            10_000,
        )
        series[m] = [p.model_dump(mode="json") for p in history.points]
    data = {"series": series, "metric": metric, "qubits": chosen}
    return page(
        request, "analytics.html", who, backend=detail, range_=range_, ranges=list(RANGES),
        chosen=chosen, metric=metric, data_json=json.dumps(data).replace("<", "\\u003c"),
    )  # fmt: skip


def status_class(status: str) -> str:
    return f"badge badge-{status.lower()}"


templates.env.globals["status_class"] = status_class
templates.env.globals["display_status"] = DISPLAY_STATUS


def error_page(request: Request, status: int, message: str) -> Response:
    """A console page's error, as a page (a lost session goes to the login form)."""
    if status == 401:
        return RedirectResponse("/login", 303)
    return page(request, "error.html", None, status_code=status, status=status, message=message)


def install(app: FastAPI) -> None:
    """The console's routes, static files, and the login redirect."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(_request: Request, _exc: NotLoggedIn) -> Response:
        return RedirectResponse("/login", 303)
