"""Wiring for the API gateway: `python -m services.api`."""

from qjt.config import get_settings
from qjt.webapp import run_http

if __name__ == "__main__":
    run_http("services.api.app:app", "api", get_settings().api_port)
