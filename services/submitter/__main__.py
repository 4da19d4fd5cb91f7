"""Wiring for the submitter service: `python -m services.submitter`."""

from __future__ import annotations

from qjt.service import ServiceContext, run_service


async def start(ctx: ServiceContext) -> None:
    """Connections, /healthz, /metrics and drain-on-SIGTERM come from run_service.

    Message handling arrives with the service's own issue; until then the service
    subscribes to nothing, so no message is consumed and lost.
    """


if __name__ == "__main__":
    run_service("submitter", start, needs_db=True)
