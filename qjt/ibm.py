"""The one way services build a `QiskitRuntimeService`: real IBM, or the emulator.

Against real IBM nothing is overridden. With `QJT_IBM_URL` (the emulator), the client is
pointed at it through the hooks it offers: `IAM_URL` for token exchange,
ibm-cloud-sdk-core's `GLOBAL_SEARCH_URL` / `GLOBAL_CATALOG_URL` for instance discovery,
and a `url_resolver` for the Runtime API. The environment variables are process-wide,
which is fine: a process talks to one IBM endpoint.
"""

from __future__ import annotations

import os
from typing import Any

from qiskit_ibm_runtime import QiskitRuntimeService

from qjt.config import Settings


def point_client_at(ibm_url: str) -> None:
    """Route the client's IAM, Global Search and Global Catalog calls to `ibm_url`."""
    base = ibm_url.rstrip("/")
    os.environ["IAM_URL"] = f"{base}/iam"
    os.environ["GLOBAL_SEARCH_URL"] = f"{base}/search"
    os.environ["GLOBAL_CATALOG_URL"] = f"{base}/catalog/api/v1"


def runtime_service(
    token: str,
    *,
    instance: str | None = None,
    channel: str | None = None,
    ibm_url: str | None = None,
    settings: Settings | None = None,
) -> QiskitRuntimeService:
    """A client for one account (and instance, if given), validated by IBM on creation."""
    channel = channel or (settings.ibm_channel if settings else "ibm_quantum_platform")
    ibm_url = ibm_url if ibm_url is not None else (settings.ibm_url if settings else None)
    kwargs: dict[str, Any] = {"channel": channel, "token": token}
    if instance:
        kwargs["instance"] = instance
    if ibm_url:
        point_client_at(ibm_url)
        base = ibm_url.rstrip("/")
        kwargs["url"] = base

        def resolve(
            url: str, instance: str, private_endpoint: bool | None = False, channel: str = ""
        ) -> str:
            return f"{base}/api/v1"

        kwargs["url_resolver"] = resolve
    return QiskitRuntimeService(**kwargs)
