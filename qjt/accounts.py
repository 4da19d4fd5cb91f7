"""Registering an IBM account: validate the token with IBM, store it encrypted.

Used by `qjt account add` and by the API's registration, so both behave the same: the
token is checked with the real client (against IBM or the emulator), the user id is its
SHA-256, the token is stored only as Fernet ciphertext, and the instances (CRNs) the
token can use are recorded, public and private.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from qiskit.exceptions import QiskitError
from requests import RequestException

from qjt.config import Settings
from qjt.ibm import runtime_service
from qjt.vault import Vault, user_id_for


class RegistrationError(ValueError):
    """The token or an instance was refused; the message says which and why."""


class TokenRejected(RegistrationError):
    """IBM did not accept the token at all."""


@dataclass(frozen=True)
class InstanceInfo:
    """One instance a token can use."""

    crn: str
    name: str
    plan: str
    private: bool


@dataclass(frozen=True)
class Registration:
    """What was stored (never the token)."""

    user_id: str
    channel: str
    instances: list[InstanceInfo]


def discover_instances(token: str, channel: str, settings: Settings) -> list[InstanceInfo]:
    """The instances IBM says this token can use; raises RegistrationError if IBM refuses it."""
    try:
        service = runtime_service(token, channel=channel, settings=settings)
        found = service.instances()
    except (QiskitError, RequestException, ValueError) as exc:
        reason = str(exc).replace(token, "***")
        raise TokenRejected(f"IBM did not accept the token: {reason}") from None
    return [
        InstanceInfo(
            crn=str(item["crn"]),
            name=str(item.get("name") or ""),
            plan=str(item.get("plan") or ""),
            private=":private:" in str(item["crn"]),
        )
        for item in found
    ]


def register(
    database_url: str,
    vault: Vault,
    token: str,
    *,
    channel: str,
    instances: list[str] | None,
    settings: Settings,
) -> Registration:
    """Validate `token`, then store the user, the encrypted token and its instances."""
    token = token.strip()
    if not token:
        raise RegistrationError("the IBM token is empty")
    available = discover_instances(token, channel, settings)
    by_crn = {i.crn: i for i in available}
    if instances:
        missing = [crn for crn in instances if crn not in by_crn]
        if missing:
            raise RegistrationError(
                f"this token cannot use instance(s) {', '.join(missing)}; it can use: "
                f"{', '.join(by_crn) or 'none'}"
            )
        chosen = [by_crn[crn] for crn in instances]
    else:
        chosen = available
    if not chosen:
        raise RegistrationError("this token has no IBM Quantum instances")
    user_id = user_id_for(token)
    ciphertext = vault.encrypt(token)
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("INSERT INTO users (id) VALUES (%s) ON CONFLICT DO NOTHING", (user_id,))
        row = conn.execute(
            """INSERT INTO ibm_credentials (user_id, channel, token_ciphertext) VALUES (%s, %s, %s)
               ON CONFLICT (user_id, channel) DO UPDATE
                 SET token_ciphertext = EXCLUDED.token_ciphertext, updated_at = now()
               RETURNING id""",
            (user_id, channel, ciphertext),
        ).fetchone()
        assert row is not None
        for instance in available:
            conn.execute(
                """INSERT INTO ibm_available_instances (credential_id, crn, name, plan, is_private)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT (credential_id, crn) DO UPDATE
                   SET name = EXCLUDED.name, plan = EXCLUDED.plan,
                       is_private = EXCLUDED.is_private""",
                (row[0], instance.crn, instance.name, instance.plan, instance.private),
            )
        for instance in chosen:
            conn.execute(
                """INSERT INTO ibm_instances (credential_id, crn, is_private, plan)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (credential_id, crn) DO UPDATE
                   SET is_private = EXCLUDED.is_private, plan = EXCLUDED.plan""",
                (row[0], instance.crn, instance.private, instance.plan),
            )
    return Registration(user_id=user_id, channel=channel, instances=chosen)


def rotate_keys(database_url: str, vault: Vault) -> int:
    """Re-encrypt every stored token and channel secret with the newest key; how many."""
    with psycopg.connect(database_url) as conn, conn.transaction():
        rows = conn.execute(
            "SELECT id, token_ciphertext FROM ibm_credentials FOR UPDATE"
        ).fetchall()
        for credential_id, ciphertext in rows:
            conn.execute(
                "UPDATE ibm_credentials SET token_ciphertext = %s, updated_at = now() "
                "WHERE id = %s",
                (vault.rotate(bytes(ciphertext)), credential_id),
            )
        channels = conn.execute(
            "SELECT id, target_ciphertext, secret_ciphertext FROM notification_channels FOR UPDATE"
        ).fetchall()
        for channel_id, target, secret in channels:
            conn.execute(
                "UPDATE notification_channels SET target_ciphertext = %s, "
                "secret_ciphertext = %s WHERE id = %s",
                (vault.rotate(bytes(target)), vault.rotate(bytes(secret)) if secret else None,
                 channel_id),
            )  # fmt: skip
    return len(rows) + len(channels)


def set_role(database_url: str, user_id: str, role: str) -> None:
    """Make a registered user `ops` (sees every job) or a plain `user` again."""
    if role not in ("user", "ops"):
        raise RegistrationError(f"unknown role {role!r}; use 'user' or 'ops'")
    with psycopg.connect(database_url) as conn:
        updated = conn.execute("UPDATE users SET role = %s WHERE id = %s", (role, user_id))
        if updated.rowcount == 0:
            raise RegistrationError(f"no registered user {user_id!r}")
