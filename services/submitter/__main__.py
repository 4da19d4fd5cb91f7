"""Wiring for the submitter: `python -m services.submitter`.

A durable pull consumer (`submitter`) on the command work queue (`qjt.cmd.job.>`). Each
small batch is handled concurrently; a command is acked only after its events are
stored by JetStream, so a crash at any point redelivers it (and the tag lookup keeps that
from creating a second IBM job). Blocking client calls run in threads, Aer in processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging

import anyio
from prometheus_client import Counter

from qjt.bus import CMD_STREAM
from qjt.contracts import CancelJob, Message, SubmitJob
from qjt.service import ServiceContext, run_service
from qjt.vault import Vault
from services.submitter.aer import AerPool
from services.submitter.handlers import Ports, cancel_job, submit_job
from services.submitter.ibm import Credential, IbmJobRef, IbmRuntime
from services.submitter.ledger import Ledger

log = logging.getLogger("qjt.submitter")
COMMANDS = Counter("qjt_submitter_commands_total", "Commands handled", ["command", "outcome"])
BATCH = 8


class ThreadedIbm:
    """The blocking IBM adapter, called from threads."""

    def __init__(self, runtime: IbmRuntime) -> None:
        self.runtime = runtime

    async def find(self, cred: Credential, job_id: str) -> IbmJobRef | None:
        return await anyio.to_thread.run_sync(self.runtime.find, cred, job_id)

    async def submit(self, cred: Credential, command: SubmitJob) -> IbmJobRef:
        return await anyio.to_thread.run_sync(self.runtime.submit, cred, command)

    async def cancel(self, cred: Credential, ibm_job_id: str) -> None:
        await anyio.to_thread.run_sync(self.runtime.cancel, cred, ibm_job_id)


async def handle(command: Message, ctx: ServiceContext, ports: Ports) -> None:
    """One command: its events are published before the bus acks it."""
    log.info("%s for job %s", command.type, getattr(command, "job_id", "?"))
    if isinstance(command, SubmitJob):
        events = await submit_job(command, ports)
    elif isinstance(command, CancelJob):
        events = await cancel_job(command, ports)
    else:
        raise TypeError(f"the submitter does not handle {command.type}")
    outcome = "failed" if any(e.type == "job.failed" for e in events) else "ok"
    COMMANDS.labels(command.type, outcome).inc()
    if events:
        await ctx.bus.publish_many(events)
    log.info(
        "%s for job %s handled: %s",
        command.type,
        getattr(command, "job_id", "?"),
        ", ".join(e.type for e in events) or "nothing to publish",
    )


async def handle_batch(batch: list[Message], ctx: ServiceContext, ports: Ports) -> None:
    await asyncio.gather(*(handle(command, ctx, ports) for command in batch))


async def start(ctx: ServiceContext) -> None:
    """Consume submit and cancel commands."""
    assert ctx.pool is not None
    aer = AerPool(ctx.settings.submitter_aer_workers)
    ports = Ports(
        ibm=ThreadedIbm(IbmRuntime(ctx.settings)),
        aer=aer,
        ledger=Ledger(ctx.pool, Vault.from_settings(ctx.settings)),
    )
    spec = dataclasses.replace(
        ctx.bus.consumer_spec(CMD_STREAM, "submitter", "qjt.cmd.job.>"),
        batch=BATCH,
    )
    consumer = await ctx.bus.consumer(spec, functools.partial(handle_batch, ctx=ctx, ports=ports))
    ctx.run_consumer(consumer)

    async def close_pool_when_stopping() -> None:
        await ctx.stopping.wait()
        await consumer.wait_stopped()
        await anyio.to_thread.run_sync(aer.close)

    ctx.spawn(close_pool_when_stopping(), name="aer-pool")


if __name__ == "__main__":
    run_service("submitter", start, needs_db=True)
