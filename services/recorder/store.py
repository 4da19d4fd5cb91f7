"""The recorder's PostgreSQL adapter: one transaction per batch, COPY, idempotent.

Each batch is copied into per-connection temp tables (emptied at commit) and applied
with one statement per table:
- event, result, status, calibration and usage rows: `INSERT … SELECT … ON CONFLICT DO
  NOTHING` on their natural keys, so replays and duplicates add nothing;
- `jobs`: new jobs are inserted, then every touched job is updated by the merge rules
  (status only moves up in rank, so a late RUNNING after DONE is ignored; timestamps keep
  their earliest value; tags are the sorted union). The rules commute, so batches from
  several recorder replicas give the same rows in any order.
A PostgreSQL outage, a deadlock or a serialization failure is a `TransientError`: the
bus keeps the batch unacked and retries it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from qjt.bus import TransientError
from services.recorder.handlers import JobRow, Rows

# How long a batch waits for a connection before the outage path (backoff, retry) takes over.
CONNECT_TIMEOUT_S = 5.0

JOB_COLUMNS = (
    "id", "user_id", "ibm_job_id", "backend", "instance", "primitive", "status", "status_rank",
    "shots", "num_circuits", "tags", "priority", "error", "created_at", "submitted_at",
    "queued_at", "running_at", "finished_at", "quantum_seconds", "estimated_usage_seconds",
    "updated_at",
)  # fmt: skip

JOBS_TEMP_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS tmp_jobs (
  id text, user_id text, ibm_job_id text, backend text, instance text, primitive text,
  status text, status_rank smallint, shots integer, num_circuits integer, tags text[],
  priority smallint, error text, created_at timestamptz, submitted_at timestamptz,
  queued_at timestamptz, running_at timestamptz, finished_at timestamptz,
  quantum_seconds double precision, estimated_usage_seconds double precision,
  updated_at timestamptz) ON COMMIT DELETE ROWS;
"""

# Column lists for COPY into each temp table (and from there into the real table).
APPEND_ONLY = {
    "job_events": ("event_id", "job_id", "event_type", "status", "occurred_at", "payload"),
    "job_results": (
        "job_id", "ibm_job_id", "primitive", "counts", "expectation_values", "standard_errors",
        "metrics",
    ),
    "backend_status": ("backend", "observed_at", "operational", "pending_jobs", "status_msg"),
    "backend_config": (
        "backend", "config_hash", "num_qubits", "basis_gates", "max_shots", "coupling_map",
        "simulator", "processor_type", "observed_at",
    ),
    "qubit_calibration": (
        "backend", "calibrated_at", "qubit", "t1_us", "t2_us", "readout_error", "frequency_ghz",
        "prob_meas0_prep1", "prob_meas1_prep0",
    ),
    "gate_calibration": ("backend", "calibrated_at", "gate", "qubits", "error", "duration_ns"),
    "instance_usage": ("instance", "observed_at", "usage_consumed_seconds", "usage_limit_seconds"),
    "instance_backends": ("instance", "observed_at", "backend"),
    "calibration_snapshots": (
        "backend", "calibrated_at", "qubits", "t1_median_us", "t2_median_us",
        "readout_error_median", "one_qubit_error_median", "two_qubit_error_median",
        "faulty_qubits",
    ),
}  # fmt: skip

# Rollups fed by the rows an insert really added (RETURNING skips duplicates), so a
# redelivered event never counts twice.
ROLLUPS = {
    "backend_status": lambda insert: (
        f"""
WITH added AS ({insert} RETURNING backend, observed_at, pending_jobs)
INSERT INTO backend_status_hourly AS h
  (backend, bucket, max_pending_jobs, sum_pending_jobs, samples)
SELECT backend, time_bucket(INTERVAL '1 hour', observed_at), max(pending_jobs), sum(pending_jobs),
       count(*)
FROM added GROUP BY 1, 2
ON CONFLICT (backend, bucket) DO UPDATE SET
  max_pending_jobs = GREATEST(h.max_pending_jobs, EXCLUDED.max_pending_jobs),
  sum_pending_jobs = h.sum_pending_jobs + EXCLUDED.sum_pending_jobs,
  samples = h.samples + EXCLUDED.samples
"""
    )
}

# One per table, emptied at each commit: `tmp_jobs` has no constraints or defaults (a row
# may lack what the merge fills in), the others are shaped like their tables.
TEMP_TABLES = JOBS_TEMP_TABLE + "".join(
    f"CREATE TEMP TABLE IF NOT EXISTS tmp_{table} (LIKE {table} INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS;\n"
    for table in APPEND_ONLY
)

INSERT_NEW_JOBS = f"""
INSERT INTO jobs ({", ".join(JOB_COLUMNS)})
SELECT {", ".join("COALESCE(priority, 5)" if c == "priority" else c for c in JOB_COLUMNS)}
FROM tmp_jobs ON CONFLICT (id) DO NOTHING
"""

MERGE_JOBS = """
UPDATE jobs AS j SET
  backend = CASE WHEN j.backend = '' THEN t.backend ELSE j.backend END,
  ibm_job_id = COALESCE(j.ibm_job_id, t.ibm_job_id),
  instance = COALESCE(j.instance, t.instance),
  primitive = COALESCE(j.primitive, t.primitive),
  status = CASE WHEN t.status_rank > j.status_rank THEN t.status ELSE j.status END,
  status_rank = GREATEST(j.status_rank, t.status_rank),
  shots = COALESCE(j.shots, t.shots),
  num_circuits = COALESCE(j.num_circuits, t.num_circuits),
  tags = ARRAY(SELECT DISTINCT x FROM unnest(j.tags || t.tags) AS x ORDER BY x),
  priority = COALESCE(t.priority, j.priority),
  error = COALESCE(j.error, t.error),
  created_at = LEAST(j.created_at, t.created_at),
  submitted_at = LEAST(j.submitted_at, t.submitted_at),
  queued_at = LEAST(j.queued_at, t.queued_at),
  running_at = LEAST(j.running_at, t.running_at),
  finished_at = LEAST(j.finished_at, t.finished_at),
  quantum_seconds = COALESCE(j.quantum_seconds, t.quantum_seconds),
  estimated_usage_seconds = COALESCE(j.estimated_usage_seconds, t.estimated_usage_seconds),
  updated_at = GREATEST(j.updated_at, t.updated_at)
FROM tmp_jobs AS t WHERE j.id = t.id
"""

TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    PoolTimeout,
    errors.DeadlockDetected,
    errors.SerializationFailure,
)


def job_values(row: JobRow) -> tuple[Any, ...]:
    values = row.params()
    return tuple(values[c] for c in JOB_COLUMNS)


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
                await cur.execute(TEMP_TABLES)
                if rows.jobs:
                    await _copy(cur, "tmp_jobs", JOB_COLUMNS, [job_values(r) for r in rows.jobs])
                    await cur.execute(INSERT_NEW_JOBS)
                    await cur.execute(MERGE_JOBS)
                for table, columns in APPEND_ONLY.items():
                    values = getattr(rows, table)
                    if values:
                        await _copy(cur, f"tmp_{table}", columns, values)
                        listed = ", ".join(columns)
                        insert = (
                            f"INSERT INTO {table} ({listed}) SELECT {listed} FROM tmp_{table} "
                            "ON CONFLICT DO NOTHING"
                        )
                        await cur.execute(ROLLUPS[table](insert) if table in ROLLUPS else insert)
        except TRANSIENT_DB_ERRORS as exc:
            raise TransientError(f"PostgreSQL unavailable or contended: {exc}") from exc


async def _copy(
    cur: psycopg.AsyncCursor[Any], table: str, columns: tuple[str, ...], values: list[Any]
) -> None:
    async with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in values:
            await copy.write_row(row)
