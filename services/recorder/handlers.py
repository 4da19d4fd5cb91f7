"""What the recorder does with events: turn a batch into rows, then store them at once.

`rows_for` is pure (no I/O): each event becomes rows for the tables it touches. The SQL
adapter (`store.py`) writes a batch in one transaction, idempotently, so any order,
duplication or replay of events gives the same tables.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter

from qjt.contracts import (
    STATUS_RANK,
    BackendCalibration,
    BackendConfiguration,
    BackendStatus,
    InstanceBackends,
    InstanceUsage,
    JobAccepted,
    JobCancelled,
    JobEvent,
    JobFailed,
    JobResult,
    JobStatusChanged,
    JobSubmitted,
    Message,
)

STATUS_COLUMN = {"QUEUED": "queued_at", "VALIDATING": "queued_at", "RUNNING": "running_at"}
FINAL = ("DONE", "ERROR", "CANCELLED")


@dataclass
class JobRow:
    """One event's contribution to a `jobs` row (None: this event does not know it)."""

    id: str
    user_id: str
    backend: str
    status: str
    created_at: datetime
    updated_at: datetime
    ibm_job_id: str | None = None
    instance: str | None = None
    primitive: str | None = None
    shots: int | None = None
    num_circuits: int | None = None
    tags: list[str] = field(default_factory=list)
    priority: int | None = None
    error: str | None = None
    submitted_at: datetime | None = None
    queued_at: datetime | None = None
    running_at: datetime | None = None
    finished_at: datetime | None = None
    quantum_seconds: float | None = None
    estimated_usage_seconds: float | None = None

    @property
    def status_rank(self) -> int:
        return STATUS_RANK[self.status]

    def params(self) -> dict[str, Any]:
        """Column values (priority None: unknown, the merge keeps the stored one)."""
        values = dict(vars(self))
        values["status_rank"] = self.status_rank
        values["tags"] = sorted(set(self.tags))
        return values


def merge_job_rows(first: JobRow, second: JobRow) -> JobRow:
    """Two events' views of one job combined by the rules the SQL upsert applies.

    The result does not depend on the order of the two (status moves only up in rank,
    timestamps keep the earliest, tags are the union), so a batch can be merged in
    memory and written with one statement.
    """
    higher = second if second.status_rank > first.status_rank else first
    return JobRow(
        id=first.id,
        user_id=first.user_id,
        backend=first.backend or second.backend,
        status=higher.status,
        created_at=min(first.created_at, second.created_at),
        updated_at=max(first.updated_at, second.updated_at),
        ibm_job_id=first.ibm_job_id or second.ibm_job_id,
        instance=first.instance or second.instance,
        primitive=first.primitive or second.primitive,
        shots=first.shots if first.shots is not None else second.shots,
        num_circuits=first.num_circuits if first.num_circuits is not None else second.num_circuits,
        tags=sorted(set(first.tags) | set(second.tags)),
        priority=first.priority if first.priority is not None else second.priority,
        error=first.error or second.error,
        submitted_at=_earliest(first.submitted_at, second.submitted_at),
        queued_at=_earliest(first.queued_at, second.queued_at),
        running_at=_earliest(first.running_at, second.running_at),
        finished_at=_earliest(first.finished_at, second.finished_at),
        quantum_seconds=(
            first.quantum_seconds if first.quantum_seconds is not None else second.quantum_seconds
        ),
        estimated_usage_seconds=(
            first.estimated_usage_seconds
            if first.estimated_usage_seconds is not None
            else second.estimated_usage_seconds
        ),
    )


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    present = [t for t in (a, b) if t is not None]
    return min(present) if present else None


@dataclass
class Rows:
    """Everything one batch writes, per table."""

    jobs: list[JobRow] = field(default_factory=list)
    job_events: list[tuple[Any, ...]] = field(default_factory=list)
    job_results: list[tuple[Any, ...]] = field(default_factory=list)
    backend_status: list[tuple[Any, ...]] = field(default_factory=list)
    backend_config: list[tuple[Any, ...]] = field(default_factory=list)
    qubit_calibration: list[tuple[Any, ...]] = field(default_factory=list)
    gate_calibration: list[tuple[Any, ...]] = field(default_factory=list)
    instance_usage: list[tuple[Any, ...]] = field(default_factory=list)
    instance_backends: list[tuple[Any, ...]] = field(default_factory=list)
    calibration_snapshots: list[tuple[Any, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(rows) for rows in vars(self).values())


class RowStore(Protocol):
    """Where rows go (PostgreSQL in production)."""

    async def write(self, rows: Rows) -> None: ...


JOB_STATES = Counter(
    "qjt_recorder_job_states_total", "Job state changes recorded, by the state entered", ["state"]
)
JOB_STATE_OF = {JobAccepted: "ACCEPTED", JobResult: "DONE", JobFailed: "ERROR",
                JobCancelled: "CANCELLED"}  # fmt: skip


async def record(events: list[Message], store: RowStore) -> None:
    """Handler for a batch of events: store all of it, or raise and store none of it."""
    await store.write(rows_for(events))
    for event in events:
        if isinstance(event, JobStatusChanged):
            JOB_STATES.labels(event.status).inc()
        elif type(event) in JOB_STATE_OF:
            JOB_STATES.labels(JOB_STATE_OF[type(event)]).inc()


def rows_for(events: list[Message]) -> Rows:
    """The rows a batch of events adds or updates."""
    rows = Rows()
    merged: dict[str, JobRow] = {}
    for event in events:
        if isinstance(event, JobEvent):
            _job_rows(event, rows)
        elif isinstance(event, BackendStatus):
            rows.backend_status.append(
                (
                    event.backend,
                    event.observed_at,
                    event.operational,
                    event.pending_jobs,
                    event.status_msg,
                )
            )
        elif isinstance(event, BackendCalibration):
            _calibration_rows(event, rows)
        elif isinstance(event, BackendConfiguration):
            rows.backend_config.append(
                (
                    event.backend,
                    event.id.rsplit(":", 1)[-1],
                    event.num_qubits,
                    event.basis_gates,
                    event.max_shots,
                    json.dumps([list(pair) for pair in event.coupling_map]),
                    event.simulator,
                    event.processor_type,
                    event.occurred_at,
                )
            )
        elif isinstance(event, InstanceUsage):
            rows.instance_usage.append(
                (
                    event.instance,
                    event.observed_at,
                    event.usage_consumed_seconds,
                    event.usage_limit_seconds,
                )
            )
        elif isinstance(event, InstanceBackends):
            rows.instance_backends.extend(
                (event.instance, event.observed_at, backend) for backend in event.backends
            )
        # Other messages on qjt.evt.> (recommendations) are not the recorder's to store.
    for row in rows.jobs:
        merged[row.id] = merge_job_rows(merged[row.id], row) if row.id in merged else row
    rows.jobs = list(merged.values())
    return rows


def _job_rows(event: JobEvent, rows: Rows) -> None:
    row = job_row(event)
    if row is None:
        return
    rows.jobs.append(row)
    when = event.status_at if isinstance(event, JobStatusChanged) else event.occurred_at
    rows.job_events.append(
        (event.id, event.job_id, event.type, row.status, when, event.model_dump_json())
    )
    if isinstance(event, JobResult):
        rows.job_results.append(
            (
                event.job_id,
                event.ibm_job_id,
                event.primitive,
                json.dumps(event.counts) if event.counts is not None else None,
                json.dumps(event.expectation_values)
                if event.expectation_values is not None
                else None,
                json.dumps(event.standard_errors) if event.standard_errors is not None else None,
                event.metrics.model_dump_json(),
            )
        )


def job_row(event: JobEvent) -> JobRow | None:
    """What one job event says about the job's current state."""

    def base(**fields: Any) -> JobRow:
        return JobRow(
            id=event.job_id, user_id=event.user_id, updated_at=event.occurred_at, **fields
        )

    if isinstance(event, JobAccepted):
        return base(
            backend=event.backend,
            status="ACCEPTED",
            created_at=event.occurred_at,
            instance=event.instance,
            primitive=event.primitive,
            shots=event.shots,
            num_circuits=event.num_circuits,
            tags=list(event.tags),
            priority=event.priority,
        )
    if isinstance(event, JobSubmitted):
        return base(
            backend=event.backend,
            status="INITIALIZING",
            created_at=event.occurred_at,
            ibm_job_id=event.ibm_job_id,
            instance=event.instance,
            submitted_at=event.occurred_at,
            estimated_usage_seconds=event.estimated_usage_seconds,
        )
    if isinstance(event, JobStatusChanged):
        row = base(
            backend=event.backend,
            status=event.status,
            created_at=event.created_at or event.status_at,
            ibm_job_id=event.ibm_job_id,
            instance=event.instance,
            primitive=event.primitive,
            tags=list(event.tags or []),
        )
        column = "finished_at" if event.status in FINAL else STATUS_COLUMN.get(event.status)
        if column:
            setattr(row, column, event.status_at)
        return row
    if isinstance(event, JobResult):
        metrics = event.metrics
        return base(
            backend=event.backend,
            status="DONE",
            created_at=metrics.created_at or event.occurred_at,
            ibm_job_id=event.ibm_job_id,
            primitive=event.primitive,
            queued_at=metrics.queued_at,
            running_at=metrics.running_at,
            finished_at=metrics.finished_at or event.occurred_at,
            quantum_seconds=metrics.quantum_seconds,
        )
    if isinstance(event, JobCancelled):
        return base(
            backend="",
            status="CANCELLED",
            created_at=event.occurred_at,
            ibm_job_id=event.ibm_job_id,
            finished_at=event.occurred_at,
        )
    if isinstance(event, JobFailed):
        return base(
            backend="",
            status="ERROR",
            created_at=event.occurred_at,
            ibm_job_id=event.ibm_job_id,
            error=event.reason,
            finished_at=event.occurred_at,
        )
    return None


# A qubit counts as faulty when its readout error is at least this (dashboards' count).
FAULTY_READOUT = 0.2


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _calibration_rows(event: BackendCalibration, rows: Rows) -> None:
    one_qubit = [g.error for g in event.gates if len(g.qubits) == 1 and g.gate in ("sx", "x")]
    two_qubit = [g.error for g in event.gates if len(g.qubits) == 2]
    rows.calibration_snapshots.append(
        (
            event.backend,
            event.calibrated_at,
            len(event.qubits),
            _median([q.t1_us for q in event.qubits]),
            _median([q.t2_us for q in event.qubits]),
            _median([q.readout_error for q in event.qubits]),
            _median(one_qubit),
            _median(two_qubit),
            sum((q.readout_error or 0) >= FAULTY_READOUT for q in event.qubits),
        )
    )
    for qubit in event.qubits:
        rows.qubit_calibration.append(
            (
                event.backend,
                event.calibrated_at,
                qubit.qubit,
                qubit.t1_us,
                qubit.t2_us,
                qubit.readout_error,
                qubit.frequency_ghz,
                qubit.prob_meas0_prep1,
                qubit.prob_meas1_prep0,
            )
        )
    for gate in event.gates:
        rows.gate_calibration.append(
            (
                event.backend,
                event.calibrated_at,
                gate.gate,
                gate.qubits,
                gate.error,
                gate.duration_ns,
            )
        )
