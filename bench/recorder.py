"""Recorder throughput and latency: the real service process, real NATS and PostgreSQL.

1. Sustained: 100,000 mixed events (job lifecycles, backend status, 27-qubit calibration
   snapshots) are published first; the recorder then starts and the clock runs until
   every row is in PostgreSQL. Target ≥ 20,000 events/s.
2. Latency: events published at a steady 2,000/s for 20 s while the recorder runs; each
   job event's latency is its row's `recorded_at` minus the event's `occurred_at`.
   Target p99 < 1 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from qjt.bus import Bus
from qjt.config import Settings
from qjt.contracts import (
    BackendCalibration,
    BackendStatus,
    GateCalibration,
    JobAccepted,
    JobStatusChanged,
    Message,
    QubitCalibration,
)
from qjt.db import create_database, drop_database, migrate, with_database
from qjt.devstack import NatsServer, free_port, postgres_server_url, stop_process

SUSTAINED_EVENTS = 100_000
RATE = 2_000
RATE_SECONDS = 20
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def mixed_events(n: int) -> list[Message]:
    """70% job events, 27% backend status, 3% calibration snapshots."""
    events: list[Message] = []
    i = 0
    while len(events) < n:
        k = i % 100
        at = T0 + timedelta(seconds=i)
        if k < 70:
            job = f"bench-{i // 2}"
            events.append(
                JobStatusChanged(
                    job_id=job,
                    user_id="u",
                    ibm_job_id=f"ibm-{job}",
                    backend="ibm_kyiv",
                    status="QUEUED" if i % 2 else "RUNNING",
                    status_at=at,
                    primitive="sampler",
                )
            )
        elif k < 97:
            events.append(
                BackendStatus(
                    backend=f"ibm_b{i % 30}", operational=True, pending_jobs=i % 50, observed_at=at
                )
            )
        else:
            events.append(
                BackendCalibration(
                    backend=f"ibm_b{i % 30}",
                    calibrated_at=at,
                    qubits=[
                        QubitCalibration(qubit=q, t1_us=200.0, t2_us=120.0, readout_error=0.01)
                        for q in range(27)
                    ],
                    gates=[
                        GateCalibration(gate="ecr", qubits=[q, q + 1], error=0.01, duration_ns=600)
                        for q in range(26)
                    ],
                )
            )
        i += 1
    return events


def rows_expected(events: list[Message]) -> int:
    total = 0
    for event in events:
        if isinstance(event, BackendCalibration):
            total += len(event.qubits) + len(event.gates)
        else:
            total += 1
    return total


def rows_stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM job_events) + (SELECT count(*) FROM backend_status)"
            " + (SELECT count(*) FROM qubit_calibration) + (SELECT count(*) FROM gate_calibration)"
        ).fetchone()
    return int(row[0]) if row else 0


def start_recorder(nats_url: str, database_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "QJT_NATS_URL": nats_url,
        "QJT_DATABASE_URL": database_url,
        "QJT_HTTP_PORT": str(free_port()),
        "QJT_FETCH_BATCH": "1000",
        "QJT_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "services.recorder"], env=env)


async def sustained(bus: Bus, nats_url: str, url: str, replicas: int = 1) -> dict[str, Any]:
    events = mixed_events(SUSTAINED_EVENTS)
    await bus.publish_many(events)
    expected = rows_expected(events)
    recorders = [start_recorder(nats_url, url) for _ in range(replicas)]
    try:
        # Timed from the first stored row: the recorders' start-up is not throughput.
        while rows_stored(url) == 0:  # noqa: ASYNC110 (another process's progress)
            await asyncio.sleep(0.02)
        start = time.perf_counter()
        while rows_stored(url) < expected:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - start
    finally:
        for recorder in recorders:
            stop_process(recorder)
    return {
        "replicas": replicas,
        "events": len(events),
        "rows": expected,
        "seconds": seconds,
        "events_per_s": len(events) / seconds,
        "note": "from the first stored row to the last",
    }


async def sustained_two_replicas(bus: Bus, nats_url: str, url: str) -> dict[str, Any]:
    return await sustained(bus, nats_url, url, replicas=2)


async def latency(bus: Bus, nats_url: str, url: str) -> dict[str, Any]:
    recorder = start_recorder(nats_url, url)
    try:
        await asyncio.sleep(3)  # let it connect and start fetching
        interval = 1 / RATE
        start = time.perf_counter()
        for n in range(RATE * RATE_SECONDS):
            target = start + n * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await bus.js.publish_async(
                *_wire(
                    JobAccepted(
                        job_id=f"lat-{n}",
                        user_id="u",
                        primitive="sampler",
                        backend="ibm_kyiv",
                        num_circuits=1,
                    )
                )
            )
        achieved = RATE * RATE_SECONDS / (time.perf_counter() - start)
        await bus.js.publish_async_completed()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM job_events WHERE job_id LIKE 'lat-%'"
                ).fetchone()
            if row and row[0] >= RATE * RATE_SECONDS:
                break
            await asyncio.sleep(0.2)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP "
                "(ORDER BY extract(epoch FROM recorded_at - occurred_at)), count(*) "
                "FROM job_events WHERE job_id LIKE 'lat-%'"
            ).fetchone()
    finally:
        stop_process(recorder)
    assert row is not None
    return {"offered_per_s": achieved, "events": row[1], "p50_s": row[0][0], "p99_s": row[0][1]}


def _wire(message: Message) -> tuple[str, bytes, None, None, dict[str, str]]:
    return message.subject, message.to_bytes(), None, None, {"Nats-Msg-Id": message.id}


async def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server_url, _origin, _server = postgres_server_url(
            Settings(database_url=os.environ.get("QJT_DATABASE_URL") or None), Path(tmp) / "pg"
        )
        nats = NatsServer(Path(tmp) / "nats").start()
        results: dict[str, Any] = {}
        for name, measure in (
            ("sustained", sustained),
            ("sustained_2_replicas", sustained_two_replicas),
            ("latency_at_2000_per_s", latency),
        ):
            url = with_database(server_url, f"qjt_bench_recorder_{os.getpid()}_{len(results)}")
            create_database(url)
            migrate(url)
            bus = await Bus.connect(Settings(nats_url=nats.url, fetch_batch=1000))
            await bus.ensure_streams()
            try:
                results[name] = await measure(bus, nats.url, url)
            finally:
                await bus.js.delete_stream("QJT_EVT")
                await bus.close()
                drop_database(url)
        nats.stop()
    return results


def main() -> None:
    results = asyncio.run(run())
    latency_result = results["latency_at_2000_per_s"]
    print("Recorder (service process; real NATS and PostgreSQL)")
    for key in ("sustained", "sustained_2_replicas"):
        run_result = results[key]
        print(
            f"  sustained, {run_result['replicas']} replica(s): {run_result['events']:,} mixed "
            f"events ({run_result['rows']:,} rows) in {run_result['seconds']:.1f} s = "
            f"{run_result['events_per_s']:,.0f} events/s (target ≥ 20,000)"
        )
    print(
        f"  latency at {latency_result['offered_per_s']:,.0f} events/s offered: "
        f"p50 {latency_result['p50_s'] * 1000:.0f} ms, p99 {latency_result['p99_s'] * 1000:.0f} ms "
        f"over {latency_result['events']:,} events (target p99 < 1 s)"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "recorder.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
