"""Dependencies shared by the routers: the store, the bus, the caller, rate limits."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from qjt.bus import Bus
from qjt.config import Settings
from services.api.errors import ApiError
from services.api.store import Principal, Store, hash_key

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or `X-API-Key`")


@dataclass
class Gateway:
    """What request handlers share, built once at start-up."""

    settings: Settings
    store: Store
    bus: Bus
    limiter: MovingWindowRateLimiter
    key_limit: RateLimitItem
    register_limit: RateLimitItem

    @classmethod
    def build(cls, settings: Settings, store: Store, bus: Bus) -> Gateway:
        storage = storage_from_string(settings.rate_limit_storage)
        if not isinstance(storage, Storage):
            raise ValueError(
                f"QJT_RATE_LIMIT_STORAGE must be an async storage (async+memory://, "
                f"async+redis://…), got {settings.rate_limit_storage!r}"
            )
        return cls(
            settings=settings,
            store=store,
            bus=bus,
            limiter=MovingWindowRateLimiter(storage),
            key_limit=_limit(settings.api_rate_limit, "QJT_API_RATE_LIMIT"),
            register_limit=_limit(settings.api_register_rate_limit, "QJT_API_REGISTER_RATE_LIMIT"),
        )

    async def enforce(self, item: RateLimitItem, *identity: str) -> None:
        """Count one request; a 429 with Retry-After when over the limit."""
        if await self.limiter.hit(item, *identity):
            return
        stats = await self.limiter.get_window_stats(item, *identity)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {item} exceeded; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def _limit(text: str, name: str) -> RateLimitItem:
    try:
        return parse(text)
    except ValueError:
        raise ValueError(f"{name} is not a rate limit like '100/minute': {text!r}") from None


def as_utc(moment: datetime | None) -> datetime | None:
    """Times sent without an offset are read as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(gateway)]


SESSION_COOKIE = "qjt_session"
SAFE_METHODS = frozenset({"GET", "HEAD"})


async def principal(
    request: Request,
    gw: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: Annotated[str | None, Depends(key_header)],
) -> Principal:
    """The caller, from their API key; 401 if missing or unknown, 429 over the rate limit.

    The web console's session cookie also counts, for reads only (GET), so its pages can
    follow the event stream and download exports; a change always needs the key itself.
    """
    key = credentials.credentials if credentials is not None else api_key
    if not key and request.method in SAFE_METHODS:
        key = request.cookies.get(SESSION_COOKIE)
    if not key:
        raise ApiError(
            401,
            "unauthenticated",
            "missing API key: send `Authorization: Bearer <key>` (register at POST /v1/accounts)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    who = await gw.store.principal(hash_key(key))
    if who is None:
        raise ApiError(
            401,
            "unauthenticated",
            "unknown or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    await gw.enforce(gw.key_limit, "key", str(who.key_id))
    return who


PrincipalDep = Annotated[Principal, Depends(principal)]
