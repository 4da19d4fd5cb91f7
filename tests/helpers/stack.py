"""The whole system as subprocesses on real NATS, PostgreSQL and the emulator.

Each service's output goes to its own log file, so a test can read every line the stack
wrote (for example to check that no secret appears in any of them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.fernet import Fernet

from qjt.devstack import NatsServer, free_port, stop_process

WORKERS = ("recorder", "poller", "submitter", "recommender", "notifier")


class ServiceStack:
    """recorder, poller, submitter, recommender and api (or some), pointed at one emulator."""

    def __init__(
        self,
        *,
        nats: NatsServer,
        database: str,
        ibm_url: str,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        services: tuple[str, ...] = (*WORKERS, "api"),
    ) -> None:
        self.database = database
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "QJT_NATS_URL": nats.url,
            "QJT_DATABASE_URL": database,
            "QJT_IBM_URL": ibm_url,
            "QJT_FERNET_KEYS": Fernet.generate_key().decode(),
            "QJT_POLL_STATUS_S": "1",
            "QJT_POLL_JOBS_S": "1",
            "QJT_POLL_CALIBRATION_S": "5",
            "QJT_POLL_USAGE_S": "2",
            "QJT_POLL_ACCOUNTS_S": "1",
            "QJT_ACK_WAIT_S": "10",
            "QJT_API_RATE_LIMIT": "100000/minute",
            "QJT_API_REGISTER_RATE_LIMIT": "1000/minute",
            "QJT_LOG_LEVEL": "INFO",
            **(extra_env or {}),
        }
        self.ports: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.api_url = ""
        for name in services:
            self.start(name)
        for name in self.procs:
            self.wait_healthy(name)

    @property
    def fernet_key(self) -> str:
        return self.env["QJT_FERNET_KEYS"]

    def start(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start (or restart) one service; its output is appended to `<name>.log`."""
        port = free_port()
        self.ports[name] = port
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env={**self.env, "QJT_HTTP_PORT": str(port), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs[name] = proc
        if name == "api":
            self.api_url = f"http://127.0.0.1:{port}"
        return proc

    def wait_healthy(self, name: str, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.ports[name]}/healthz"
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log(name)[-3000:]}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} not healthy within {timeout_s} s: {self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database) as conn:
            return conn.execute(sql, params).fetchall()

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc, 20)


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.3) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")
