"""The recorder's writes on real PostgreSQL: timelines, no regressions, idempotency."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from qjt.contracts import (
    BackendCalibration,
    BackendStatus,
    GateCalibration,
    InstanceUsage,
    JobAccepted,
    JobFailed,
    JobMetrics,
    JobResult,
    JobStatusChanged,
    JobSubmitted,
    Message,
    QubitCalibration,
)
from qjt.db import migrate
from services.recorder.handlers import rows_for
from services.recorder.store import PostgresStore

T0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
JOB_COLUMNS = (
    "user_id, ibm_job_id, backend, instance, primitive, status, shots, num_circuits, tags, "
    "priority, error, created_at, submitted_at, queued_at, running_at, finished_at, "
    "quantum_seconds, updated_at"
)
_ids = itertools.count()


def lifecycle(job_id: str) -> list[Message]:
    """A Sampler job's events in the order they happen."""
    ibm = f"ibm-{job_id}"
    common = {"job_id": job_id, "user_id": "user-a"}
    status = {**common, "ibm_job_id": ibm, "backend": "ibm_kyiv"}
    return [
        JobAccepted(
            **common,
            primitive="sampler",
            backend="ibm_kyiv",
            shots=1000,
            num_circuits=1,
            tags=["demo"],
            priority=7,
            occurred_at=T0,
        ),
        JobSubmitted(
            **common, ibm_job_id=ibm, backend="ibm_kyiv", occurred_at=T0 + timedelta(seconds=2)
        ),
        JobStatusChanged(
            **status,
            status="QUEUED",
            status_at=T0 + timedelta(seconds=3),
            occurred_at=T0 + timedelta(seconds=5),
            tags=["user:user-a"],
        ),
        JobStatusChanged(
            **status,
            status="RUNNING",
            status_at=T0 + timedelta(seconds=40),
            occurred_at=T0 + timedelta(seconds=41),
        ),
        JobStatusChanged(
            **status,
            status="DONE",
            status_at=T0 + timedelta(seconds=50),
            occurred_at=T0 + timedelta(seconds=52),
        ),
        JobResult(
            **common,
            ibm_job_id=ibm,
            backend="ibm_kyiv",
            primitive="sampler",
            counts=[{"00": 500, "11": 500}],
            occurred_at=T0 + timedelta(seconds=53),
            metrics=JobMetrics(
                created_at=T0 + timedelta(seconds=2),
                running_at=T0 + timedelta(seconds=40),
                finished_at=T0 + timedelta(seconds=50),
                quantum_seconds=8.5,
            ),
        ),
    ]


class Recorder:
    """A PostgresStore on its own event loop, usable from sync tests (hypothesis)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.pool = AsyncConnectionPool(url, min_size=1, max_size=2, open=False)
        self.loop.run_until_complete(self.pool.open())
        self.store = PostgresStore(self.pool)

    def write(self, events: list[Message]) -> None:
        self.loop.run_until_complete(self.store.write(rows_for(events)))

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()

    def job(self, job_id: str) -> tuple[Any, ...]:
        return self.query(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", job_id)[0]

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.close())
        self.loop.close()


@pytest.fixture(scope="module")
def recorder(postgres_server: str) -> Iterator[Recorder]:
    from qjt.db import create_database, drop_database, with_database

    url = with_database(postgres_server, f"qjt_test_recorder_{next(_ids)}_{id(object())}")
    create_database(url)
    migrate(url)
    rec = Recorder(url)
    yield rec
    rec.close()
    drop_database(url)


def test_lifecycle_lands_in_order_with_ibms_timestamps(recorder: Recorder) -> None:
    recorder.write(lifecycle("life-1"))
    row = dict(zip(JOB_COLUMNS.split(", "), recorder.job("life-1"), strict=True))
    assert row["status"] == "DONE" and row["ibm_job_id"] == "ibm-life-1"
    assert row["created_at"] == T0 and row["submitted_at"] == T0 + timedelta(seconds=2)
    assert row["queued_at"] == T0 + timedelta(seconds=3)
    assert row["running_at"] == T0 + timedelta(seconds=40)
    assert row["finished_at"] == T0 + timedelta(seconds=50)
    assert row["tags"] == ["demo", "user:user-a"] and row["priority"] == 7
    assert row["quantum_seconds"] == 8.5

    timeline = recorder.query(
        "SELECT status, occurred_at FROM job_events WHERE job_id = %s "
        "ORDER BY occurred_at, event_type",
        "life-1",
    )
    assert [s for s, _ in timeline] == [
        "ACCEPTED",
        "INITIALIZING",
        "QUEUED",
        "RUNNING",
        "DONE",
        "DONE",
    ]
    assert timeline[2][1] == T0 + timedelta(seconds=3)  # IBM's time, not when we saw it
    counts = recorder.query("SELECT counts FROM job_results WHERE job_id = %s", "life-1")
    assert counts == [([{"00": 500, "11": 500}],)]


def test_a_late_running_after_done_does_not_reopen_the_job(recorder: Recorder) -> None:
    events = lifecycle("late-1")
    recorder.write(events)
    recorder.write([events[3]])  # RUNNING again, e.g. a redelivery
    assert recorder.job("late-1")[5] == "DONE"


def test_replaying_a_batch_adds_nothing(recorder: Recorder) -> None:
    events = lifecycle("replay-1")
    recorder.write(events)
    before = recorder.query("SELECT count(*) FROM job_events WHERE job_id = 'replay-1'")
    recorder.write(events + events)
    assert recorder.query("SELECT count(*) FROM job_events WHERE job_id = 'replay-1'") == before
    assert recorder.query("SELECT count(*) FROM job_results WHERE job_id = 'replay-1'") == [(1,)]


def test_a_failed_submission_keeps_the_reason(recorder: Recorder) -> None:
    accepted = lifecycle("fail-1")[0]
    failed = JobFailed(
        job_id="fail-1",
        user_id="user-a",
        reason="IBM: backend ibm_kyiv is offline",
        occurred_at=T0 + timedelta(seconds=1),
    )
    recorder.write([failed, accepted])  # out of order
    row = dict(zip(JOB_COLUMNS.split(", "), recorder.job("fail-1"), strict=True))
    assert row["status"] == "ERROR" and row["error"] == "IBM: backend ibm_kyiv is offline"
    assert row["backend"] == "ibm_kyiv" and row["created_at"] == T0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(6)),
    repeats=st.lists(st.integers(0, 5), max_size=6),
    split=st.integers(1, 6),
)
def test_any_order_duplication_or_replay_gives_the_same_job_row(
    recorder: Recorder, order: list[int], repeats: list[int], split: int
) -> None:
    n = next(_ids)
    reference_id, shuffled_id = f"ref-{n}", f"shuf-{n}"
    recorder.write(lifecycle(reference_id))

    events = lifecycle(shuffled_id)
    sequence = [events[i] for i in order] + [events[i] for i in repeats]
    for chunk in (sequence[:split], sequence[split:]):  # two batches, like two fetches
        recorder.write(chunk)

    def normalised(job_id: str) -> tuple[Any, ...]:
        row = list(recorder.job(job_id))
        row[1] = str(row[1]).replace(job_id, "")  # ibm_job_id embeds the job id
        return tuple(row)

    assert normalised(shuffled_id) == normalised(reference_id)
    events_stored = recorder.query("SELECT count(*) FROM job_events WHERE job_id = %s", shuffled_id)
    assert events_stored == [(6,)]


def test_backend_and_usage_rows_are_stored_once(recorder: Recorder) -> None:
    calibration = BackendCalibration(
        backend="ibm_kyiv",
        calibrated_at=T0,
        qubits=[
            QubitCalibration(qubit=q, t1_us=200 + q, t2_us=100, readout_error=0.01)
            for q in range(3)
        ],
        gates=[GateCalibration(gate="ecr", qubits=[0, 1], error=0.008, duration_ns=660)],
    )
    status = BackendStatus(backend="ibm_kyiv", operational=True, pending_jobs=12, observed_at=T0)
    usage = InstanceUsage(
        instance="crn:x", usage_consumed_seconds=10, usage_limit_seconds=600, observed_at=T0
    )
    recorder.write([calibration, status, usage])
    recorder.write([calibration, status, usage])
    assert recorder.query(
        "SELECT count(*) FROM qubit_calibration WHERE calibrated_at = %s", T0
    ) == [(3,)]
    assert recorder.query("SELECT qubits FROM gate_calibration WHERE calibrated_at = %s", T0) == [
        ([0, 1],)
    ]
    assert recorder.query("SELECT pending_jobs FROM backend_status WHERE observed_at = %s", T0) == [
        (12,)
    ]
    assert recorder.query("SELECT usage_consumed_seconds FROM instance_usage") == [(10.0,)]
    medians = recorder.query(
        "SELECT median_t1_us, samples FROM calibration_daily WHERE backend = 'ibm_kyiv'"
    )
    assert medians == [(201.0, 3)]
    snapshot = recorder.query(
        "SELECT qubits, t1_median_us, t2_median_us, readout_error_median, "
        "two_qubit_error_median, one_qubit_error_median FROM calibration_snapshots"
    )
    assert snapshot == [(3, 201.0, 100.0, 0.01, 0.008, None)]  # once, despite two writes
    hourly = recorder.query(
        "SELECT max_pending_jobs, sum_pending_jobs, samples FROM backend_status_hourly"
    )
    assert hourly == [(12, 12, 1)]  # the second write added no status row, so no count
