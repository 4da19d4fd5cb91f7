"""JetStream throughput through `qjt.bus` versus raw nats-py, in the same run.

Four measurements, each on a fresh stream of a private nats-server:
- publish, one ack awaited at a time (`Bus.publish` vs `js.publish`);
- publish with a window of outstanding acks (`Bus.publish_many` vs `js.publish_async`);
- consume with `fetch(batch)` + ack (`Consumer` with a no-op handler vs a raw fetch loop).
  The helper decodes every message into its pydantic model; the raw loop is shown both
  without decoding and with the same `parse_message`, so the helper's own overhead is
  visible apart from the cost of validating contracts.
Target: the helpers lose under 10% to raw nats-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.js import api

from qjt.bus import EVT_STREAM, Bus, ConsumerSpec
from qjt.config import Settings
from qjt.contracts import JobStatusChanged, Message, parse_message
from qjt.devstack import NatsServer
from tests.helpers.factories import status_event

SYNC_N = 5_000
ASYNC_N = 50_000
WINDOW = 1_000
BATCH = 500
ROUNDS = 6


def events(n: int, offset: int = 0) -> list[JobStatusChanged]:
    return [status_event(offset + i) for i in range(n)]


async def fresh_stream(bus: Bus) -> None:
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await bus.js.delete_stream(EVT_STREAM)
    await bus.ensure_streams()


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    await fn()
    return n / (time.perf_counter() - start)


async def publish_sync_raw(bus: Bus, batch: list[JobStatusChanged]) -> None:
    for m in batch:
        await bus.js.publish(m.subject, m.to_bytes(), headers={"Nats-Msg-Id": m.id})


async def publish_sync_helper(bus: Bus, batch: list[JobStatusChanged]) -> None:
    for m in batch:
        await bus.publish(m)


async def publish_async_raw(bus: Bus, batch: list[JobStatusChanged]) -> None:
    futures = []
    for m in batch:
        futures.append(
            await bus.js.publish_async(m.subject, m.to_bytes(), headers={"Nats-Msg-Id": m.id})
        )
        if len(futures) >= WINDOW:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)


async def publish_async_helper(bus: Bus, batch: list[JobStatusChanged]) -> None:
    await bus.publish_many(batch, window=WINDOW)


async def consume_raw(bus: Bus, n: int, decode: bool) -> None:
    config = api.ConsumerConfig(
        durable_name="raw", ack_policy=api.AckPolicy.EXPLICIT, filter_subject="qjt.evt.job.>"
    )
    await bus.js.add_consumer(EVT_STREAM, config=config)
    sub = await bus.js.pull_subscribe_bind(durable="raw", stream=EVT_STREAM)
    seen = 0
    while seen < n:
        for msg in await sub.fetch(BATCH, timeout=5):
            if decode:
                parse_message(msg.data)
            await msg.ack()
            seen += 1
    await sub.unsubscribe()


async def consume_helper(bus: Bus, n: int) -> None:
    """Returns when the n-th message is handled; the loop's shutdown is not timed."""
    done = asyncio.Event()
    seen = 0

    async def handle(batch: list[Message]) -> None:
        nonlocal seen
        seen += len(batch)
        if seen >= n:
            done.set()

    spec = ConsumerSpec(
        stream=EVT_STREAM, durable="helper", filter_subject="qjt.evt.job.>", batch=BATCH
    )
    consumer = await bus.consumer(spec, handle)
    task = asyncio.create_task(consumer.run())
    await done.wait()
    consumer.stop()
    _background.append(task)


_background: list[asyncio.Task[None]] = []


async def run() -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        bus = await Bus.connect(Settings(nats_url=server.url), name="bench")
        results: dict[str, dict[str, list[float]]] = {}

        def record(name: str, kind: str, value: float) -> None:
            results.setdefault(name, {}).setdefault(kind, []).append(value)

        try:
            # Publishing: raw and helper alternate in small blocks on the same stream, so
            # both see the same server state and machine load; each side's rate is its
            # messages over its own summed time.
            for name, n, block, raw_fn, helper_fn in (
                ("publish, ack each", SYNC_N, 250, publish_sync_raw, publish_sync_helper),
                (
                    f"publish, {WINDOW} acks in flight",
                    ASYNC_N,
                    5_000,
                    publish_async_raw,
                    publish_async_helper,
                ),
            ):
                for round_no in range(ROUNDS):
                    await fresh_stream(bus)
                    spent = {"raw": 0.0, "helper": 0.0}
                    batch = events(n, round_no * 1_000_000)
                    for i in range(0, n, block):
                        chunk = batch[i : i + block]
                        kind = "raw" if (i // block + round_no) % 2 == 0 else "helper"
                        publish = raw_fn if kind == "raw" else helper_fn
                        start = time.perf_counter()
                        await publish(bus, chunk)
                        spent[kind] += time.perf_counter() - start
                    for kind, seconds in spent.items():
                        record(name, kind, (n / 2) / seconds)
            # Consuming: the stream holds ASYNC_N events; each consumer reads all of them,
            # in an order that rotates from round to round.
            consumers: list[tuple[str, Callable[[], Awaitable[None]], str]] = [
                ("raw", lambda: consume_raw(bus, ASYNC_N, False), "raw"),
                ("raw+decode", lambda: consume_raw(bus, ASYNC_N, True), "raw"),
                ("helper", lambda: consume_helper(bus, ASYNC_N), "helper"),
            ]
            for round_no in range(ROUNDS):
                turn = round_no % len(consumers)
                for kind, consume, durable in consumers[turn:] + consumers[:turn]:
                    rate = await timed(consume, ASYNC_N)
                    record(f"consume, fetch({BATCH}) + ack", kind, rate)
                    await asyncio.gather(*_background)
                    _background.clear()
                    await bus.js.delete_consumer(EVT_STREAM, durable)
                bus.stop_consumers()
        finally:
            await bus.nc.close()
            server.stop()
    for name, kinds in results.items():
        for kind, values in kinds.items():
            print(f"    {name} {kind}: " + " ".join(f"{v:,.0f}" for v in values))
    return {
        name: {kind: statistics.median(values) for kind, values in kinds.items()}
        for name, kinds in results.items()
    }


def report(best: dict[str, dict[str, float]]) -> list[str]:
    lines = [f"JetStream throughput, msgs/s (median of {ROUNDS} rounds, private nats-server)"]
    for name, kinds in best.items():
        raw = kinds["raw+decode"] if "raw+decode" in kinds else kinds["raw"]
        helper = kinds["helper"]
        parts = ", ".join(f"{kind} {value:,.0f}" for kind, value in kinds.items())
        verdict = "OK" if helper >= 0.9 * raw else "MISSES"
        against = "raw+decode" if "raw+decode" in kinds else "raw"
        lines.append(
            f"  {name:<32} {parts}  → helper/{against} {helper / raw:.0%} ({verdict} target ≥ 90%)"
        )
    return lines


def main() -> None:
    best = asyncio.run(run())
    for line in report(best):
        print(line)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bus.json").write_text(json.dumps(best, indent=2))


if __name__ == "__main__":
    main()
