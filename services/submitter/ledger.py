"""The submitter's PostgreSQL adapter: credentials (decrypted here) and a job's state."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from qjt.vault import Vault
from services.submitter.ibm import Credential


@dataclass(frozen=True)
class KnownJob:
    """What the recorder has stored about a job."""

    status: str
    instance: str | None
    ibm_job_id: str | None
    primitive: str | None


class Ledger:
    """Reads credentials and job state."""

    def __init__(self, pool: AsyncConnectionPool, vault: Vault) -> None:
        self.pool = pool
        self.vault = vault

    async def credential(self, user_id: str, instance: str) -> Credential | None:
        """The user's token that may use `instance`, decrypted."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                """SELECT c.id, c.channel, c.token_ciphertext
                   FROM ibm_credentials c JOIN ibm_instances i ON i.credential_id = c.id
                   WHERE c.user_id = %s AND i.crn = %s ORDER BY c.id LIMIT 1""",
                (user_id, instance),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        return Credential(
            credential_id=int(row[0]),
            channel=str(row[1]),
            instance=instance,
            token=self.vault.decrypt(bytes(row[2])),
        )

    async def job(self, job_id: str) -> KnownJob | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT status, instance, ibm_job_id, primitive FROM jobs WHERE id = %s", (job_id,)
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        return KnownJob(status=row[0], instance=row[1], ibm_job_id=row[2], primitive=row[3])
