"""Process wiring shared by the worker services (poller, recorder, submitter, ...).

`run_service` sets up logging, connects to NATS (waiting for it if it is not up yet),
creates the streams, opens the PostgreSQL pool when asked, serves `/healthz` and
`/metrics`, runs the service's `start` function, and on SIGTERM or SIGINT stops every
consumer after its batch in hand, waits for background tasks (up to the grace period),
drains NATS and closes the pool. The API and the emulator are HTTP apps and use
uvicorn's own lifecycle instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from qjt.bus import TRANSIENT_ERRORS, Bus, Consumer
from qjt.config import Settings, get_settings
from qjt.db import open_pool
from qjt.telemetry import HealthServer, configure_logging

log = logging.getLogger("qjt.service")

_CONNECT_ERRORS: tuple[type[BaseException], ...] = (OSError, *TRANSIENT_ERRORS)


@dataclass
class ServiceContext:
    """What a service's `start` function gets: settings, connections, a place for tasks."""

    name: str
    settings: Settings
    bus: Bus
    pool: AsyncConnectionPool | None
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    cleanups: list[Callable[[], Any]] = field(default_factory=list)
    ready: bool = False  # true once `start` has returned (subscriptions in place)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background task that shutdown waits for."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.append(task)
        return task

    def on_stop(self, cleanup: Callable[[], Any]) -> None:
        """Call `cleanup` at shutdown, after in-flight work has drained."""
        self.cleanups.append(cleanup)

    def run_consumer(self, consumer: Consumer) -> None:
        """Run a consumer loop until shutdown."""
        self.spawn(consumer.run(), name=f"consumer:{consumer.spec.durable}")

    def health(self) -> dict[str, bool]:
        report = {"nats": self.bus.connected, "started": self.ready and not self.stopping.is_set()}
        report.update({name: check() for name, check in self.checks.items()})
        return report


StartFn = Callable[[ServiceContext], Awaitable[None]]


async def connect_bus(settings: Settings, name: str, wait_s: float = 60.0) -> Bus:
    """Connect to NATS, retrying while it starts; then make sure the streams exist."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + wait_s
    while True:
        try:
            bus = await Bus.connect(settings, name=name)
            await bus.ensure_streams()
            return bus
        except _CONNECT_ERRORS as exc:
            if loop.time() >= give_up_at:
                raise RuntimeError(f"NATS at {settings.nats_url} is not reachable: {exc}") from exc
            log.info("waiting for NATS at %s (%s)", settings.nats_url, type(exc).__name__)
            await asyncio.sleep(1.0)


async def serve(name: str, start: StartFn, *, needs_db: bool, settings: Settings) -> None:
    """Run one service until SIGTERM/SIGINT, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    bus = await connect_bus(settings, name)
    pool: AsyncConnectionPool | None = None
    if needs_db:
        if not settings.database_url:
            raise RuntimeError(f"{name} needs QJT_DATABASE_URL")
        pool = open_pool(settings.database_url, settings.db_pool_max)
        await pool.open(wait=True, timeout=60)

    ctx = ServiceContext(name=name, settings=settings, bus=bus, pool=pool)
    health = HealthServer(name, ctx.health)
    port = await health.start(settings.http_host, settings.http_port)
    await start(ctx)
    ctx.ready = True
    log.info("%s ready", name, extra={"port": port, "pid": os.getpid()})

    await stop.wait()
    log.info("%s stopping: draining in-flight work", name)
    ctx.stopping.set()
    await _shutdown(ctx, settings.shutdown_grace_s)
    await health.close()
    log.info("%s stopped", name)


async def _shutdown(ctx: ServiceContext, grace_s: float) -> None:
    ctx.bus.stop_consumers()
    if ctx.tasks:
        _done, pending = await asyncio.wait(ctx.tasks, timeout=grace_s)
        for task in pending:
            log.warning(
                "task %s did not finish within %.0f s; cancelling", task.get_name(), grace_s
            )
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
    await ctx.bus.close()
    if ctx.pool is not None:
        await ctx.pool.close()
    for cleanup in ctx.cleanups:
        cleanup()


def run_service(name: str, start: StartFn, *, needs_db: bool = False) -> None:
    """Entry point for `python -m services.<name>`."""
    settings = get_settings().model_copy(update={"service_name": name})
    configure_logging(name, settings.log_level)
    asyncio.run(serve(name, start, needs_db=needs_db, settings=settings))
