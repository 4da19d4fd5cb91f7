"""Wiring for the API gateway: `python -m services.api`."""

from qjt.config import get_settings
from qjt.webapp import run_http

if __name__ == "__main__":
    settings = get_settings()
    run_http("services.api.app:app", "api", settings.api_port, workers=settings.api_workers)
