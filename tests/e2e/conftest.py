"""The gateway stack shared by the end-to-end modules that talk HTTP to the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from qjt.db import create_database, drop_database, migrate, with_database
from qjt.devstack import NatsServer
from qjt.vault import user_id_for
from tests.conftest import RUN_ID, EmulatorProcess
from tests.helpers.stack import ServiceStack, wait_until

TOKEN_A = "qjt-emulator-demo-key"
TOKEN_B = "qjt-emulator-second-key"


class User:
    """An HTTP client registered with one IBM token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.token = token
        self.user_id = user_id_for(token)
        answer = httpx.post(f"{base_url}/v1/accounts", json={"token": token}, timeout=60)
        assert answer.status_code == 201, answer.text
        self.api_key: str = answer.json()["api_key"]
        self.registration = answer.json()
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30
        )

    def quickest_backend(self) -> str:
        """The least busy backend now (queues follow the hour of day in the emulator)."""
        backends = self.http.get("/v1/backends").json()
        return str(next(b["name"] for b in backends if b["least_busy"]))

    def submit(self, **body: Any) -> str:
        answer = self.http.post("/v1/jobs", json=body)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.http.get(f"/v1/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def wait_status(self, job_id: str, status: str, timeout_s: float = 120) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.job(job_id)
            if job["status"] == status and (status != "Completed" or job["result"]):
                return job
            assert job["status"] not in {"Failed", "Cancelled", "Completed"} - {status}, job
            return None

        try:
            return dict(wait_until(done, timeout_s, f"job {job_id} {status}"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the job now: {self.job(job_id)}") from None


class Gateway:
    def __init__(self, stack: ServiceStack, emulator: EmulatorProcess) -> None:
        self.stack = stack
        self.emulator = emulator
        self.a = User(stack.api_url, TOKEN_A)
        self.b = User(stack.api_url, TOKEN_B)
        for user in (self.a, self.b):
            wait_until(
                lambda u=user: any(  # type: ignore[misc]
                    b["least_busy"] for b in u.http.get("/v1/backends").json()
                ),
                90,
                "the poller listing the user's backends",
            )
        self.responses: list[str] = []


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, postgres_server: str) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("gateway")
    # Queues move in real seconds at 60x, so a job on a busy backend stays queued a while.
    emulator = EmulatorProcess(speedup=60.0, seed=11)
    nats = NatsServer(root / "nats").start()
    database = with_database(postgres_server, f"qjt_test_{RUN_ID}_gw_{uuid.uuid4().hex[:6]}")
    create_database(database)
    migrate(database)
    stack = ServiceStack(nats=nats, database=database, ibm_url=emulator.url, log_dir=root / "logs")
    try:
        yield Gateway(stack, emulator)
    finally:
        stack.stop()
        nats.stop()
        emulator.stop()
        drop_database(database)
