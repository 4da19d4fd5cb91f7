"""The emulator's FastAPI application (IBM endpoints arrive with the emulator issue)."""

from __future__ import annotations

from fastapi import FastAPI

from qjt import __version__
from qjt.webapp import add_metrics_route

app = FastAPI(title="IBM Quantum emulator", version=__version__)
add_metrics_route(app)


@app.get("/healthz", tags=["health"], summary="Readiness of the emulator")
async def healthz() -> dict[str, object]:
    return {"service": "emulator", "status": "ok", "checks": {"http": True}}
