"""The recommender's PostgreSQL adapter: the latest state of every backend."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from services.recommender.handlers import BackendState


async def backend_states(pool: AsyncConnectionPool, names: list[str]) -> list[BackendState]:
    """Latest status and configuration of the named backends (all if none named)."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            """SELECT s.backend, s.operational, s.pending_jobs, c.num_qubits, c.simulator
               FROM (SELECT DISTINCT ON (backend) backend, operational, pending_jobs
                     FROM backend_status
                     WHERE cardinality(%(names)s::text[]) = 0 OR backend = ANY(%(names)s)
                     ORDER BY backend, observed_at DESC) s
               JOIN LATERAL (SELECT num_qubits, simulator FROM backend_config
                             WHERE backend = s.backend ORDER BY observed_at DESC LIMIT 1) c
                 ON TRUE""",
            {"names": names},
        )
        rows = await cursor.fetchall()
    return [
        BackendState(
            name=str(r[0]),
            operational=bool(r[1]),
            pending_jobs=int(r[2]),
            num_qubits=int(r[3]),
            simulator=bool(r[4]),
        )
        for r in rows
    ]
