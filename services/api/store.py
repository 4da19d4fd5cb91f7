"""The gateway's PostgreSQL adapter: every query the API runs, in one place.

Reads the recorder's tables; writes only the gateway's own (API keys, enabled instances,
the submission ledger). Every job query is scoped: `owner` is the caller's user id, or
None for the `ops` role, which sees everyone's jobs.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from qjt.contracts import DISPLAY_STATUS, STATUS_RANK

KEY_PREFIX = "qjt_"
Row = dict[str, Any]
T = TypeVar("T")

# How long a replica reuses what it read: who an API key belongs to, and which backends a
# user's instances offer (the poller refreshes backend state every few seconds anyway).
# A key revoked through another replica stops working there within PRINCIPAL_TTL_S.
PRINCIPAL_TTL_S = 10.0
BACKENDS_TTL_S = 2.0


class TtlCache(Generic[T]):
    """A small per-process cache whose entries expire `ttl_s` after they were read."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, T]] = {}

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, value: T) -> T:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl_s, value)
        return value

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


def hash_key(api_key: str) -> str:
    """How API keys are stored: SHA-256, hex."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    key_id: int
    user_id: str
    role: str

    @property
    def is_ops(self) -> bool:
        return self.role == "ops"

    @property
    def owner(self) -> str | None:
        """The user whose jobs this caller may see; None: everyone's (ops)."""
        return None if self.is_ops else self.user_id


@dataclass
class JobFilter:
    """List and export filters (all optional)."""

    owner: str | None
    user: str | None = None
    backends: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)  # IBM statuses
    tags: list[str] = field(default_factory=list)
    priority: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        for column, value in (("user_id", self.owner), ("user_id", self.user)):
            if value is not None:
                key = f"p{len(params)}"
                clauses.append(f"{column} = %({key})s")
                params[key] = value
        if self.backends:
            clauses.append("backend = ANY(%(backends)s)")
            params["backends"] = self.backends
        if self.statuses:
            clauses.append("status = ANY(%(statuses)s)")
            params["statuses"] = self.statuses
        if self.tags:
            clauses.append("tags @> %(tags)s")
            params["tags"] = self.tags
        if self.priority is not None:
            clauses.append("priority = %(priority)s")
            params["priority"] = self.priority
        if self.created_from is not None:
            clauses.append("created_at >= %(created_from)s")
            params["created_from"] = self.created_from
        if self.created_to is not None:
            clauses.append("created_at < %(created_to)s")
            params["created_to"] = self.created_to
        return " AND ".join(clauses) or "TRUE", params


JOB_COLUMNS = (
    "id, user_id, ibm_job_id, status, backend, instance, primitive, shots, num_circuits, tags, "
    "priority, error, created_at, submitted_at, queued_at, running_at, finished_at, "
    "quantum_seconds, estimated_usage_seconds, updated_at"
)


def encode_cursor(created_at: datetime, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for a cursor this API did not make."""
    raw = base64.urlsafe_b64decode(cursor.encode()).decode()
    moment, _, job_id = raw.partition("|")
    if not job_id:
        raise ValueError("cursor has no job id")
    return datetime.fromisoformat(moment), job_id


class Store:
    """Queries over one connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.principals: TtlCache[Principal] = TtlCache(PRINCIPAL_TTL_S)
        self.backend_lists: TtlCache[list[Row]] = TtlCache(BACKENDS_TTL_S)

    async def _all(self, sql: str, params: Any = None) -> list[Row]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def _one(self, sql: str, params: Any = None) -> Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    # -- API keys -------------------------------------------------------------

    async def principal(self, key_hash: str) -> Principal | None:
        cached = self.principals.get(key_hash)
        if cached is not None:
            return cached
        row = await self._one(
            """SELECT k.id, k.user_id, u.role,
                      (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')
                        AS stale
               FROM api_keys k JOIN users u ON u.id = k.user_id
               WHERE k.key_hash = %s AND k.revoked_at IS NULL""",
            (key_hash,),
        )
        if row is None:
            return None
        if row["stale"]:  # last use is kept to the minute, so most requests only read
            await self._all(
                "UPDATE api_keys SET last_used_at = now() WHERE id = %s RETURNING id", (row["id"],)
            )
        who = Principal(key_id=int(row["id"]), user_id=str(row["user_id"]), role=str(row["role"]))
        return self.principals.put(key_hash, who)

    async def create_api_key(self, user_id: str, name: str) -> tuple[str, Row]:
        key = new_api_key()
        row = await self._one(
            """INSERT INTO api_keys (user_id, key_hash, key_prefix, name) VALUES (%s, %s, %s, %s)
               RETURNING id, name, key_prefix AS prefix, created_at, last_used_at, revoked_at""",
            (user_id, hash_key(key), key[: len(KEY_PREFIX) + 6], name),
        )
        assert row is not None
        return key, row

    async def api_keys(self, user_id: str) -> list[Row]:
        return await self._all(
            """SELECT id, name, key_prefix AS prefix, created_at, last_used_at, revoked_at
               FROM api_keys WHERE user_id = %s ORDER BY id""",
            (user_id,),
        )

    async def revoke_api_key(self, user_id: str, key_id: int) -> bool:
        self.principals.clear()  # this replica forgets every key at once
        row = await self._one(
            """UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
               WHERE id = %s AND user_id = %s RETURNING id""",
            (key_id, user_id),
        )
        return row is not None

    # -- accounts and instances ---------------------------------------------------

    async def role(self, user_id: str) -> str:
        row = await self._one("SELECT role FROM users WHERE id = %s", (user_id,))
        return str(row["role"]) if row else "user"

    async def instances(self, user_id: str) -> list[Row]:
        """Every instance the user's tokens can use, enabled or not."""
        return await self._all(
            """SELECT a.crn, a.name, a.plan, a.is_private AS private,
                      (i.crn IS NOT NULL) AS enabled
               FROM ibm_credentials c
               JOIN ibm_available_instances a ON a.credential_id = c.id
               LEFT JOIN ibm_instances i ON i.credential_id = c.id AND i.crn = a.crn
               WHERE c.user_id = %s
               UNION
               SELECT i.crn, '' AS name, COALESCE(i.plan, '') AS plan, i.is_private AS private,
                      TRUE AS enabled
               FROM ibm_credentials c JOIN ibm_instances i ON i.credential_id = c.id
               WHERE c.user_id = %s AND NOT EXISTS (
                 SELECT 1 FROM ibm_available_instances a
                 WHERE a.credential_id = c.id AND a.crn = i.crn)
               ORDER BY crn""",
            (user_id, user_id),
        )

    async def enable_instance(self, user_id: str, crn: str) -> bool:
        self.backend_lists.drop(user_id)
        """Enable an instance the token can use; False if it cannot."""
        row = await self._one(
            """INSERT INTO ibm_instances (credential_id, crn, is_private, plan)
               SELECT a.credential_id, a.crn, a.is_private, a.plan
               FROM ibm_available_instances a JOIN ibm_credentials c ON c.id = a.credential_id
               WHERE c.user_id = %s AND a.crn = %s
               ON CONFLICT (credential_id, crn) DO UPDATE SET plan = EXCLUDED.plan
               RETURNING crn""",
            (user_id, crn),
        )
        return row is not None

    async def disable_instance(self, user_id: str, crn: str) -> bool:
        self.backend_lists.drop(user_id)
        row = await self._one(
            """DELETE FROM ibm_instances i USING ibm_credentials c
               WHERE c.id = i.credential_id AND c.user_id = %s AND i.crn = %s RETURNING i.crn""",
            (user_id, crn),
        )
        return row is not None

    # -- backends -------------------------------------------------------------------

    async def backends(self, user_id: str) -> list[Row]:
        """Backends of the user's enabled instances, with their latest status and size."""
        cached = self.backend_lists.get(user_id)
        if cached is not None:
            return cached
        rows = await self._all(
            """WITH mine AS (
                 SELECT i.crn, bool_or(i.is_private) AS private
                 FROM ibm_credentials c JOIN ibm_instances i ON i.credential_id = c.id
                 WHERE c.user_id = %s GROUP BY i.crn
               ), listed AS (
                 SELECT b.backend, m.crn, m.private
                 FROM mine m JOIN LATERAL (
                   SELECT max(observed_at) AS at FROM instance_backends WHERE instance = m.crn
                 ) last ON TRUE
                 JOIN instance_backends b ON b.instance = m.crn AND b.observed_at = last.at
               )
               SELECT l.backend AS name, array_agg(l.crn ORDER BY l.crn) AS instances,
                      COALESCE(array_agg(l.crn ORDER BY l.crn) FILTER (WHERE l.private), '{}')
                        AS private_instances,
                      bool_or(l.private) AS private,
                      s.operational, s.status_msg, s.pending_jobs, s.observed_at, c.num_qubits,
                      c.max_shots
               FROM listed l
               LEFT JOIN LATERAL (
                 SELECT operational, status_msg, pending_jobs, observed_at FROM backend_status
                 WHERE backend = l.backend ORDER BY observed_at DESC LIMIT 1
               ) s ON TRUE
               LEFT JOIN LATERAL (
                 SELECT num_qubits, max_shots FROM backend_config
                 WHERE backend = l.backend ORDER BY observed_at DESC LIMIT 1
               ) c ON TRUE
               GROUP BY l.backend, s.operational, s.status_msg, s.pending_jobs, s.observed_at,
                        c.num_qubits, c.max_shots
               ORDER BY l.backend""",
            (user_id,),
        )
        return self.backend_lists.put(user_id, rows)

    async def backend_config(self, name: str) -> Row | None:
        return await self._one(
            """SELECT num_qubits, basis_gates, max_shots, coupling_map, simulator, processor_type
               FROM backend_config WHERE backend = %s ORDER BY observed_at DESC LIMIT 1""",
            (name,),
        )

    async def latest_calibration(self, name: str) -> tuple[list[Row], float | None]:
        """The newest snapshot's qubits, and its median two-qubit gate error."""
        qubits = await self._all(
            """SELECT qubit, calibrated_at, t1_us, t2_us, readout_error FROM qubit_calibration
               WHERE backend = %(b)s AND calibrated_at = (
                 SELECT max(calibrated_at) FROM qubit_calibration WHERE backend = %(b)s)
               ORDER BY qubit""",
            {"b": name},
        )
        if not qubits:
            return [], None
        gate = await self._one(
            """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY error) AS median
               FROM gate_calibration
               WHERE backend = %s AND calibrated_at = %s AND cardinality(qubits) = 2""",
            (name, qubits[0]["calibrated_at"]),
        )
        return qubits, (gate or {}).get("median")

    async def calibration_history(
        self,
        name: str,
        *,
        metric: str,
        since: datetime | None,
        until: datetime | None,
        qubits: Sequence[int],
        limit: int,
    ) -> list[Row]:
        column = {"t1_us": "t1_us", "t2_us": "t2_us", "readout_error": "readout_error"}[metric]
        return await self._all(
            f"""SELECT qubit, calibrated_at, {column} AS value FROM qubit_calibration
               WHERE backend = %(b)s
                 AND (%(since)s::timestamptz IS NULL OR calibrated_at >= %(since)s)
                 AND (%(until)s::timestamptz IS NULL OR calibrated_at < %(until)s)
                 AND (cardinality(%(qubits)s::int[]) = 0 OR qubit = ANY(%(qubits)s))
               ORDER BY calibrated_at DESC, qubit LIMIT %(limit)s""",
            {"b": name, "since": since, "until": until, "qubits": list(qubits), "limit": limit},
        )

    # -- submissions -------------------------------------------------------------------

    async def idempotent_submission(self, user_id: str, key: str) -> Row | None:
        return await self._one(
            "SELECT job_id, request_hash, backend, instance FROM submissions "
            "WHERE user_id = %s AND idempotency_key = %s",
            (user_id, key),
        )

    async def insert_submission(self, conn: AsyncConnection[Any], values: Row) -> bool:
        """Record an accepted request in the caller's transaction; False if the key was used.

        The commit does not wait for the WAL flush: the job itself is already durable in
        JetStream when this commits, and waiting for the disk would double the latency.
        """
        await conn.execute("SET LOCAL synchronous_commit = off")
        cur = await conn.execute(
            """INSERT INTO submissions (job_id, user_id, idempotency_key, request_hash, primitive,
                 backend, instance, shots, num_circuits, tags, priority)
               VALUES (%(job_id)s, %(user_id)s, %(idempotency_key)s, %(request_hash)s,
                 %(primitive)s, %(backend)s, %(instance)s, %(shots)s, %(num_circuits)s,
                 %(tags)s, %(priority)s)
               ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING job_id""",
            values,
        )
        return await cur.fetchone() is not None

    # -- jobs ------------------------------------------------------------------------------

    async def list_jobs(
        self, where: JobFilter, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[Row]:
        clause, params = where.where()
        if after is not None:
            clause += " AND (created_at, id) < (%(after_at)s, %(after_id)s)"
            params.update(after_at=after[0], after_id=after[1])
        params["limit"] = limit
        return await self._all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {clause} "
            "ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
            params,
        )

    async def job(self, job_id: str, owner: str | None) -> Row | None:
        """A job the caller may see, falling back to the submission ledger."""
        row = await self._one(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %(id)s "
            "AND (%(owner)s::text IS NULL OR user_id = %(owner)s)",
            {"id": job_id, "owner": owner},
        )
        if row is not None:
            return row
        return await self._one(
            """SELECT job_id AS id, user_id, NULL AS ibm_job_id, 'ACCEPTED' AS status, backend,
                      instance, primitive, shots, num_circuits, tags, priority, NULL AS error,
                      created_at, NULL::timestamptz AS submitted_at,
                      NULL::timestamptz AS queued_at, NULL::timestamptz AS running_at,
                      NULL::timestamptz AS finished_at, NULL::float8 AS quantum_seconds,
                      NULL::float8 AS estimated_usage_seconds, created_at AS updated_at
               FROM submissions WHERE job_id = %(id)s
                 AND (%(owner)s::text IS NULL OR user_id = %(owner)s)""",
            {"id": job_id, "owner": owner},
        )

    async def timeline(self, job_id: str) -> list[Row]:
        return await self._all(
            """SELECT event_type, status, occurred_at FROM job_events
               WHERE job_id = %s AND status IS NOT NULL ORDER BY occurred_at, event_id""",
            (job_id,),
        )

    async def result(self, job_id: str) -> Row | None:
        return await self._one(
            """SELECT primitive, counts, expectation_values, standard_errors, metrics
               FROM job_results WHERE job_id = %s""",
            (job_id,),
        )

    async def statuses(self, job_ids: list[str], owner: str | None) -> list[Row]:
        return await self._all(
            """SELECT id, status, ibm_job_id, updated_at FROM jobs
               WHERE id = ANY(%(ids)s) AND (%(owner)s::text IS NULL OR user_id = %(owner)s)
               UNION ALL
               SELECT s.job_id, 'ACCEPTED', NULL, s.created_at FROM submissions s
               WHERE s.job_id = ANY(%(ids)s)
                 AND (%(owner)s::text IS NULL OR s.user_id = %(owner)s)
                 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = s.job_id)""",
            {"ids": job_ids, "owner": owner},
        )

    async def counts_by_status(self, owner: str | None) -> dict[str, int]:
        rows = await self._all(
            """SELECT status, count(*) AS n FROM jobs
               WHERE (%(owner)s::text IS NULL OR user_id = %(owner)s) GROUP BY status""",
            {"owner": owner},
        )
        counts: dict[str, int] = {}
        for row in rows:
            name = DISPLAY_STATUS[row["status"]]
            counts[name] = counts.get(name, 0) + int(row["n"])
        return counts

    # -- usage ---------------------------------------------------------------------------

    async def usage(self, user_id: str) -> tuple[list[Row], Row]:
        instances = await self._all(
            """SELECT i.crn, bool_or(i.is_private) AS private, u.usage_consumed_seconds,
                      u.usage_limit_seconds, u.observed_at
               FROM ibm_credentials c JOIN ibm_instances i ON i.credential_id = c.id
               LEFT JOIN LATERAL (
                 SELECT usage_consumed_seconds, usage_limit_seconds, observed_at
                 FROM instance_usage WHERE instance = i.crn ORDER BY observed_at DESC LIMIT 1
               ) u ON TRUE
               WHERE c.user_id = %s
               GROUP BY i.crn, u.usage_consumed_seconds, u.usage_limit_seconds, u.observed_at
               ORDER BY i.crn""",
            (user_id,),
        )
        totals = await self._one(
            """SELECT COALESCE(sum(quantum_seconds), 0) AS billed,
                      COALESCE(sum(estimated_usage_seconds) FILTER (WHERE status_rank < %s), 0)
                        AS estimated
               FROM jobs WHERE user_id = %s""",
            (STATUS_RANK["DONE"], user_id),
        )
        assert totals is not None
        return instances, totals


class ChannelStore:
    """Notification channels and their deliveries (the notifier reads and sends them)."""

    COLUMNS = """id, kind, name, scope, events, backends, target_hint, slack_channel,
                 status, failure, created_at"""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def _all(self, sql: str, params: Any = None) -> list[Row]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def create(self, user_id: str, fields: dict[str, Any]) -> Row:
        rows = await self._all(
            f"""INSERT INTO notification_channels
                  (user_id, kind, name, scope, events, backends, target_ciphertext,
                   target_hint, slack_channel, secret_ciphertext)
                VALUES (%(user_id)s, %(kind)s, %(name)s, %(scope)s, %(events)s, %(backends)s,
                        %(target_ciphertext)s, %(target_hint)s, %(slack_channel)s,
                        %(secret_ciphertext)s)
                RETURNING {self.COLUMNS}""",
            {"user_id": user_id, **fields},
        )
        return rows[0]

    async def of_user(self, user_id: str) -> list[Row]:
        return await self._all(
            f"SELECT {self.COLUMNS} FROM notification_channels WHERE user_id = %s ORDER BY id",
            (user_id,),
        )

    async def delete(self, user_id: str, channel_id: int) -> bool:
        rows = await self._all(
            "DELETE FROM notification_channels WHERE id = %s AND user_id = %s RETURNING id",
            (channel_id, user_id),
        )
        return bool(rows)

    async def reactivate(self, user_id: str, channel_id: int) -> Row | None:
        rows = await self._all(
            f"""UPDATE notification_channels SET status = 'active', failure = NULL
                WHERE id = %s AND user_id = %s RETURNING {self.COLUMNS}""",
            (channel_id, user_id),
        )
        return rows[0] if rows else None

    async def deliveries(self, user_id: str, limit: int) -> list[Row]:
        return await self._all(
            """SELECT n.id, n.channel_id, n.kind AS event, n.status, n.attempts, n.last_error,
                      n.created_at, n.sent_at, n.next_attempt_at
               FROM notifications n JOIN notification_channels c ON c.id = n.channel_id
               WHERE c.user_id = %s ORDER BY n.id DESC LIMIT %s""",
            (user_id, limit),
        )
