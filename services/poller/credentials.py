"""The poller's PostgreSQL adapter: which accounts and instances to poll (tokens decrypted here)."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from qjt.vault import Vault


@dataclass(frozen=True)
class PollTarget:
    """One credential and one of its instances: the unit the poller works on."""

    credential_id: int
    user_id: str
    channel: str
    instance: str
    token: str

    @property
    def key(self) -> str:
        return f"{self.credential_id}:{self.instance}"

    def __repr__(self) -> str:  # never show the token
        return f"PollTarget({self.key}, user={self.user_id[:12]})"


async def load_targets(pool: AsyncConnectionPool, vault: Vault) -> list[PollTarget]:
    """Every registered credential × instance, with its token decrypted."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            """SELECT c.id, c.user_id, c.channel, c.token_ciphertext, i.crn
               FROM ibm_credentials c JOIN ibm_instances i ON i.credential_id = c.id
               ORDER BY c.id, i.crn"""
        )
        rows = await cursor.fetchall()
    return [
        PollTarget(
            credential_id=int(row[0]),
            user_id=str(row[1]),
            channel=str(row[2]),
            instance=str(row[4]),
            token=vault.decrypt(bytes(row[3])),
        )
        for row in rows
    ]
