"""What the HTTP services (API gateway, emulator) share: metrics route and uvicorn runner."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from qjt.config import Settings, get_settings
from qjt.telemetry import configure_logging


def add_metrics_route(app: FastAPI) -> None:
    """Serve Prometheus metrics at /metrics (left out of the OpenAPI document)."""

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def run_http(app_path: str, name: str, default_port: int, workers: int = 1) -> None:
    """Serve an ASGI app with uvicorn (in `workers` processes), which drains on SIGTERM."""
    settings: Settings = get_settings()
    configure_logging(name, settings.log_level)
    uvicorn.run(
        app_path,
        host=settings.http_host,
        port=settings.http_port or default_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        workers=workers,
    )
