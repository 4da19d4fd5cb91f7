"""Poller IBM traffic: requests per tracked job per minute.

50 jobs wait in the emulator's queues (time runs at real speed, so they stay open) while
one poller with default intervals tracks them for a minute. Job-related calls (job list
pages, per-job lookups, metrics) are counted from the poller's own metrics and divided
by jobs × minutes; backend and usage polling is reported apart, per minute.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from qiskit_ibm_runtime import SamplerV2

from qjt.accounts import register
from qjt.config import Settings
from qjt.db import create_database, drop_database, migrate, with_database
from qjt.demo import bell_circuit
from qjt.devstack import NatsServer, free_port, postgres_server_url, stop_process
from qjt.ibm import runtime_service
from qjt.vault import Vault
from services.emulator.accounts import crn_for
from tests.conftest import EmulatorProcess

JOBS = 50
WINDOW_S = 60.0
OPEN = crn_for("a1b2c3demo", "0001-open", private=False)
JOB_CALLS = ("jobs", "job", "metrics", "result")


def calls(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        name: float(value)
        for name, value in re.findall(
            r'^qjt_poller_ibm_calls_total\{call="(\w+)"\} ([0-9.e+]+)$', text, flags=re.MULTILINE
        )
    }


def main() -> None:
    emulator = EmulatorProcess(speedup=1.0)
    tmp = tempfile.mkdtemp()
    nats = NatsServer(Path(tmp) / "nats").start()
    server_url, _origin, _server = postgres_server_url(
        Settings(database_url=os.environ.get("QJT_DATABASE_URL") or None), Path(tmp) / "pg"
    )
    url = with_database(server_url, f"qjt_bench_poller_{os.getpid()}")
    create_database(url)
    migrate(url)
    key = Fernet.generate_key().decode()
    poller: subprocess.Popen[bytes] | None = None
    try:
        settings = Settings(ibm_url=emulator.url, database_url=url)
        register(
            url,
            Vault([key]),
            "qjt-emulator-demo-key",
            channel="ibm_quantum_platform",
            instances=[OPEN],
            settings=settings,
        )
        service = runtime_service("qjt-emulator-demo-key", instance=OPEN, ibm_url=emulator.url)
        backend = max(service.backends(), key=lambda b: b.status().pending_jobs)
        isa = bell_circuit(backend)
        for _ in range(JOBS):
            SamplerV2(mode=backend).run([isa], shots=100)
        port = free_port()
        env = {
            **os.environ,
            "QJT_NATS_URL": nats.url,
            "QJT_DATABASE_URL": url,
            "QJT_IBM_URL": emulator.url,
            "QJT_FERNET_KEYS": key,
            "QJT_HTTP_PORT": str(port),
            "QJT_LOG_LEVEL": "WARNING",
        }
        poller = subprocess.Popen([sys.executable, "-m", "services.poller"], env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if calls(port).get("jobs", 0) >= 2:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        before = calls(port)
        time.sleep(WINDOW_S)
        after = calls(port)
        still_open = sum(1 for j in service.jobs(limit=JOBS, pending=True))
    finally:
        if poller is not None:
            stop_process(poller)
        emulator.stop()
        nats.stop()
        drop_database(url)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    minutes = WINDOW_S / 60
    job_calls = sum(delta.get(k, 0) for k in JOB_CALLS)
    results: dict[str, Any] = {
        "tracked_jobs": JOBS,
        "open_at_end": still_open,
        "calls_in_window": delta,
        "job_calls_per_job_per_minute": job_calls / JOBS / minutes,
        "other_calls_per_minute": (sum(delta.values()) - job_calls) / minutes,
    }
    print(f"Poller IBM traffic ({JOBS} open jobs on {backend.name}, {WINDOW_S:.0f} s window)")
    print(
        f"  job calls per tracked job per minute: {results['job_calls_per_job_per_minute']:.2f} "
        f"(job list pages: {delta.get('jobs', 0):.0f} in the window)"
    )
    print(
        f"  backend/usage calls per minute (not per job): {results['other_calls_per_minute']:.0f}"
    )
    print(f"  jobs still open at the end: {still_open}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "poller.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
