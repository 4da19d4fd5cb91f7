"""Logging, health and metrics: the one setup every service calls.

Logs are JSON lines on stderr. Values registered with `register_secret` (IBM tokens,
API keys, Fernet keys) are masked in every record, whatever logger wrote it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# Bearer tokens and apikey fields look like secrets even when nobody registered them.
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-~+/=]{8,}"),
    re.compile(r"(?i)(\"?(?:apikey|api_key|token|x-api-key)\"?\s*[:=]\s*\"?)[^\s\",}]{8,}"),
]
MASK = "***"


def register_secret(value: str | None) -> None:
    """Mask `value` in every log line from now on (ignored if short or empty)."""
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` with registered secrets and token-looking values masked."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, extras."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON logs on stderr for this process; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("nats", "httpx", "urllib3", "qiskit", "stevedore", "ibm_cloud_sdk_core"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


HealthCheck = Callable[[], dict[str, bool]]


class HealthServer:
    """A small HTTP server for `/healthz` (JSON, 200 or 503) and `/metrics` (Prometheus)."""

    def __init__(self, service: str, check: HealthCheck) -> None:
        self.service = service
        self.check = check
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else "/"
            status, content_type, body = self._respond(path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _respond(self, path: str) -> tuple[str, str, bytes]:
        if path == "/healthz":
            checks = self.check()
            healthy = all(checks.values())
            body = json.dumps(
                {
                    "service": self.service,
                    "status": "ok" if healthy else "unavailable",
                    "checks": checks,
                }
            ).encode()
            return ("200 OK" if healthy else "503 Service Unavailable"), "application/json", body
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
        return (
            "404 Not Found",
            "application/json",
            b'{"error": "not found; try /healthz or /metrics"}',
        )
