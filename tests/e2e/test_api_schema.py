"""Schemathesis against the live gateway: generated requests never get a 5xx, and every
response (status, content type, body) matches the OpenAPI document.

Left out: the event stream (it never ends) and revoking API keys (a generated id could
revoke the key the run itself uses; revocation has its own test).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import TOKEN_A, Gateway

pytestmark = pytest.mark.e2e

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SKIPPED = {
    ("GET", "/v1/jobs/events"),  # never ends
    ("DELETE", "/v1/accounts/me/api-keys/{key_id}"),  # could revoke the run's own key
}


@pytest.fixture(scope="module")
def api_key(gateway: Gateway) -> str:
    """A key of its own (the same user as `gateway.a`), so nothing else shares its limit."""
    answer = httpx.post(f"{gateway.stack.api_url}/v1/accounts", json={"token": TOKEN_A}, timeout=60)
    answer.raise_for_status()
    return str(answer.json()["api_key"])


def test_generated_requests_get_documented_answers_and_no_5xx(
    gateway: Gateway, api_key: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{gateway.stack.api_url}/openapi.json")
    headers = {"Authorization": f"Bearer {api_key}"}
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        tested += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def exercise(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            exercise()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert tested >= 18, f"only {tested} operations in the OpenAPI document"
    assert not failures, "\n\n".join(failures)
