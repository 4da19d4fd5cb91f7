"""Poller + recorder on the emulator: IBM state becomes rows, only changes are published."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet
from qiskit_ibm_runtime import SamplerV2

from qjt.accounts import register
from qjt.config import Settings
from qjt.db import migrate
from qjt.demo import bell_circuit
from qjt.devstack import NatsServer, free_port, stop_process
from qjt.ibm import runtime_service
from qjt.vault import Vault, user_id_for
from services.emulator.accounts import DEMO_ACCOUNTS, crn_for
from tests.conftest import EmulatorProcess, wait_for

pytestmark = pytest.mark.e2e
DEMO_KEY = "qjt-emulator-demo-key"
OPEN = crn_for("a1b2c3demo", "0001-open", private=False)
OPEN_BACKENDS = set(DEMO_ACCOUNTS["accounts"][0]["instances"][0]["backends"])


class Stack:
    def __init__(self, emulator: EmulatorProcess, nats: NatsServer, database: str) -> None:
        self.database = database
        key = Fernet.generate_key().decode()
        self.env = {
            **os.environ,
            "QJT_NATS_URL": nats.url,
            "QJT_DATABASE_URL": database,
            "QJT_IBM_URL": emulator.url,
            "QJT_FERNET_KEYS": key,
            "QJT_POLL_STATUS_S": "1",
            "QJT_POLL_JOBS_S": "1",
            "QJT_POLL_CALIBRATION_S": "1",
            "QJT_POLL_USAGE_S": "2",
        }
        settings = Settings(ibm_url=emulator.url, database_url=database)
        register(
            database,
            Vault([key]),
            DEMO_KEY,
            channel="ibm_quantum_platform",
            instances=[OPEN],
            settings=settings,
        )
        self.ports = {"poller": free_port(), "recorder": free_port()}
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                env={**self.env, "QJT_HTTP_PORT": str(port)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, port in self.ports.items()
        ]

    def rows(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.database) as conn:
            return conn.execute(sql, params).fetchall()

    def poller_metric(self, name: str, labels: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.ports['poller']}/metrics", timeout=5).text
        match = re.search(rf"^{name}{{{labels}}} ([0-9.e+]+)$", text, flags=re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def logs(self) -> str:
        out = ""
        for proc in self.procs:
            stop_process(proc, 20)
            out += proc.stderr.read() if proc.stderr else ""
        return out


@pytest.fixture
def stack(
    emulator: EmulatorProcess, nats_server: NatsServer, make_database: Callable[[], str]
) -> Iterator[Stack]:
    database = make_database()
    migrate(database)
    running = Stack(emulator, nats_server, database)
    yield running
    for proc in running.procs:
        stop_process(proc, 10)


async def test_calibrations_of_every_backend_appear_and_drift_adds_snapshots(stack: Stack) -> None:
    def backends_with_snapshots(at_least: int) -> set[str]:
        rows = stack.rows(
            "SELECT backend, count(DISTINCT calibrated_at) FROM qubit_calibration GROUP BY backend"
        )
        return {str(b) for b, n in rows if int(n) >= at_least}  # type: ignore[call-overload]

    await wait_for(
        lambda: backends_with_snapshots(1) == OPEN_BACKENDS,
        timeout_s=90,
        what="a calibration snapshot of every backend of the instance",
    )
    # The emulator recalibrates hourly in emulated time (seconds here): new snapshots appear.
    await wait_for(
        lambda: len(backends_with_snapshots(2)) == len(OPEN_BACKENDS),
        timeout_s=60,
        what="drifted calibrations recorded as new snapshots",
    )
    snapshots = stack.rows("SELECT count(DISTINCT (backend, calibrated_at)) FROM qubit_calibration")
    published = stack.poller_metric("qjt_bus_published_total", 'type="backend.calibration"')
    # Unchanged calibrations are not published again: one publish per snapshot stored
    # (the poller may be one snapshot ahead of the recorder).
    assert 0 <= published - int(snapshots[0][0]) <= len(OPEN_BACKENDS)  # type: ignore[call-overload]
    config = stack.rows("SELECT DISTINCT backend FROM backend_config")
    assert {str(r[0]) for r in config} == OPEN_BACKENDS
    statuses = stack.rows("SELECT count(DISTINCT backend) FROM backend_status")
    assert statuses == [(len(OPEN_BACKENDS),)]
    await wait_for(
        lambda: bool(stack.rows("SELECT 1 FROM instance_usage WHERE instance = %s", OPEN)),
        timeout_s=30,
        what="instance usage",
    )


async def test_a_job_submitted_outside_the_system_is_tracked_to_its_result(
    stack: Stack, emulator: EmulatorProcess
) -> None:
    service = runtime_service(DEMO_KEY, instance=OPEN, ibm_url=emulator.url)
    backend = service.backend("ibmq_manila")
    isa = bell_circuit(backend)
    job = SamplerV2(mode=backend).run([isa], shots=500)
    job.wait_for_final_state(timeout=120)
    ibm_id = job.job_id()
    stamps = {k: datetime.fromisoformat(v) for k, v in job.metrics()["timestamps"].items()}

    await wait_for(
        lambda: bool(stack.rows("SELECT 1 FROM job_results WHERE job_id = %s", ibm_id)),
        timeout_s=60,
        what="the job's result to be recorded",
    )
    timeline = stack.rows(
        "SELECT status, occurred_at FROM job_events WHERE job_id = %s "
        "AND event_type = 'job.status' ORDER BY occurred_at",
        ibm_id,
    )
    assert [s for s, _ in timeline] == ["QUEUED", "RUNNING", "DONE"]
    assert [t for _, t in timeline] == [stamps["created"], stamps["running"], stamps["finished"]]
    row = stack.rows(
        "SELECT status, user_id, backend, primitive, running_at, finished_at "
        "FROM jobs WHERE id = %s",
        ibm_id,
    )
    assert row == [
        (
            "DONE",
            user_id_for(DEMO_KEY),
            "ibmq_manila",
            "sampler",
            stamps["running"],
            stamps["finished"],
        )
    ]
    (counts,) = stack.rows("SELECT counts FROM job_results WHERE job_id = %s", ibm_id)[0]
    assert sum(counts[0].values()) == 500  # type: ignore[index]
    assert DEMO_KEY not in stack.logs()  # the token never reaches a log line


async def test_two_replicas_share_the_accounts_and_one_takes_over_a_dead_ones(
    emulator: EmulatorProcess, nats_server: NatsServer, make_database: Callable[[], str]
) -> None:
    database = make_database()
    migrate(database)
    stack = Stack(emulator, nats_server, database)  # one replica + recorder, demo open instance
    try:
        settings = Settings(ibm_url=emulator.url, database_url=database)
        vault = Vault([stack.env["QJT_FERNET_KEYS"]])
        register(
            database,
            vault,
            DEMO_KEY,
            channel="ibm_quantum_platform",
            instances=[crn_for("a1b2c3demo", "0002-premium", private=True)],
            settings=settings,
        )
        register(
            database,
            vault,
            "qjt-emulator-second-key",
            channel="ibm_quantum_platform",
            instances=None,
            settings=settings,
        )
        second_port = free_port()
        second = subprocess.Popen(
            [sys.executable, "-m", "services.poller"],
            env={**stack.env, "QJT_HTTP_PORT": str(second_port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        stack.procs.append(second)

        def gauge(port: int, name: str) -> float:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                return -1
            match = re.search(rf"^{name} ([0-9.]+)$", text, flags=re.MULTILINE)
            return float(match.group(1)) if match else -1

        def targets(port: int) -> float:
            return gauge(port, "qjt_poller_targets")

        premium = crn_for("a1b2c3demo", "0002-premium", private=True)
        every_backend = len(
            runtime_service(DEMO_KEY, instance=premium, ibm_url=emulator.url).backends()
        )

        ports = [stack.ports["poller"], second_port]
        # Three accounts × instances, shared: each polled by exactly one replica.
        await wait_for(
            lambda: sorted(targets(p) for p in ports) == [1, 2],
            timeout_s=60,
            what="the three accounts split between the two replicas",
        )
        for _ in range(5):  # and it stays that way
            assert sum(targets(p) for p in ports) == 3
            await asyncio.sleep(1)
        # A backend seen through accounts on both replicas is still polled by one only.
        await wait_for(
            lambda: sum(gauge(p, "qjt_poller_backends") for p in ports) == every_backend,
            timeout_s=30,
            what="each backend leased to exactly one replica",
        )

        stack.procs[0].kill()  # the first poller dies without releasing its leases
        stack.procs[0].wait()
        killed_at = asyncio.get_running_loop().time()
        await wait_for(
            lambda: targets(second_port) == 3,
            timeout_s=30,
            what="the surviving replica to take over every account",
        )
        await wait_for(
            lambda: gauge(second_port, "qjt_poller_backends") == every_backend,
            timeout_s=30,
            what="the surviving replica to take over every backend",
        )
        assert asyncio.get_running_loop().time() - killed_at < 30
    finally:
        for proc in stack.procs:
            stop_process(proc, 10)


async def test_ibm_errors_are_ridden_out_and_every_event_is_stored_once(
    emulator: EmulatorProcess, nats_server: NatsServer, make_database: Callable[[], str]
) -> None:
    service = runtime_service(DEMO_KEY, instance=OPEN, ibm_url=emulator.url)
    backend = service.backend("ibmq_lima")
    isa = bell_circuit(backend)
    jobs = [SamplerV2(mode=backend).run([isa], shots=100) for _ in range(3)]
    for job in jobs:
        job.wait_for_final_state(timeout=120)

    database = make_database()
    migrate(database)
    emulator.set_faults(rate_500=0.1, rate_503=0.1, rate_429=0.1)
    stack = Stack(emulator, nats_server, database)  # the poller starts under faults
    try:
        ids = [job.job_id() for job in jobs]

        def results() -> int:
            rows = stack.rows("SELECT count(*) FROM job_results WHERE job_id = ANY(%s)", ids)
            return int(str(rows[0][0]))

        await wait_for(
            lambda: results() == 3, timeout_s=120, what="every job's result despite IBM errors"
        )
        # The client retries many of these itself; what matters is that they happened.
        metrics = httpx.get(f"{emulator.url}/metrics", timeout=5).text
        pattern = r'^qjt_emulator_injected_faults_total\{kind="\d+"\} ([0-9.]+)$'
        injected = sum(float(m) for m in re.findall(pattern, metrics, flags=re.MULTILINE))
        assert injected > 0, "the injected errors must have been hit"
    finally:
        emulator.set_faults()
    statuses = stack.rows(
        "SELECT job_id, count(*), count(DISTINCT status) FROM job_events "
        "WHERE job_id = ANY(%s) AND event_type = 'job.status' GROUP BY job_id",
        ids,
    )
    assert sorted(statuses) == sorted((i, 3, 3) for i in ids)  # QUEUED, RUNNING, DONE once each
    assert stack.rows("SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status = 'DONE'", ids) == [
        (3,)
    ]
    for proc in stack.procs:
        stop_process(proc, 10)


def test_ibms_retry_after_on_a_429_reaches_the_poller(emulator: EmulatorProcess) -> None:
    from services.poller.ibm import IbmAccount

    settings = Settings(ibm_url=emulator.url)
    account = IbmAccount(DEMO_KEY, OPEN, "ibm_quantum_platform", settings)
    emulator.set_faults(rate_429=1.0, retry_after_s=7)
    try:
        with pytest.raises(Exception, match="429"):
            account.jobs(pending=True)
    finally:
        emulator.set_faults()
    assert account.take_retry_after() == 7.0
    assert account.take_retry_after() is None  # read once
    assert account.status("ibmq_manila").pending_jobs >= 0
    assert account.take_retry_after() is None
