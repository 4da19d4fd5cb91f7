"""Where you hear about your jobs and backends: Slack and webhook channels, deliveries."""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Response, status

from qjt.vault import Vault, VaultError
from services.api.deps import GatewayDep, PrincipalDep
from services.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from services.api.schemas import ChannelCreated, ChannelIn, ChannelOut, DeliveryOut
from services.api.store import ChannelStore
from services.api.submission import invalid

router = APIRouter(prefix="/v1/notifications", tags=["notifications"], responses=ERROR_RESPONSES)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Not one of your channels"}
}


def hint(url: str) -> str:
    """What a listing shows of a URL: its scheme and host, never its path (the secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


@router.post(
    "/channels",
    status_code=status.HTTP_201_CREATED,
    summary="Add a Slack or webhook channel for job and backend notifications",
    responses={
        403: {"model": ErrorResponse, "description": "`scope: all` asked by someone not ops"},
        503: {"model": ErrorResponse, "description": "The server has no encryption key set"},
    },
    description="`slack_webhook` takes an incoming-webhook `url`; `slack_bot` a bot `token` "
    "and a `slack_channel`; `webhook` a `url` that receives JSON signed with HMAC-SHA256 "
    "(the secret is in the answer, once). Events: job.completed, job.failed, "
    "job.cancelled, backend.alert, quota.alert. `scope: all` (ops only) hears about "
    "everyone's jobs: a team channel. URLs and tokens are stored encrypted and never shown.",
)
async def add_channel(body: ChannelIn, who: PrincipalDep, gw: GatewayDep) -> ChannelCreated:
    if body.scope == "all" and not who.is_ops:
        raise ApiError(403, "forbidden", "only ops may add a channel that hears about all jobs")
    if body.kind == "slack_bot":
        if not body.token or not body.slack_channel:
            raise invalid("token", "a slack_bot channel needs `token` and `slack_channel`")
        secret_value, shown = body.token.get_secret_value(), f"bot token for {body.slack_channel}"
    else:
        if body.url is None:
            raise invalid("url", f"a {body.kind} channel needs `url`")
        secret_value, shown = str(body.url), hint(str(body.url))
    try:
        vault = Vault.from_settings(gw.settings)
    except VaultError:
        raise ApiError(503, "not_configured", "the server has no encryption key set") from None
    signing = secrets.token_urlsafe(32) if body.kind == "webhook" else None
    row = await ChannelStore(gw.store.pool).create(
        who.user_id,
        {
            "kind": body.kind,
            "name": body.name,
            "scope": body.scope,
            "events": list(dict.fromkeys(body.events)),
            "backends": body.backends,
            "target_ciphertext": vault.encrypt(secret_value),
            "target_hint": shown,
            "slack_channel": body.slack_channel,
            "secret_ciphertext": vault.encrypt(signing) if signing else None,
        },
    )
    return ChannelCreated(**row, signing_secret=signing)


@router.get("/channels", summary="Your channels, with failing ones and why")
async def list_channels(who: PrincipalDep, gw: GatewayDep) -> list[ChannelOut]:
    return [ChannelOut(**row) for row in await ChannelStore(gw.store.pool).of_user(who.user_id)]


@router.delete(
    "/channels/{channel_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a channel",
    responses=NOT_FOUND,
)
async def remove_channel(channel_id: int, who: PrincipalDep, gw: GatewayDep) -> Response:
    if not await ChannelStore(gw.store.pool).delete(who.user_id, channel_id):
        raise ApiError(404, "not_found", f"channel {channel_id} is not one of yours")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/channels/{channel_id}/reactivate",
    summary="Use a channel reported failing again (after fixing it at the other end)",
    responses=NOT_FOUND,
)
async def reactivate_channel(channel_id: int, who: PrincipalDep, gw: GatewayDep) -> ChannelOut:
    row = await ChannelStore(gw.store.pool).reactivate(who.user_id, channel_id)
    if row is None:
        raise ApiError(404, "not_found", f"channel {channel_id} is not one of yours")
    return ChannelOut(**row)


@router.get("/deliveries", summary="Recent deliveries to your channels, newest first")
async def deliveries(
    who: PrincipalDep, gw: GatewayDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[DeliveryOut]:
    rows = await ChannelStore(gw.store.pool).deliveries(who.user_id, limit)
    return [DeliveryOut(**row) for row in rows]
