"""The gateway's FastAPI application: routers, errors, limits, lifecycle."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qjt import __version__
from qjt.config import get_settings
from qjt.db import open_pool
from qjt.service import connect_bus
from qjt.webapp import add_metrics_route
from services.api.console import routes as console
from services.api.deps import Gateway
from services.api.errors import install_error_handlers
from services.api.routes import accounts, backends, jobs, notifications, overview
from services.api.store import Store

DESCRIPTION = """
Submit jobs to IBM Quantum (or local Aer), follow them, and analyse backends.

Authenticate with `Authorization: Bearer <API key>`; get a key by registering your IBM
Quantum token at `POST /v1/accounts`. Every error has the shape
`{"error": {"code", "message", "details"}}`, and the message names the problem.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    if not settings.database_url:
        raise RuntimeError("the API needs QJT_DATABASE_URL")
    bus = await connect_bus(settings, "api")
    pool = open_pool(settings.database_url, settings.db_pool_max, autocommit=True)
    await pool.open(wait=True, timeout=60)
    app.state.gateway = Gateway.build(settings, Store(pool), bus)
    try:
        yield
    finally:
        await bus.close()
        await pool.close()


REQUEST_SECONDS = Histogram(
    "qjt_api_request_seconds",
    "API request latency, by route template and status class",
    ["method", "route", "status"],
    buckets=(0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class Timed:
    """ASGI middleware: each request's latency into `qjt_api_request_seconds`.

    The route label is the matched path template (`/v1/jobs/{job_id}`), never the raw path,
    so job ids do not become label values.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUEST_SECONDS.labels(scope["method"], template, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes gets a 413 before any handler runs.

    A declared Content-Length is checked at once; a chunked body is counted as it arrives.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self.too_large(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self.too_large(send)

    async def too_large(self, send: Send) -> None:
        body = {
            "error": {
                "code": "body_too_large",
                "message": f"request body is larger than {self.limit} bytes",
                "details": [],
            }
        }
        await JSONResponse(body, status_code=413)({"type": "http"}, _nothing, send)


class BodyTooLarge(Exception):
    """A chunked body went over the limit."""


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def create_app() -> FastAPI:
    """The gateway app (the lifespan connects NATS and PostgreSQL)."""
    app = FastAPI(
        title="Quantum Job Tracker API",
        version=__version__,
        summary="Submit, track and analyse IBM Quantum jobs.",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app, console.error_page)
    console.install(app)
    add_metrics_route(app)
    for module in (accounts, backends, jobs, notifications, overview):
        app.include_router(module.router)

    app.add_middleware(BodyLimit, limit=get_settings().api_max_body_bytes)
    app.add_middleware(Timed)

    @app.get("/healthz", tags=["health"], summary="Readiness of the gateway and its connections")
    async def healthz() -> JSONResponse:
        gw: Gateway = app.state.gateway
        checks = {"nats": bool(gw.bus.connected), "database": True}
        try:
            async with gw.store.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except Exception:  # a health probe reports failure instead of raising
            checks["database"] = False
        healthy = all(checks.values())
        return JSONResponse(
            {"service": "api", "status": "ok" if healthy else "unavailable", "checks": checks},
            status_code=200 if healthy else 503,
        )

    return app


app = create_app()
