"""The recorder's PostgreSQL adapter: one transaction per batch, idempotent upserts.

`jobs` never moves backwards: a status replaces the stored one only with a higher rank
(a late RUNNING after DONE is ignored), timestamps keep their earliest value, tags are
the sorted union of what events said. Event, result, status and calibration rows are
inserted with ON CONFLICT DO NOTHING on their natural keys. A PostgreSQL outage is a
`TransientError`: the bus keeps the batch unacked and retries it.
"""

from __future__ import annotations

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from qjt.bus import TransientError
from services.recorder.handlers import Rows

UPSERT_JOB = """
INSERT INTO jobs AS j (id, user_id, ibm_job_id, backend, instance, primitive, status, status_rank,
                       shots, num_circuits, tags, priority, error, created_at, submitted_at,
                       queued_at, running_at, finished_at, quantum_seconds, updated_at)
VALUES (%(id)s, %(user_id)s, %(ibm_job_id)s, %(backend)s, %(instance)s, %(primitive)s, %(status)s,
        %(status_rank)s, %(shots)s, %(num_circuits)s, %(tags)s, %(priority)s, %(error)s,
        %(created_at)s, %(submitted_at)s, %(queued_at)s, %(running_at)s, %(finished_at)s,
        %(quantum_seconds)s, %(updated_at)s)
ON CONFLICT (id) DO UPDATE SET
  backend = CASE WHEN j.backend = '' THEN EXCLUDED.backend ELSE j.backend END,
  ibm_job_id = COALESCE(j.ibm_job_id, EXCLUDED.ibm_job_id),
  instance = COALESCE(j.instance, EXCLUDED.instance),
  primitive = COALESCE(j.primitive, EXCLUDED.primitive),
  status = CASE WHEN EXCLUDED.status_rank > j.status_rank THEN EXCLUDED.status ELSE j.status END,
  status_rank = GREATEST(j.status_rank, EXCLUDED.status_rank),
  shots = COALESCE(j.shots, EXCLUDED.shots),
  num_circuits = COALESCE(j.num_circuits, EXCLUDED.num_circuits),
  tags = ARRAY(SELECT DISTINCT t FROM unnest(j.tags || EXCLUDED.tags) AS t ORDER BY t),
  priority = CASE WHEN %(priority_known)s THEN EXCLUDED.priority ELSE j.priority END,
  error = COALESCE(j.error, EXCLUDED.error),
  created_at = LEAST(j.created_at, EXCLUDED.created_at),
  submitted_at = LEAST(j.submitted_at, EXCLUDED.submitted_at),
  queued_at = LEAST(j.queued_at, EXCLUDED.queued_at),
  running_at = LEAST(j.running_at, EXCLUDED.running_at),
  finished_at = LEAST(j.finished_at, EXCLUDED.finished_at),
  quantum_seconds = COALESCE(j.quantum_seconds, EXCLUDED.quantum_seconds),
  updated_at = GREATEST(j.updated_at, EXCLUDED.updated_at)
"""

# How long a batch waits for a connection before the outage path (backoff, retry) takes over.
CONNECT_TIMEOUT_S = 5.0

INSERTS = {
    "job_events": """INSERT INTO job_events (event_id, job_id, event_type, status, occurred_at,
                     payload) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
    "job_results": """INSERT INTO job_results (job_id, ibm_job_id, primitive, counts,
                      expectation_values, standard_errors, metrics)
                      VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
    "backend_status": """INSERT INTO backend_status (backend, observed_at, operational,
                         pending_jobs, status_msg) VALUES (%s, %s, %s, %s, %s)
                         ON CONFLICT DO NOTHING""",
    "backend_config": """INSERT INTO backend_config (backend, config_hash, num_qubits, basis_gates,
                         max_shots, coupling_map, simulator, processor_type, observed_at)
                         VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
    "qubit_calibration": """INSERT INTO qubit_calibration (backend, calibrated_at, qubit, t1_us,
                            t2_us, readout_error, frequency_ghz, prob_meas0_prep1, prob_meas1_prep0)
                            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
    "gate_calibration": """INSERT INTO gate_calibration (backend, calibrated_at, gate, qubits,
                           error, duration_ns) VALUES (%s, %s, %s, %s, %s, %s)
                           ON CONFLICT DO NOTHING""",
    "instance_usage": """INSERT INTO instance_usage (instance, observed_at, usage_consumed_seconds,
                         usage_limit_seconds) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING""",
}


class PostgresStore:
    """Writes a batch's rows in one transaction."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def write(self, rows: Rows) -> None:
        if not len(rows):
            return
        try:
            async with (
                self.pool.connection(timeout=CONNECT_TIMEOUT_S) as conn,
                conn.transaction(),
                conn.cursor() as cur,
            ):
                if rows.jobs:
                    await cur.executemany(UPSERT_JOB, [row.params() for row in rows.jobs])
                for table, sql in INSERTS.items():
                    values = getattr(rows, table)
                    if values:
                        await cur.executemany(sql, values)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise TransientError(f"PostgreSQL unavailable: {exc}") from exc
