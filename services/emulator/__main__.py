"""Wiring for the IBM Quantum emulator: `python -m services.emulator`."""

from qjt.config import get_settings
from qjt.webapp import run_http

if __name__ == "__main__":
    run_http("services.emulator.app:app", "emulator", get_settings().emulator_port)
