"""Sending one notification: Slack (incoming webhook or bot token), webhooks, Grafana.

Each send answers with an `Outcome`: delivered, try again (after Slack's or the
server's Retry-After, else backoff), or permanent failure (a revoked webhook, an unknown
channel, a 4xx that will not change). The clients are blocking (`slack-sdk` without
aiohttp; grafana-client), so those calls run in a thread; webhooks use httpx's async client.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import requests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaException
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

TIMEOUT_S = 10.0
PERMANENT_SLACK_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "channel_not_found",
    "is_archived", "not_in_channel", "no_service", "no_service_id", "no_team",
    "team_disabled", "invalid_token", "action_prohibited", "posting_to_general_channel_denied",
    "invalid_payload", "invalid_blocks", "msg_too_long",
})  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """What a send attempt came to."""

    delivered: bool
    permanent: bool = False
    retry_after_s: float | None = None
    error: str | None = None

    @classmethod
    def ok(cls) -> Outcome:
        return cls(True)

    @classmethod
    def retry(cls, error: str, after_s: float | None = None) -> Outcome:
        return cls(False, retry_after_s=after_s, error=error)

    @classmethod
    def give_up(cls, error: str) -> Outcome:
        return cls(False, permanent=True, error=error)


@dataclass(frozen=True)
class Target:
    """Where a delivery goes, decrypted only for the send."""

    kind: str  # slack_webhook, slack_bot, webhook, grafana
    url: str | None = None  # webhook URL, Grafana base URL, or Slack API base for bots
    token: str | None = None  # Slack bot token or Grafana token
    slack_channel: str | None = None
    secret: str | None = None  # webhook signing secret


def retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (case-insensitive, any mapping), if present."""
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == "retry-after":
            text = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(float(text), 0.0)
            except (TypeError, ValueError):
                return None
    return None


def by_status(status: int, headers: Any, error: str) -> Outcome:
    """The usual HTTP reading: 2xx done, 429/5xx/408 later, other 4xx never."""
    if 200 <= status < 300:
        return Outcome.ok()
    if status == 429:
        return Outcome.retry(f"rate limited (429): {error}", retry_after(headers))
    if status >= 500 or status == 408:
        return Outcome.retry(f"server error {status}: {error}", retry_after(headers))
    return Outcome.give_up(f"refused with {status}: {error}")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature: HMAC-SHA256 over `<timestamp>.<body>`, hex, `sha256=` prefix."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


async def send(target: Target, payload: dict[str, Any], delivery_id: str, event: str) -> Outcome:
    """One attempt; never raises for a network or HTTP failure."""
    try:
        if target.kind == "slack_webhook":
            return await asyncio.to_thread(_slack_webhook, target, payload)
        if target.kind == "slack_bot":
            return await asyncio.to_thread(_slack_bot, target, payload)
        if target.kind == "webhook":
            return await _webhook(target, payload, delivery_id, event)
        if target.kind == "grafana":
            return await _grafana(target, payload)
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        return Outcome.retry(f"{type(exc).__name__}: {exc}")
    return Outcome.give_up(f"unknown channel kind {target.kind!r}")


def _slack_webhook(target: Target, payload: dict[str, Any]) -> Outcome:
    client = WebhookClient(str(target.url), timeout=int(TIMEOUT_S), retry_handlers=[])
    response = client.send_dict(payload)
    body = (response.body or "").strip()
    if response.status_code == 200:
        return Outcome.ok()
    if response.status_code in (400, 403, 404, 410) and body in PERMANENT_SLACK_ERRORS:
        return Outcome.give_up(f"Slack refused the webhook: {body}")
    return by_status(response.status_code, response.headers, body[:200])


def _slack_bot(target: Target, payload: dict[str, Any]) -> Outcome:
    options: dict[str, Any] = {
        "token": target.token,
        "timeout": int(TIMEOUT_S),
        "retry_handlers": [],
    }
    if target.url:
        options["base_url"] = target.url
    client = WebClient(**options)
    try:
        client.chat_postMessage(
            channel=str(target.slack_channel), text=payload.get("text", ""),
            blocks=payload.get("blocks"),
        )  # fmt: skip
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else str(exc)
        status = exc.response.status_code if exc.response is not None else 0
        if error in PERMANENT_SLACK_ERRORS:
            return Outcome.give_up(f"Slack refused the message: {error}")
        headers = exc.response.headers if exc.response is not None else None
        return by_status(status or 500, headers, error)
    return Outcome.ok()


async def _webhook(
    target: Target, payload: dict[str, Any], delivery_id: str, event: str
) -> Outcome:
    body = json.dumps({"id": delivery_id, **payload}, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-QJT-Event": event,
        "X-QJT-Delivery": delivery_id,
        "X-QJT-Timestamp": timestamp,
    }
    if target.secret:
        headers["X-QJT-Signature"] = sign(target.secret, timestamp, body)
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        response = await client.post(str(target.url), content=body, headers=headers)
    return by_status(response.status_code, response.headers, response.text[:200])


async def _grafana(target: Target, payload: dict[str, Any]) -> Outcome:
    return await asyncio.to_thread(_grafana_annotation, target, payload)


def _grafana_annotation(target: Target, payload: dict[str, Any]) -> Outcome:
    """An annotation through grafana-client."""
    api = GrafanaApi.from_url(str(target.url), credential=target.token, timeout=TIMEOUT_S)
    try:
        api.annotations.add_annotation(
            time_from=payload.get("time"), tags=payload.get("tags", []), text=payload.get("text")
        )
    except GrafanaException as exc:
        status = int(exc.status_code or 0)
        headers = exc.response.headers if exc.response is not None else None
        return by_status(status or 500, headers, str(exc.message)[:200])
    except requests.RequestException as exc:
        return Outcome.retry(f"{type(exc).__name__}: {exc}")
    return Outcome.ok()
