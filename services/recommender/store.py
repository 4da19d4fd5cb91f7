"""The recommender's PostgreSQL adapter: latest backend state, calibration, queue history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from qjt.contracts import (
    DEFAULT_SHOTS,
    BackendCalibration,
    BackendConfiguration,
    GateCalibration,
    QubitCalibration,
)
from services.recommender.esp import DeviceCalibration
from services.recommender.handlers import BackendState
from services.recommender.predictor import HistoryJob

# A pending-job count older than this when a job was queued says little about its wait.
STATUS_FRESH = "15 minutes"


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


async def calibration_versions(
    pool: AsyncConnectionPool, names: list[str]
) -> dict[str, tuple[datetime, str]]:
    """Per backend, its latest calibration time and configuration hash (none: no calibration)."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            """SELECT n.backend, q.calibrated_at, c.config_hash
               FROM unnest(%(names)s::text[]) AS n(backend)
               JOIN LATERAL (SELECT calibrated_at FROM qubit_calibration
                             WHERE backend = n.backend
                             ORDER BY calibrated_at DESC LIMIT 1) q ON TRUE
               JOIN LATERAL (SELECT config_hash FROM backend_config
                             WHERE backend = n.backend
                             ORDER BY observed_at DESC LIMIT 1) c ON TRUE""",
            {"names": names},
        )
        return {str(r[0]): (r[1], str(r[2])) for r in await cursor.fetchall()}


async def device_calibration(
    pool: AsyncConnectionPool, backend: str, calibrated_at: datetime, config_hash: str
) -> DeviceCalibration:
    """One backend's configuration and calibration snapshot, as the recommender uses them."""
    params = {"backend": backend, "at": calibrated_at, "hash": config_hash}
    async with pool.connection() as conn:
        config_row = await (
            await conn.execute(
                """SELECT num_qubits, basis_gates, max_shots, coupling_map, simulator
                   FROM backend_config WHERE backend = %(backend)s AND config_hash = %(hash)s""",
                params,
            )
        ).fetchone()
        qubit_rows = await (
            await conn.execute(
                """SELECT qubit, t1_us, t2_us, readout_error FROM qubit_calibration
                   WHERE backend = %(backend)s AND calibrated_at = %(at)s""",
                params,
            )
        ).fetchall()
        gate_rows = await (
            await conn.execute(
                """SELECT gate, qubits, error, duration_ns FROM gate_calibration
                   WHERE backend = %(backend)s AND calibrated_at = %(at)s""",
                params,
            )
        ).fetchall()
    if config_row is None:
        raise LookupError(f"no configuration {config_hash} recorded for {backend}")
    config = BackendConfiguration(
        backend=backend,
        num_qubits=int(config_row[0]),
        basis_gates=list(config_row[1]),
        max_shots=int(config_row[2]),
        coupling_map=[(int(a), int(b)) for a, b in config_row[3]],
        simulator=bool(config_row[4]),
    )
    calibration = BackendCalibration(
        backend=backend,
        calibrated_at=calibrated_at,
        qubits=[
            QubitCalibration(qubit=r[0], t1_us=r[1], t2_us=r[2], readout_error=r[3])
            for r in qubit_rows
        ],
        gates=[
            GateCalibration(gate=r[0], qubits=list(r[1]), error=r[2], duration_ns=r[3])
            for r in gate_rows
        ],
    )
    return DeviceCalibration.from_events(config, calibration)


async def wait_history(
    pool: AsyncConnectionPool,
    *,
    limit: int,
    backends: list[str] | None = None,
    started_after: datetime | None = None,
) -> list[HistoryJob]:
    """Our finished queue waits, newest `limit`, with the pending jobs seen when each queued."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"""SELECT j.backend, coalesce(j.queued_at, j.submitted_at), j.running_at,
                      j.finished_at, s.pending_jobs, s.operational,
                      coalesce(j.num_circuits, 1) * coalesce(j.shots, {DEFAULT_SHOTS})
               FROM (SELECT * FROM jobs
                     WHERE running_at IS NOT NULL AND primitive <> 'aer'
                       AND coalesce(queued_at, submitted_at) IS NOT NULL
                       AND (%(started_after)s::timestamptz IS NULL
                            OR running_at > %(started_after)s)
                       AND (%(backends)s::text[] IS NULL OR backend = ANY(%(backends)s))
                     ORDER BY running_at DESC LIMIT %(limit)s) j
               LEFT JOIN LATERAL (
                 SELECT pending_jobs, operational FROM backend_status b
                 WHERE b.backend = j.backend
                   AND b.observed_at <= coalesce(j.queued_at, j.submitted_at)
                   AND b.observed_at > coalesce(j.queued_at, j.submitted_at)
                                       - interval '{STATUS_FRESH}'
                 ORDER BY b.observed_at DESC LIMIT 1) s ON TRUE""",
            {"limit": limit, "backends": backends, "started_after": started_after},
        )
        rows: list[Any] = await cursor.fetchall()
    return [
        HistoryJob(
            backend=str(r[0]),
            queued_at=r[1],
            started_at=r[2],
            finished_at=r[3],
            pending_at_queue=None if r[4] is None else int(r[4]),
            operational_at_queue=None if r[5] is None else bool(r[5]),
            size=float(r[6]),
        )
        for r in rows
        if r[2] >= r[1]
    ]
