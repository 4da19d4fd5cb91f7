"""Accounts: register an IBM token, manage instances and API keys."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request, Response, status

from qjt.accounts import RegistrationError, TokenRejected, register
from qjt.telemetry import register_secret
from qjt.vault import Vault, VaultError
from services.api.deps import GatewayDep, PrincipalDep
from services.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from services.api.schemas import (
    AccountOut,
    AddInstance,
    ApiKeyOut,
    CreatedApiKey,
    InstanceOut,
    NewApiKey,
    RegisterAccount,
    Registered,
)

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], responses=ERROR_RESPONSES)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register an IBM Quantum token and get an API key",
    description="The token is validated with IBM (or the emulator) by the real client, "
    "stored Fernet-encrypted, and never returned. Your user id is its SHA-256. The API key "
    "in the answer is shown once; only its hash is kept. Registering the same token again "
    "updates the stored token and instances and issues another key.",
    responses={
        400: {"model": ErrorResponse, "description": "The token cannot use an instance named"},
        401: {"model": ErrorResponse, "description": "IBM did not accept the token"},
        503: {"model": ErrorResponse, "description": "Encryption keys are not configured"},
    },
)
async def register_account(body: RegisterAccount, request: Request, gw: GatewayDep) -> Registered:
    client = request.client.host if request.client else "unknown"
    await gw.enforce(gw.register_limit, "register", client)
    token = body.token.get_secret_value()
    register_secret(token)
    database_url = gw.settings.database_url
    assert database_url is not None
    try:
        vault = Vault.from_settings(gw.settings)
        registration = await anyio.to_thread.run_sync(
            lambda: register(
                database_url,
                vault,
                token,
                channel=body.channel,
                instances=body.instances,
                settings=gw.settings,
            )
        )
    except TokenRejected as exc:
        raise ApiError(401, "token_rejected", str(exc)) from None
    except RegistrationError as exc:
        raise ApiError(400, "registration_refused", str(exc)) from None
    except VaultError as exc:
        raise ApiError(503, "vault_unavailable", str(exc)) from None
    key, row = await gw.store.create_api_key(registration.user_id, body.key_name)
    register_secret(key)
    return Registered(
        user_id=registration.user_id,
        api_key=key,
        key_id=int(row["id"]),
        instances=[
            InstanceOut(crn=i.crn, name=i.name, plan=i.plan, private=i.private, enabled=True)
            for i in registration.instances
        ],
    )


def _instances(rows: list[dict[str, Any]]) -> list[InstanceOut]:
    return [InstanceOut(**row) for row in rows]


@router.get("/me", summary="Your account: user id, role and instances")
async def me(who: PrincipalDep, gw: GatewayDep) -> AccountOut:
    return AccountOut(
        user_id=who.user_id,
        role="ops" if who.is_ops else "user",
        instances=_instances(await gw.store.instances(who.user_id)),
    )


@router.get("/me/instances", summary="Instances your token can use; `enabled` ones are used")
async def list_instances(who: PrincipalDep, gw: GatewayDep) -> list[InstanceOut]:
    return _instances(await gw.store.instances(who.user_id))


@router.post(
    "/me/instances",
    status_code=status.HTTP_201_CREATED,
    summary="Enable an instance (public or private) your token can use",
    responses={404: {"model": ErrorResponse, "description": "The token cannot use that CRN"}},
)
async def add_instance(body: AddInstance, who: PrincipalDep, gw: GatewayDep) -> list[InstanceOut]:
    if not await gw.store.enable_instance(who.user_id, body.crn):
        usable = [row["crn"] for row in await gw.store.instances(who.user_id)]
        raise ApiError(
            404,
            "unknown_instance",
            f"your token cannot use instance {body.crn!r}; it can use: "
            f"{', '.join(usable) or 'none'} (register the token again if IBM added one)",
        )
    return _instances(await gw.store.instances(who.user_id))


@router.delete(
    "/me/instances/{crn:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop using an instance",
    responses={404: {"model": ErrorResponse, "description": "Not one of your enabled instances"}},
)
async def remove_instance(crn: str, who: PrincipalDep, gw: GatewayDep) -> Response:
    if not await gw.store.disable_instance(who.user_id, crn):
        raise ApiError(404, "unknown_instance", f"{crn!r} is not one of your enabled instances")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/api-keys", summary="Your API keys (never the keys themselves)")
async def list_keys(who: PrincipalDep, gw: GatewayDep) -> list[ApiKeyOut]:
    return [ApiKeyOut(**row) for row in await gw.store.api_keys(who.user_id)]


@router.post(
    "/me/api-keys",
    status_code=status.HTTP_201_CREATED,
    summary="Create another API key (shown once)",
)
async def create_key(body: NewApiKey, who: PrincipalDep, gw: GatewayDep) -> CreatedApiKey:
    key, row = await gw.store.create_api_key(who.user_id, body.name)
    register_secret(key)
    return CreatedApiKey(api_key=key, **row)


@router.delete(
    "/me/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key (it stops working at once)",
    responses={404: {"model": ErrorResponse, "description": "Not one of your keys"}},
)
async def revoke_key(key_id: int, who: PrincipalDep, gw: GatewayDep) -> Response:
    if not await gw.store.revoke_api_key(who.user_id, key_id):
        raise ApiError(404, "not_found", f"API key {key_id} is not one of yours")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
