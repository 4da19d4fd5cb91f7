"""`qjt up` in a subprocess: every service healthy, crashes restarted, nothing left behind."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qjt.devstack import SERVICES, free_port, pid_alive, stop_process
from qjt.ibm import runtime_service
from tests.helpers.stack import wait_until

QJT = str(Path(sys.executable).with_name("qjt"))
pytestmark = pytest.mark.e2e


class Stack:
    """A `qjt up` child process whose output is read line by line."""

    def __init__(self, state_dir: Path, database_url: str, demo: bool) -> None:
        self.state_dir = state_dir
        self.env = {
            **os.environ,
            "QJT_STATE_DIR": str(state_dir),
            "QJT_DATABASE_URL": database_url,
            "QJT_API_PORT": str(free_port()),
            "QJT_EMULATOR_PORT": str(free_port()),
            "QJT_SHUTDOWN_GRACE_S": "10",
        }
        self.env.pop("QJT_NATS_URL", None)  # the stack starts its own NATS
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [QJT, "up", "--timeout", "90", *([] if demo else ["--no-demo"])],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip())

    def wait_for_line(self, text: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"`qjt up` never printed {text!r}; output:\n" + "\n".join(self.lines))

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "devstack.json").read_text()))

    def stop_with(self, how: str) -> None:
        if how == "qjt down":
            down = subprocess.run(
                [QJT, "down"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert down.returncode == 0, down.stdout + down.stderr
            assert "stack stopped" in down.stdout
        else:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert self.proc.wait(timeout=90) == 0
        self.wait_for_line("Stopped.", timeout_s=10)


def answers_healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def start_stack(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Callable[..., Stack]]:
    """Starts `qjt up`; whatever the test does, no stack outlives it."""
    stacks: list[Stack] = []

    def start(demo: bool = False) -> Stack:
        stack = Stack(tmp_path / f"stack{len(stacks)}", make_database(), demo)
        stacks.append(stack)
        stack.wait_for_line("Stack is up")
        return stack

    yield start
    for stack in stacks:
        stop_process(stack.proc, 60)


def healthz(port: int) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize("stop_by", ["qjt down", "Ctrl-C"])
def test_qjt_up_brings_every_service_up_and_stopping_leaves_no_process(
    stop_by: str, start_stack: Callable[..., Stack]
) -> None:
    stack = start_stack(demo=stop_by == "qjt down")
    output = "\n".join(stack.lines)
    for name in SERVICES:
        assert f"✓ {name}" in output
    assert "API docs    http://127.0.0.1:" in output and "/metrics" in output

    state = stack.state()
    services = state["services"]
    assert set(services) == set(SERVICES)
    for name, info in services.items():
        body = healthz(info["port"])
        assert body["status"] == "ok", (name, body)
        metrics = httpx.get(f"http://127.0.0.1:{info['port']}/metrics", timeout=5)
        assert metrics.status_code == 200 and "python_info" in metrics.text
    assert healthz(services["api"]["port"])["checks"] == {"nats": True, "database": True}
    # Services are pointed at the stack's emulator, which the real client can use.
    assert state["ibm_url"] == f"http://127.0.0.1:{services['emulator']['port']}"
    if stop_by == "Ctrl-C":
        client = runtime_service("qjt-emulator-demo-key", ibm_url=state["ibm_url"])
        assert {i["name"] for i in client.instances()} == {"open-instance", "premium-instance"}

    if stop_by == "qjt down":
        # The demo job goes through the real client, the poller and the recorder.
        stack.wait_for_line("Demo: job", timeout_s=180)
        assert "Completed, counts" in stack.lines[-1], stack.lines[-1]

    pids = [info["pid"] for info in services.values()] + [state["nats_pid"]]
    if stop_by == "qjt down":
        # A crashed service is restarted by the supervisor.
        crashed = services["recorder"]["pid"]
        os.kill(crashed, signal.SIGKILL)
        wait_until(lambda: stack.state()["services"]["recorder"]["pid"] != crashed, 30, "a restart")
        restarted = stack.state()["services"]["recorder"]
        wait_until(lambda: answers_healthy(restarted["port"]), 60, "the restarted recorder")
        pids.append(restarted["pid"])
        stack.wait_for_line("recorder exited (-9); restarting")

    stack.stop_with(stop_by)

    for pid in pids:
        assert not pid_alive(pid), f"process {pid} outlived the stack"
    assert not (stack.state_dir / "devstack.json").exists()


def test_second_qjt_up_refuses_while_one_runs(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    again = subprocess.run(
        [QJT, "up"], env=stack.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 1
    assert "already running" in again.stdout and "qjt down" in again.stdout
    stack.stop_with("qjt down")
