"""A consumer in its own process, for the SIGKILL test.

`python -m tests.helpers.consumer_process NATS_URL OUT_FILE DELAY_S` consumes job events
with durable `killtest`, appending each message id to OUT_FILE as it handles it (before
the batch's ack) and sleeping DELAY_S per message so a test can kill it mid-batch.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from qjt.bus import EVT_STREAM, Bus, ConsumerSpec
from qjt.config import Settings
from qjt.contracts import Message

SPEC = ConsumerSpec(
    stream=EVT_STREAM, durable="killtest", filter_subject="qjt.evt.job.>", ack_wait_s=2.0, batch=100
)


async def main(nats_url: str, out_file: Path, delay_s: float) -> None:
    bus = await Bus.connect(Settings(nats_url=nats_url), name="killtest")
    await bus.ensure_streams()

    async def handle(batch: list[Message]) -> None:
        with out_file.open("a") as out:
            for message in batch:
                out.write(message.id + "\n")
                out.flush()
                await asyncio.sleep(delay_s)

    consumer = await bus.consumer(SPEC, handle)
    await consumer.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])))
