"""The gateway's FastAPI application (routers arrive with the API issue)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from qjt import __version__
from qjt.config import get_settings
from qjt.db import open_pool
from qjt.service import connect_bus
from qjt.webapp import add_metrics_route


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    app.state.bus = await connect_bus(settings, "api")
    app.state.pool = None
    if settings.database_url:
        app.state.pool = open_pool(settings.database_url, settings.db_pool_max)
        await app.state.pool.open(wait=True, timeout=60)
    try:
        yield
    finally:
        await app.state.bus.close()
        if app.state.pool is not None:
            await app.state.pool.close()


app = FastAPI(
    title="Quantum Job Tracker API",
    version=__version__,
    summary="Submit, track and analyse IBM Quantum jobs.",
    lifespan=lifespan,
)
add_metrics_route(app)


@app.get("/healthz", tags=["health"], summary="Readiness of the gateway and its connections")
async def healthz() -> JSONResponse:
    checks = {"nats": bool(app.state.bus.connected), "database": app.state.pool is not None}
    if app.state.pool is not None:
        try:
            async with app.state.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except Exception:  # a health probe reports failure instead of raising
            checks["database"] = False
    healthy = all(checks.values())
    return JSONResponse(
        {"service": "api", "status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )
