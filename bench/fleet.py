"""The emulator's backends as the poller would report them, for benchmarks and tests.

`fleet` turns each emulated device's configuration and drifted calibration at a moment
into the poller's events (through the poller's own conversion of the client's objects);
`store_fleet` writes them with the recorder's own row builder and store, and
`store_history` writes generated queue history into `jobs` and `backend_status`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool
from qiskit_ibm_runtime.models import BackendProperties, QasmBackendConfiguration

from bench.queue_history import StatusRow
from qjt.contracts import (
    STATUS_RANK,
    BackendCalibration,
    BackendConfiguration,
    BackendStatus,
    Message,
)
from services.emulator.devices import Device, load_devices
from services.poller.ibm import calibration_of, configuration_of
from services.recommender.predictor import HistoryJob
from services.recorder.handlers import rows_for
from services.recorder.store import PostgresStore


@dataclass(frozen=True)
class EmulatedBackend:
    """One emulated device at one moment: what the poller reports, and the raw snapshot."""

    device: Device
    config: BackendConfiguration
    calibration: BackendCalibration
    properties: dict[str, Any]


def fleet(
    seed: int,
    moment: datetime,
    *,
    min_qubits: int = 1,
    names: Iterable[str] | None = None,
    devices: dict[str, Device] | None = None,
) -> list[EmulatedBackend]:
    """Every emulated device with a calibration (or the named ones) at `moment`."""
    devices = devices or load_devices(seed)
    wanted = list(names) if names is not None else sorted(devices)
    out = []
    for name in wanted:
        device = devices[name]
        props = device.properties(moment)
        if props is None or device.num_qubits < min_qubits:
            continue
        config = QasmBackendConfiguration.from_dict(device.configuration)
        out.append(
            EmulatedBackend(
                device=device,
                config=configuration_of(name, config),
                calibration=calibration_of(name, BackendProperties.from_dict(props)),
                properties=props,
            )
        )
    return out


async def store_events(pool: AsyncConnectionPool, events: list[Message]) -> None:
    """Write events as the recorder would."""
    await PostgresStore(pool).write(rows_for(events))


async def store_fleet(
    pool: AsyncConnectionPool,
    backends: list[EmulatedBackend],
    moment: datetime,
    pending: dict[str, int] | None = None,
    down: Iterable[str] = (),
) -> None:
    """Configuration, calibration and a status for each backend, stored as the recorder does."""
    offline = set(down)
    events: list[Message] = []
    for b in backends:
        events += [
            b.config,
            b.calibration,
            BackendStatus(
                backend=b.config.backend,
                operational=b.config.backend not in offline,
                pending_jobs=(pending or {}).get(b.config.backend, 0),
                observed_at=moment,
            ),
        ]
    await store_events(pool, events)


async def store_history(
    pool: AsyncConnectionPool, jobs: list[HistoryJob], statuses: list[StatusRow]
) -> None:
    """Generated queue history into `jobs` and `backend_status` (COPY, for volume)."""
    async with pool.connection() as conn, conn.cursor() as cur:
        async with cur.copy(
            "COPY backend_status (backend, observed_at, operational, pending_jobs) FROM STDIN"
        ) as copy:
            for s in statuses:
                await copy.write_row((s.backend, s.observed_at, s.operational, s.pending_jobs))
        async with cur.copy(
            "COPY jobs (id, user_id, backend, primitive, status, status_rank, shots, "
            "num_circuits, created_at, submitted_at, queued_at, running_at, finished_at, "
            "quantum_seconds) FROM STDIN"
        ) as copy:
            done = STATUS_RANK["DONE"]
            for job in jobs:
                await copy.write_row(
                    (uuid.uuid4().hex, "history", job.backend, "sampler", "DONE", done,
                     int(job.size), 1, job.queued_at, job.queued_at, job.queued_at,
                     job.started_at, job.finished_at, job.run_s)
                )  # fmt: skip
