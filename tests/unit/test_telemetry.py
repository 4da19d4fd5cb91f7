"""Logs are JSON lines and never show a secret."""

from __future__ import annotations

import io
import json
import logging

from qjt.telemetry import JsonFormatter, redact, register_secret


def log_line(message: str, *args: object, **extra: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("poller"))
    logger = logging.getLogger("test.telemetry")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.warning(message, *args, extra=extra)
    return dict(json.loads(stream.getvalue()))


def test_log_lines_are_json_with_service_and_extras() -> None:
    line = log_line("job %s finished", "job-1", job_id="job-1")
    assert line["service"] == "poller" and line["level"] == "warning"
    assert line["msg"] == "job job-1 finished" and line["job_id"] == "job-1"


def test_registered_secrets_are_masked_wherever_they_appear() -> None:
    token = "ibm-token-5f2c9a7e1b3d"
    register_secret(token)
    line = log_line("IBM rejected %s", token, detail={"token": token})
    assert token not in json.dumps(line)
    assert "***" in str(line["msg"])


def test_bearer_tokens_and_api_keys_are_masked_even_unregistered() -> None:
    text = redact(
        'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def and {"apikey": "k_9f8e7d6c5b4a"}'
    )
    assert "eyJhbGciOiJIUzI1NiJ9" not in text and "k_9f8e7d6c5b4a" not in text
    assert text.count("***") == 2
