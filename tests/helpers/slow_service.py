"""A worker service whose handler is slow, for the drain-on-SIGTERM test.

`python -m tests.helpers.slow_service OUT_FILE` runs `qjt.service.run_service` with a
consumer that appends each message id to OUT_FILE after 0.2 s of "work".
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from qjt.bus import EVT_STREAM, ConsumerSpec
from qjt.contracts import Message
from qjt.service import ServiceContext, run_service

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("handled.txt")
SPEC = ConsumerSpec(stream=EVT_STREAM, durable="slow", filter_subject="qjt.evt.job.>", batch=10)


async def start(ctx: ServiceContext) -> None:
    async def handle(batch: list[Message]) -> None:
        for message in batch:
            await asyncio.sleep(0.2)
            with OUT.open("a") as out:
                out.write(message.id + "\n")

    ctx.run_consumer(await ctx.bus.consumer(SPEC, handle))


if __name__ == "__main__":
    run_service("slow", start)
