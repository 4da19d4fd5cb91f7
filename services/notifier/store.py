"""The notifier's PostgreSQL adapter: channels, the delivery ledger, alert state.

The ledger (`notifications`) has one row per (destination, thing to say), keyed by a
deterministic `dedupe_key`, so a redelivered event or a second replica adds nothing. A
replica works on a row only after claiming it (`claimed_until`, a lease), and marks it
sent the moment the destination has accepted it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.notifier.alerts import BackendAlertState
from services.notifier.messages import Alert

Transition = tuple[BackendAlertState, list[Alert]]

CHANNEL_COLUMNS = (
    "c.id, c.user_id, c.kind, c.target_ciphertext, c.slack_channel, c.secret_ciphertext"
)


@dataclass(frozen=True)
class Channel:
    id: int
    user_id: str
    kind: str
    target_ciphertext: bytes
    slack_channel: str | None
    secret_ciphertext: bytes | None


@dataclass(frozen=True)
class Pending:
    """A row to enqueue."""

    dedupe_key: str
    channel_id: int | None  # None: the system's Grafana
    channel_kind: str
    kind: str
    user_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Claimed:
    """A claimed ledger row with what its send needs."""

    id: int
    dedupe_key: str
    kind: str
    attempts: int
    payload: dict[str, Any]
    channel_kind: str
    channel: Channel | None


def _channel(row: dict[str, Any]) -> Channel:
    return Channel(
        id=int(row["id"]),
        user_id=str(row["user_id"]),
        kind=str(row["kind"]),
        target_ciphertext=bytes(row["target_ciphertext"]),
        slack_channel=row["slack_channel"],
        secret_ciphertext=bytes(row["secret_ciphertext"]) if row["secret_ciphertext"] else None,
    )


class NotifierStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def job(self, job_id: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                """SELECT backend, primitive, tags, coalesce(queued_at, submitted_at) AS queued_at,
                          running_at, finished_at
                   FROM jobs WHERE id = %s""",
                (job_id,),
            )
            return await cur.fetchone()

    async def channels_for_job(self, user_id: str, event: str) -> list[Channel]:
        """Active channels of the job's owner for this event, and ops' team channels."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""SELECT {CHANNEL_COLUMNS} FROM notification_channels c
                    WHERE c.status = 'active' AND %(event)s = ANY(c.events)
                      AND (c.user_id = %(user)s OR c.scope = 'all')""",
                {"event": event, "user": user_id},
            )
            return [_channel(r) for r in await cur.fetchall()]

    async def channels_for_backend(self, backend: str) -> list[Channel]:
        """Channels for backend alerts whose owner can use `backend` (or that see all)."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""SELECT {CHANNEL_COLUMNS} FROM notification_channels c
                    WHERE c.status = 'active' AND 'backend.alert' = ANY(c.events)
                      AND (cardinality(c.backends) = 0 OR %(backend)s = ANY(c.backends))
                      AND (c.scope = 'all' OR EXISTS (
                            SELECT 1 FROM ibm_credentials k
                            JOIN ibm_instances i ON i.credential_id = k.id
                            JOIN instance_backends b ON b.instance = i.crn
                            WHERE k.user_id = c.user_id AND b.backend = %(backend)s))""",
                {"backend": backend},
            )
            return [_channel(r) for r in await cur.fetchall()]

    async def channels_for_instance(self, instance: str) -> list[Channel]:
        """Channels for quota alerts of users who have `instance` enabled (or that see all)."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""SELECT {CHANNEL_COLUMNS} FROM notification_channels c
                    WHERE c.status = 'active' AND 'quota.alert' = ANY(c.events)
                      AND (c.scope = 'all' OR EXISTS (
                            SELECT 1 FROM ibm_credentials k
                            JOIN ibm_instances i ON i.credential_id = k.id
                            WHERE k.user_id = c.user_id AND i.crn = %(instance)s))""",
                {"instance": instance},
            )
            return [_channel(r) for r in await cur.fetchall()]

    async def enqueue(self, rows: list[Pending]) -> None:
        """Add ledger rows; a row whose dedupe key exists already is left as it is."""
        if not rows:
            return
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                """INSERT INTO notifications
                     (dedupe_key, channel, channel_id, kind, user_id, payload)
                   VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (dedupe_key) DO NOTHING""",
                [(r.dedupe_key, r.channel_kind, r.channel_id, r.kind, r.user_id,
                  Jsonb(r.payload)) for r in rows],
            )  # fmt: skip

    async def claim(
        self, lease_s: float, limit: int, keys: list[str] | None = None
    ) -> list[Claimed]:
        """Take due, unclaimed pending rows (these keys only, if given) for `lease_s`."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                """WITH due AS (
                     SELECT id FROM notifications
                     WHERE status = 'pending' AND next_attempt_at <= now()
                       AND (claimed_until IS NULL OR claimed_until < now())
                       AND (%(keys)s::text[] IS NULL OR dedupe_key = ANY(%(keys)s))
                     ORDER BY next_attempt_at LIMIT %(limit)s
                     FOR UPDATE SKIP LOCKED)
                   UPDATE notifications n
                   SET claimed_until = now() + make_interval(secs => %(lease)s)
                   FROM due WHERE n.id = due.id
                   RETURNING n.id, n.dedupe_key, n.kind, n.attempts, n.payload, n.channel,
                             n.channel_id""",
                {"keys": keys, "limit": limit, "lease": lease_s},
            )
            rows = await cur.fetchall()
            ids = sorted({int(r["channel_id"]) for r in rows if r["channel_id"] is not None})
            channels: dict[int, Channel] = {}
            if ids:
                await cur.execute(
                    f"""SELECT {CHANNEL_COLUMNS} FROM notification_channels c
                        WHERE c.id = ANY(%s)""",
                    (ids,),
                )
                channels = {c.id: c for c in map(_channel, await cur.fetchall())}
        return [
            Claimed(
                id=int(r["id"]),
                dedupe_key=str(r["dedupe_key"]),
                kind=str(r["kind"]),
                attempts=int(r["attempts"]),
                payload=dict(r["payload"] or {}),
                channel_kind=str(r["channel"]),
                channel=channels.get(int(r["channel_id"])) if r["channel_id"] else None,
            )
            for r in rows
        ]

    async def sent(self, row_id: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """UPDATE notifications SET status = 'sent', sent_at = now(),
                     attempts = attempts + 1, claimed_until = NULL, last_error = NULL
                   WHERE id = %s""",
                (row_id,),
            )

    async def later(self, row_id: int, after_s: float, error: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """UPDATE notifications SET attempts = attempts + 1, last_error = %s,
                     next_attempt_at = now() + make_interval(secs => %s), claimed_until = NULL
                   WHERE id = %s""",
                (error[:500], after_s, row_id),
            )

    async def failed(self, row_id: int, channel_id: int | None, error: str) -> None:
        """Give up on a row, and report its channel as failing (it is not used again)."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                """UPDATE notifications SET status = 'failed', attempts = attempts + 1,
                     last_error = %s, claimed_until = NULL WHERE id = %s""",
                (error[:500], row_id),
            )
            if channel_id is not None:
                await conn.execute(
                    """UPDATE notification_channels SET status = 'failing', failure = %s
                       WHERE id = %s""",
                    (error[:500], channel_id),
                )

    async def failing_channels(self) -> int:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) FROM notification_channels WHERE status = 'failing'"
                )
            ).fetchone()
            return int(row[0]) if row else 0

    # -- alert state --------------------------------------------------------

    async def backend_transition(
        self, backend: str, step: Callable[[BackendAlertState], Transition]
    ) -> list[Alert]:
        """Apply `step` to the backend's alert state under a row lock; its alerts."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO backend_alert_state (backend) VALUES (%s) ON CONFLICT DO NOTHING",
                (backend,),
            )
            row = await (
                await conn.execute(
                    """SELECT operational, queue_high, t1_degraded, readout_degraded
                       FROM backend_alert_state WHERE backend = %s FOR UPDATE""",
                    (backend,),
                )
            ).fetchone()
            state, alerts = step(BackendAlertState(*row) if row else BackendAlertState())
            await conn.execute(
                """UPDATE backend_alert_state SET operational = %s, queue_high = %s,
                     t1_degraded = %s, readout_degraded = %s, updated_at = now()
                   WHERE backend = %s""",
                (state.operational, state.queue_high, state.t1_degraded,
                 state.readout_degraded, backend),
            )  # fmt: skip
        return alerts

    async def quota_transition(
        self, instance: str, step: Callable[[bool], tuple[bool, Alert | None]]
    ) -> Alert | None:
        """Apply `step` to the instance's above-the-share flag under a row lock."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO quota_alert_state (instance) VALUES (%s) ON CONFLICT DO NOTHING",
                (instance,),
            )
            row = await (
                await conn.execute(
                    "SELECT above FROM quota_alert_state WHERE instance = %s FOR UPDATE",
                    (instance,),
                )
            ).fetchone()
            above, alert = step(bool(row[0]) if row else False)
            await conn.execute(
                "UPDATE quota_alert_state SET above = %s, updated_at = now() WHERE instance = %s",
                (above, instance),
            )
        return alert

    async def calibration_baseline(
        self, backend: str, before: datetime
    ) -> tuple[float | None, float | None]:
        """Median over the 7 days before `before` of each snapshot's median T1 and readout."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t1_median_us),
                              percentile_cont(0.5) WITHIN GROUP (ORDER BY readout_error_median),
                              count(*)
                       FROM calibration_snapshots
                       WHERE backend = %s AND calibrated_at < %s
                         AND calibrated_at >= %s - interval '7 days'""",
                    (backend, before, before),
                )
            ).fetchone()
        if row is None or int(row[2]) < MIN_BASELINE_SNAPSHOTS:
            return None, None
        return row[0], row[1]


MIN_BASELINE_SNAPSHOTS = 3
